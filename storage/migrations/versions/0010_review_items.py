"""Review items: one stage's output of one object for a person to check, with the reasons, the model's output and
the reviewer's correction beside it

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from storage.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.Integer(), sa.ForeignKey("source_objects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("schema_id", sa.String(64), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("audit", sa.Boolean(), nullable=False),
        sa.Column("model_output", sa.JSON(), nullable=False),
        sa.Column("model_id", sa.String(512), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("exported_at", UTCDateTime(), nullable=True),
        sa.Column("external_project", sa.String(64), nullable=True),
        sa.Column("external_task", sa.String(64), nullable=True),
        sa.Column("corrected", sa.JSON(), nullable=True),
        sa.Column("reviewer", sa.String(256), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_review_items_status", "review_items", ["status"])
    op.create_index("ix_review_items_object", "review_items", ["object_id", "stage"])


def downgrade() -> None:
    op.drop_index("ix_review_items_object", "review_items")
    op.drop_index("ix_review_items_status", "review_items")
    op.drop_table("review_items")
