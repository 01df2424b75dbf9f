"""transcripts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

import storage.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=512), nullable=False),
        sa.Column("model_version", sa.String(length=128), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("language_probability", sa.Float(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("speech_s", sa.Float(), nullable=False),
        sa.Column("no_speech", sa.Boolean(), nullable=False),
        sa.Column("avg_logprob", sa.Float(), nullable=True),
        sa.Column("channels_split", sa.Boolean(), nullable=False),
        sa.Column("dropped_segments", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", storage.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["object_id"], ["source_objects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("object_id", "model_id", "model_version", name="uq_transcripts_object_model"),
    )
    op.create_table(
        "transcript_segments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("transcript_id", sa.Integer(), nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("speaker", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("avg_logprob", sa.Float(), nullable=False),
        sa.Column("no_speech_prob", sa.Float(), nullable=False),
        sa.Column("compression_ratio", sa.Float(), nullable=False),
        sa.Column("flagged", sa.Text(), nullable=True),
        sa.Column("words", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["transcript_id"], ["transcripts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("transcript_id", "segment_index", name="uq_transcript_segments_index"),
    )
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("review_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("source_objects", schema=None) as batch_op:
        batch_op.drop_column("review_reason")

    op.drop_table("transcript_segments")
    op.drop_table("transcripts")
