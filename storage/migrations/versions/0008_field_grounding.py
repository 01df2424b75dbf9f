"""extractions.field_grounding: whether each extracted value is printed on the document (grounded, derived,
ungrounded, unchecked), by field path

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_grounding", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("extractions", schema=None) as batch_op:
        batch_op.drop_column("field_grounding")
