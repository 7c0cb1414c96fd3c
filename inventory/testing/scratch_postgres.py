"""A throwaway PostgreSQL database for benchmarks and demos: created empty, dropped afterwards.

with ScratchDatabase(admin_url) as scratch:
    db = open_database(scratch.url, migrate=True)
"""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def libpq_conninfo(url: str) -> str:
    """A SQLAlchemy URL (``postgresql+psycopg://...``) as plain ``psycopg.connect`` takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class ScratchDatabase:
    """A new database on the server behind ``admin_url`` (a role allowed to CREATE DATABASE)."""

    def __init__(
        self, admin_url: str = DEFAULT_ADMIN_URL, prefix: str = "inventory_bench", *, template: str | None = None
    ) -> None:
        """``template``: a database to copy (nobody may be connected to it), instead of an empty one."""
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"{copy}'))
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()

    def __enter__(self) -> ScratchDatabase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()
