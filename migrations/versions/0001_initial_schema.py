"""Initial schema: jobs, prompts, images, scores, pairs.

Revision ID: 0001
Revises: 
Create Date: 2026-11-28 05:24:15.611123
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('preset', sa.String(length=64), nullable=False),
    sa.Column('generator', sa.Text(), nullable=False),
    sa.Column('scorer', sa.Text(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('guidance', sa.Float(), nullable=False),
    sa.Column('grid', sa.Integer(), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('n_prompts', sa.Integer(), nullable=False),
    sa.Column('n_images', sa.Integer(), nullable=False),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('job_id')
    )
    op.create_table('prompts',
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.job_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id', 'prompt_id')
    )
    op.create_index('ix_prompts_category', 'prompts', ['category'], unique=False)
    op.create_table('images',
    sa.Column('image_id', sa.String(length=160), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=True),
    sa.Column('heatmap_path', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('model', sa.Text(), nullable=True),
    sa.Column('device', sa.String(length=32), nullable=True),
    sa.Column('generate_s', sa.Float(), nullable=True),
    sa.Column('worker', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heatmap_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['job_id', 'prompt_id'], ['prompts.job_id', 'prompts.prompt_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id')
    )
    op.create_index('ix_images_job_prompt', 'images', ['job_id', 'prompt_id'], unique=False)
    op.create_index('ix_images_job_status', 'images', ['job_id', 'status'], unique=False)
    op.create_index('ix_images_status_updated', 'images', ['status', 'updated_at'], unique=False)
    op.create_table('pairs',
    sa.Column('pair_id', sa.String(length=160), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('prompt_id', sa.String(length=64), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('chosen_img', sa.String(length=160), nullable=False),
    sa.Column('rejected_img', sa.String(length=160), nullable=False),
    sa.Column('c_score', sa.Float(), nullable=False),
    sa.Column('r_score', sa.Float(), nullable=False),
    sa.Column('margin', sa.Float(), nullable=False),
    sa.Column('n_candidates', sa.Integer(), nullable=False),
    sa.Column('comparison_path', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['chosen_img'], ['images.image_id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id', 'prompt_id'], ['prompts.job_id', 'prompts.prompt_id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['rejected_img'], ['images.image_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pair_id')
    )
    op.create_index('ix_pairs_job', 'pairs', ['job_id'], unique=False)
    op.create_table('scores',
    sa.Column('image_id', sa.String(length=160), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('global_score', sa.Float(), nullable=False),
    sa.Column('global_score_01', sa.Float(), nullable=False),
    sa.Column('patch_scores', sa.JSON(), nullable=False),
    sa.Column('grid', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=32), nullable=False),
    sa.Column('scorer', sa.Text(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('score_s', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.image_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id')
    )


def downgrade() -> None:
    op.drop_table('scores')
    op.drop_index('ix_pairs_job', table_name='pairs')
    op.drop_table('pairs')
    op.drop_index('ix_images_status_updated', table_name='images')
    op.drop_index('ix_images_job_status', table_name='images')
    op.drop_index('ix_images_job_prompt', table_name='images')
    op.drop_table('images')
    op.drop_index('ix_prompts_category', table_name='prompts')
    op.drop_table('prompts')
    op.drop_table('jobs')
