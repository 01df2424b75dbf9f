"""Calls: transcripts.speakers (per speaker: talk time, words, first and last time heard) and
transcripts.languages (every language spoken, most first); transcript_segments.language

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("speakers", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("languages", sa.JSON(), nullable=True))
    with op.batch_alter_table("transcript_segments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_segments", schema=None) as batch_op:
        batch_op.drop_column("language")
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.drop_column("languages")
        batch_op.drop_column("speakers")
