"""Alembic, driven from code: `inventory db upgrade|downgrade|current` and first-use migration of SQLite.

It needs only an engine and a printable URL of the database (``Migratable``), so that
``storage.database`` can migrate on first use without this module knowing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import SQLAlchemyError

from inventory.errors import StorageError
from inventory.redact import error_reason

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Engine


class Migratable(Protocol):
    """What migrating a database takes (``inventory.storage.database.Database`` is one)."""

    @property
    def engine(self) -> Engine: ...

    @property
    def display_url(self) -> str: ...


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(files("migrations")))
    return config


def _run(db: Migratable, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    try:
        with db.engine.begin() as connection:
            # '%' in a URL would need doubling for configparser: env.py gets the connection itself.
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    except SQLAlchemyError as exc:
        raise StorageError(f"{action} of {db.display_url} to {revision} failed: {error_reason(exc)}") from exc


def upgrade(db: Migratable, revision: str = "head") -> Mapping[str, int]:
    """Migrate up; the upgrade that adds the row mac columns then signs the rows stored before it.

    Only that one upgrade signs (inventory/audit/row_macs.py): a row whose mac was removed
    later stays unsigned and refused. Returns how many rows of each kind it signed.
    """
    from inventory.audit.row_macs import has_row_macs, sign_unsigned_rows

    had_macs = has_row_macs(db)
    _run(db, "upgrade", revision)
    if not had_macs and has_row_macs(db) and hasattr(db, "write_session"):
        return sign_unsigned_rows(db)
    return {}


def downgrade(db: Migratable, revision: str) -> None:
    _run(db, "downgrade", revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head() or ""
