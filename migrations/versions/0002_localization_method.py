"""Localization method per job, and the explanation of each score.

Jobs submitted before this revision were scored with the crop grid, hence the server default.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('method', sa.String(length=32), server_default='grid', nullable=False))
    op.add_column('scores', sa.Column('explanation', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('scores', 'explanation')
    op.drop_column('jobs', 'method')
