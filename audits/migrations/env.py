"""Alembic environment: ectrust passes its own connection in ``config.attributes``."""

from alembic import context

from audits.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: build an engine from ECTRUST_DB
    from audits.db import make_engine
    from ectrust.config import Settings

    connection = make_engine(Settings.from_env().db_url).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
