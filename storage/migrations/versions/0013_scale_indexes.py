"""indexes for a million objects: a key in any source (`docflow show`), the newest processed objects (`status`,
`export results --since`), the waiting review items oldest first (`review list`)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_WAITING = sa.text("status IN ('open', 'exported')")


def upgrade() -> None:
    op.create_index("ix_source_objects_key", "source_objects", ["key"])
    op.create_index("ix_source_objects_processed_at", "source_objects", ["processed_at", "id"])
    op.create_index(
        "ix_review_items_waiting",
        "review_items",
        ["created_at", "id"],
        postgresql_where=_WAITING,
        sqlite_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_review_items_waiting", "review_items")
    op.drop_index("ix_source_objects_processed_at", "source_objects")
    op.drop_index("ix_source_objects_key", "source_objects")
