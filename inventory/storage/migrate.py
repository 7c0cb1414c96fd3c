"""Alembic, driven from code: `inventory db upgrade|downgrade|current` and first-use migration of SQLite."""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from inventory.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

    from inventory.storage.database import Database


def alembic_config(db: Database) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(files("migrations")))
    # '%' must be doubled for configparser; the URL reaches env.py through attributes instead.
    config.attributes["database"] = db
    return config


def _run(db: Database, action: str, revision: str) -> None:
    from alembic import command

    config = alembic_config(db)
    try:
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            getattr(command, action)(config, revision)
    except SQLAlchemyError as exc:
        from inventory.storage.database import _db_reason

        raise StorageError(f"{action} of {db.display_url} to {revision} failed: {_db_reason(exc)}") from exc


def upgrade(db: Database, revision: str = "head") -> None:
    _run(db, "upgrade", revision)


def downgrade(db: Database, revision: str) -> None:
    _run(db, "downgrade", revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    from inventory.storage.database import Database

    script = ScriptDirectory.from_config(alembic_config(Database.__new__(Database)))
    return script.get_current_head() or ""
