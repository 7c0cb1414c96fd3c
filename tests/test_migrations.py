"""Alembic revisions: empty -> head -> base on both engines, and the models match the migrations."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from inventory.storage import migrate
from inventory.storage.database import SCHEMA_REVISION, Database
from inventory.storage.models import Base


def test_code_expects_the_newest_revision() -> None:
    assert migrate.head_revision() == SCHEMA_REVISION


def test_upgrade_from_empty_to_head_and_back(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert db.current_revision() is None
        migrate.upgrade(db)
        assert db.current_revision() == SCHEMA_REVISION
        tables = set(inspect(db.engine).get_table_names())
        assert {"sources", "sync_runs", "hosts", "workloads", "services", "service_members", "changes"} <= tables
        migrate.downgrade(db, "base")
        assert db.current_revision() is None
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(db)
        assert db.current_revision() == SCHEMA_REVISION
    finally:
        db.dispose()


def test_autogenerate_finds_no_difference(database_url: str) -> None:
    db = Database(database_url)
    try:
        migrate.upgrade(db)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.dispose()
