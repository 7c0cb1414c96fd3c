"""Alembic environment: runs on the connection handed over by inventory.storage.migrate."""

from __future__ import annotations

from alembic import context

# The audit and token tables share Base.metadata; autogenerate must see them.
import inventory.audit.models
import inventory.audit.token_models  # noqa: F401
from inventory.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through `inventory db upgrade`, which supplies the connection")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
