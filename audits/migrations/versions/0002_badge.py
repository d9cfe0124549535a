"""badge: observed (unregistered) sites, badge sightings, badge checks

Revision ID: 0002_badge
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_badge'
down_revision = '0001'
branch_labels = None
depends_on = None

# Sightings and checks are evidence, like findings: append-only, enforced by the database.
APPEND_ONLY = ("badge_sightings", "badge_checks")


def upgrade() -> None:
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('registered', sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table('badge_sightings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cert_id', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('page', sa.String(length=2000), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('served', sa.String(length=16), nullable=False),
    sa.Column('user_agent', sa.String(length=300), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('badge_sightings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_badge_sightings_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_badge_sightings_cert_id'), ['cert_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_badge_sightings_domain'), ['domain'], unique=False)

    op.create_table('badge_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('crawl_id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=True),
    sa.Column('verdict', sa.String(length=32), nullable=True),
    sa.Column('misuse', sa.Boolean(), nullable=False),
    sa.Column('certificate_id', sa.String(length=64), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], ),
    sa.ForeignKeyConstraint(['crawl_id'], ['crawls.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('badge_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_badge_checks_domain'), ['domain'], unique=False)
        batch_op.create_index(batch_op.f('ix_badge_checks_site_id'), ['site_id'], unique=False)

    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            name = f"{table}_no_{action.lower()}"
            if dialect == "sqlite":
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {action} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
            elif dialect == "postgresql":
                # ectrust_append_only() comes from the initial migration.
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {action} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION ectrust_append_only()"
                )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        for action in ("update", "delete"):
            if dialect == "postgresql":
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action} ON {table}")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")
    with op.batch_alter_table('badge_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_badge_checks_site_id'))
        batch_op.drop_index(batch_op.f('ix_badge_checks_domain'))
    op.drop_table('badge_checks')
    with op.batch_alter_table('badge_sightings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_badge_sightings_domain'))
        batch_op.drop_index(batch_op.f('ix_badge_sightings_cert_id'))
        batch_op.drop_index(batch_op.f('ix_badge_sightings_at'))
    op.drop_table('badge_sightings')
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_column('registered')
