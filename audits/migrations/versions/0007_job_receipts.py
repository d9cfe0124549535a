"""job receipts: the job key of each distributed audit (at-least-once delivery, one audit per job)

Revision ID: 0007_job_receipts
Revises: 0006_accounts
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_job_receipts'
down_revision = "0006_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_receipts',
    sa.Column('job_key', sa.String(length=64), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('job_key'),
    sa.UniqueConstraint('audit_id')
    )
    with op.batch_alter_table('job_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_receipts_site_id'), ['site_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_receipts_site_id'))
    op.drop_table('job_receipts')
