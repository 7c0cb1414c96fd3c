"""Database trouble fails the source it hits, within bounded time, and never escapes: PostgreSQL timeouts and
keepalives reach the server; a statement past its timeout fails the source cleanly; a SQLite database locked
by another writer fails that source with a FAILED line while the others are still tried."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sync_support import child_env, run_inventory, write_config, write_inventory

from connectors.static.connector import StaticConnector
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.outcome import SourceOutcome
from inventory.storage.database import Database, open_database
from inventory.storage.models import SyncRun
from inventory.sync import sync_all


def _static_config(tmp_path: Path, names: tuple[str, ...]) -> dict[str, object]:
    return {
        "sources": [
            {"type": "static", "name": n, "path": str(write_inventory(tmp_path / f"{n}.yaml", 2, prefix=n))}
            for n in names
        ],
        "sync": {"concurrency": 1},
    }


def test_postgres_sessions_carry_statement_idle_and_keepalive_timeouts(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        with db.engine.connect() as connection:
            shown = {
                name: connection.execute(text(f"SHOW {name}")).scalar()
                for name in ("statement_timeout", "idle_in_transaction_session_timeout", "tcp_keepalives_idle")
            }
            keepalives = connection.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    finally:
        db.dispose()
    assert shown == {
        "statement_timeout": "5min",
        "idle_in_transaction_session_timeout": "5min",
        "tcp_keepalives_idle": "30",
    }
    assert keepalives["connect_timeout"] == "10" and keepalives["keepalives"] == "1"


def test_a_statement_past_its_timeout_fails_that_source_cleanly_and_the_next_one_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    url = f"{postgres_url}?options=-c%20statement_timeout%3D500"
    db = open_database(url, migrate=True)
    registry = ConnectorRegistry.of(StaticConnector)
    config = build_config(_static_config(tmp_path, ("first", "second")), registry=registry)
    blocker = create_engine(postgres_url)
    released: list[bool] = []

    def release_after_first(_outcome: SourceOutcome) -> None:
        if not released:
            released.append(True)
            holder.rollback()

    try:
        with db.engine.connect() as connection:
            assert connection.execute(text("SHOW statement_timeout")).scalar() == "500ms"
        holder = blocker.connect()
        holder.execute(text("LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE"))  # another session blocks every read of hosts
        started = time.perf_counter()
        outcomes = sync_all(db, config, registry, observers=[release_after_first])
        elapsed = time.perf_counter() - started
        holder.close()
        with db.session() as session:
            statuses = session.execute(select(SyncRun.status).order_by(SyncRun.id)).scalars().all()
    finally:
        blocker.dispose()
        db.dispose()
    first, second = outcomes
    assert first.status == "failed" and "statement timeout" in (first.error or ""), first.error
    assert "[SQL" not in (first.error or "")
    assert second.ok, second.error
    assert statuses == ["failed", "success"]
    assert elapsed < 15


def test_a_sqlite_database_locked_by_another_writer_fails_that_source_and_the_next_one_runs(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    url = f"sqlite:///{path}?timeout=0.5"
    db = open_database(url, migrate=True)
    registry = ConnectorRegistry.of(StaticConnector)
    config = build_config(_static_config(tmp_path, ("first", "second")), registry=registry)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a real second writer holds the write lock

    def release(_outcome: SourceOutcome) -> None:
        if writer.in_transaction:
            writer.execute("ROLLBACK")

    try:
        outcomes = sync_all(db, config, registry, observers=[release])
    finally:
        writer.close()
        db.dispose()
    first, second = outcomes
    assert first.status == "failed" and "database is locked" in (first.error or ""), first.error
    assert "not recorded in the database" in (first.error or "")  # the failure could not be written either
    assert second.ok, second.error


def test_sync_once_with_sqlite_locked_prints_a_failed_line_per_source_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    url = f"sqlite:///{path}?timeout=0.5"
    files = {n: write_inventory(tmp_path / f"{n}.yaml", 2, prefix=n) for n in ("first", "second")}
    config = write_config(tmp_path / "inventory.yaml", url, files)
    open_database(url, migrate=True).dispose()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.perf_counter()
        result = run_inventory("--config", str(config), "sync", "--once", env=child_env(), timeout=60)
        elapsed = time.perf_counter() - started
    finally:
        writer.close()

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("FAILED source 'first'") == 1 and result.stderr.count("FAILED source 'second'") == 1
    assert "database is locked" in result.stderr
    assert elapsed < 30
