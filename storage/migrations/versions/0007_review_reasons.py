"""structured review reasons (stage, code, message, value) beside the joined review_reason text

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_objects = sa.table(
    "source_objects",
    sa.column("id", sa.Integer()),
    sa.column("review_reason", sa.Text()),
    sa.column("review_reasons", sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_reasons", sa.JSON(), nullable=True))
    # Objects sent to review before this revision keep their text as one reason: it cannot be split back
    # (messages may themselves contain "; "), and every object in review should carry at least one reason.
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_objects.c.id, _objects.c.review_reason).where(_objects.c.review_reason.is_not(None))
    ).all()
    if rows:
        connection.execute(
            _objects.update().where(_objects.c.id == sa.bindparam("object_id")),
            [
                {
                    "object_id": row.id,
                    "review_reasons": [
                        {"stage": "unknown", "code": "unstructured", "message": row.review_reason, "value": None}
                    ],
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.drop_column("review_reasons")
