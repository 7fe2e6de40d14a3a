"""Faithfulness of each score, which pairs are ranked by.

Scores written before this revision have none, so their prompts keep being paired by the cosine.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('scores', sa.Column('log_faithfulness', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('scores', 'log_faithfulness')
