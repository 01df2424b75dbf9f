"""classifications, page labels and the image-embedding cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import storage.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("margin", sa.Float(), nullable=False),
        sa.Column("runner_up", sa.String(length=64), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("route", sa.String(length=64), nullable=True),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("pages_classified", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["object_id"], ["source_objects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", name="uq_classifications_object"),
    )
    op.create_index("ix_classifications_label", "classifications", ["label"], unique=False)
    op.create_table(
        "image_embeddings",
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("content_sha256", "model_id"),
    )
    with op.batch_alter_table("pages") as batch_op:
        batch_op.add_column(sa.Column("label", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("label_probability", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pages") as batch_op:
        batch_op.drop_column("label_probability")
        batch_op.drop_column("label")
    op.drop_table("image_embeddings")
    op.drop_index("ix_classifications_label", table_name="classifications")
    op.drop_table("classifications")
