"""The schema gate: SQLite is created on first use, PostgreSQL behind the code says what to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory.errors import SchemaOutOfDate, StorageError
from inventory.storage import migrate
from inventory.storage.database import SCHEMA_REVISION, WAL_SIZE_LIMIT, Database, open_database


def test_embedded_sqlite_is_created_and_migrated_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "inventory.db"
    db = open_database(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert db.current_revision() == SCHEMA_REVISION
    finally:
        db.dispose()


def test_postgres_behind_the_code_says_run_db_upgrade(postgres_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match=r"empty \(no schema\).*run `inventory db upgrade`"):
        open_database(postgres_url)
    db = Database(postgres_url)
    try:
        migrate.upgrade(db)
        migrate.downgrade(db, "base")
        with pytest.raises(SchemaOutOfDate, match="run `inventory db upgrade`"):
            db.ensure_schema()
        migrate.upgrade(db)
        db.ensure_schema()
    finally:
        db.dispose()


def test_unreachable_postgres_is_a_storage_error_without_the_password() -> None:
    db = Database("postgresql+psycopg://inventory:hunter2secret@127.0.0.1:1/inventory?connect_timeout=2")
    try:
        with pytest.raises(StorageError) as info:
            db.ensure_schema()
    finally:
        db.dispose()
    assert "hunter2secret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


def test_a_long_lived_sqlite_connection_does_not_keep_a_big_transactions_wal(tmp_path: Path) -> None:
    """The loop and the server hold their connections for months: the WAL a first sync of a big cluster grew
    (here 30 MB) is cut back once checkpointed, not kept at its peak for as long as they run."""
    path = tmp_path / "inventory.db"
    db = open_database(f"sqlite:///{path}")
    wal = Path(f"{path}-wal")
    try:
        with db.write_connection() as connection:
            connection.exec_driver_sql("CREATE TABLE filler (x TEXT)")
            connection.exec_driver_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
                "INSERT INTO filler SELECT hex(randomblob(500)) FROM n"
            )
        assert wal.stat().st_size > 20 * 1024 * 1024  # the big transaction went through the WAL
        with db.write_connection() as connection:  # the next write, on the same pooled connection
            connection.exec_driver_sql("INSERT INTO filler VALUES ('x')")
        assert wal.stat().st_size <= WAL_SIZE_LIMIT
    finally:
        db.dispose()
