"""screenshots: browser screenshots of rendered pages, content-addressed

Revision ID: 0003_render
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0003_render"
down_revision = "0002_badge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "screenshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("crawl_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("selector", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["crawl_id"], ["crawls.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_screenshots_crawl_id", "screenshots", ["crawl_id"])


def downgrade() -> None:
    op.drop_index("ix_screenshots_crawl_id", table_name="screenshots")
    op.drop_table("screenshots")
