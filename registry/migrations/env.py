"""Alembic environment: the engine comes from kerve.registry.database.Database."""

from alembic import context

from kerve.registry.database import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        # Replicas starting together migrate one at a time.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7267876)")
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
