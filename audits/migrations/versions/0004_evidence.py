"""evidence manifests: per-audit SHA-256 manifest chained to the site's previous audit

Revision ID: 0004_evidence
Revises: 0002_badge
Create Date: 2026-11-29 07:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_evidence'
down_revision = "0003_render"
branch_labels = None
depends_on = None

TABLE = "evidence_manifests"


def upgrade() -> None:
    op.create_table(TABLE,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('audit_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('previous_sha256', sa.String(length=64), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['audit_id'], ['audits.id'], ),
    sa.ForeignKeyConstraint(['previous_id'], [f'{TABLE}.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('audit_id'),
    sa.UniqueConstraint('previous_id'),
    )
    op.create_index(op.f('ix_evidence_manifests_site_id'), TABLE, ['site_id'], unique=False)
    # Manifests are evidence too: the database refuses to change or delete them.
    dialect = op.get_bind().dialect.name
    for action in ("UPDATE", "DELETE"):
        name = f"{TABLE}_no_{action.lower()}"
        if dialect == "sqlite":
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
            )
        elif dialect == "postgresql":
            op.execute(
                "CREATE OR REPLACE FUNCTION ectrust_append_only() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ "
                "LANGUAGE plpgsql"
            )
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {action} ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION ectrust_append_only()"
            )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for action in ("update", "delete"):
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action} ON {TABLE}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{action}")
    op.drop_index(op.f('ix_evidence_manifests_site_id'), table_name=TABLE)
    op.drop_table(TABLE)
