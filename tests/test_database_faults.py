"""Database trouble fails the source it hits, within bounded time, and never escapes: PostgreSQL timeouts and
keepalives reach the server; a statement past its timeout fails the source cleanly; a server that keeps its
connections up and never answers (behind a loopback proxy gone silent) fails the source after answer_timeout,
and a stop (a second SIGTERM, or the first one's grace) cuts the waits at once; a SQLite database locked by
another writer fails that source with a FAILED line while the others are still tried."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import make_url
from sync_support import child_env, run_inventory, start_inventory, wait_for_line, write_config, write_inventory

from connectors.static.connector import StaticConnector
from inventory.cli.sync import stop_on_signals
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import StorageError
from inventory.loop import SyncLoop
from inventory.outcome import SourceOutcome
from inventory.storage.database import Database, open_database
from inventory.storage.models import SyncRun
from inventory.storage.pg_waits import BoundedConnection
from inventory.sync import sync_all
from inventory.testing.silent_proxy import SilentProxy


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


# -- a server that keeps its connections up and never answers ------------------------------------------


def _through(proxy: SilentProxy, postgres_url: str, **query: str) -> str:
    url = make_url(postgres_url).set(host="127.0.0.1", port=proxy.port).update_query_dict(query)
    return url.render_as_string(hide_password=False)


def _silent_on_first_insert(db: Database, proxy: SilentProxy) -> None:
    """The server stops answering in the middle of the write transaction, on its first INSERT."""

    @event.listens_for(db.engine, "before_cursor_execute")
    def _silence(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "COPY")):
            proxy.go_silent()


def test_the_answer_timeout_is_read_from_the_url_and_never_reaches_libpq(postgres_url: str) -> None:
    db = Database(f"{postgres_url}?answer_timeout=2m")
    try:
        with db.engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert isinstance(raw, BoundedConnection) and raw.waits.answer_timeout == 120.0
            assert "answer_timeout" not in raw.info.dsn
    finally:
        db.dispose()
    with pytest.raises(StorageError, match=r"answer_timeout: .*soon"):
        Database(f"{postgres_url}?answer_timeout=soon")


def test_a_big_update_on_a_slow_server_answers_in_time(tmp_path: Path, postgres_url: str) -> None:
    files = {"lab": write_inventory(tmp_path / "lab.yaml", 2500)}
    registry = ConnectorRegistry.of(StaticConnector)
    source = {"type": "static", "name": "lab", "path": str(files["lab"])}
    config = build_config({"sources": [source]}, registry=registry)
    db = Database(f"{postgres_url}?answer_timeout=1")
    try:
        db.ensure_schema(auto_migrate=True)
        assert sync_all(db, config, registry)[0].ok
        with db.engine.begin() as connection:  # a slow server: 0.6 ms per updated workload, 1.5 s for all
            connection.execute(
                text(
                    "CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_sleep(0.0006); RETURN NEW; END $$"
                )
            )
            connection.execute(
                text("CREATE TRIGGER slow BEFORE UPDATE ON workloads FOR EACH ROW EXECUTE FUNCTION slow_row()")
            )
        write_inventory(files["lab"], 2500, status="stopped")

        outcome = sync_all(db, config, registry)[0]
    finally:
        db.dispose()
    # Sent as one batch, the server would say nothing for 1.5 s and be taken for a hung one.
    assert outcome.ok and outcome.result is not None and outcome.result.updated == 2500, outcome.error


def test_a_database_that_stops_answering_fails_the_source_within_its_answer_timeout(
    tmp_path: Path, migrated_postgres_url: str
) -> None:
    open_database(migrated_postgres_url, migrate=True).dispose()
    registry = ConnectorRegistry.of(StaticConnector)
    config = build_config(_static_config(tmp_path, ("first", "second")), registry=registry)
    with SilentProxy(("127.0.0.1", make_url(migrated_postgres_url).port or 5432)) as proxy:
        db = Database(_through(proxy, migrated_postgres_url, answer_timeout="1", connect_timeout="1"))
        _silent_on_first_insert(db, proxy)
        try:
            started = time.perf_counter()
            outcomes = sync_all(db, config, registry)
            elapsed = time.perf_counter() - started
        finally:
            db.dispose()
    first, second = outcomes
    assert first.status == "failed", first.error
    assert "the database server did not answer within 1s (answer_timeout)" in (first.error or "")
    assert second.status == "failed" and "timeout" in (second.error or ""), second.error
    assert elapsed < 30  # without the bound: for ever (the kernel acknowledges every packet)
    # Nothing of the cut transaction was committed: the source is as it was before.
    check = open_database(migrated_postgres_url)
    try:
        with check.session() as session:
            assert session.execute(select(SyncRun.status)).scalars().all() == []
    finally:
        check.dispose()


def test_stop_now_cuts_a_loop_waiting_on_a_silent_database(tmp_path: Path, migrated_postgres_url: str) -> None:
    open_database(migrated_postgres_url, migrate=True).dispose()
    registry = ConnectorRegistry.of(StaticConnector)
    config = build_config(_static_config(tmp_path, ("first", "second")), registry=registry)
    seen: list[SourceOutcome] = []
    with SilentProxy(("127.0.0.1", make_url(migrated_postgres_url).port or 5432)) as proxy:
        # An answer timeout far beyond the test: only the abort can end the wait.
        db = Database(_through(proxy, migrated_postgres_url, answer_timeout="600", connect_timeout="3"))
        _silent_on_first_insert(db, proxy)
        loop = SyncLoop(db, config, registry, coordinate=False, on_outcome=seen.append)
        stopper = threading.Timer(1.5, loop.abort, args=("stopped by a second SIGTERM before it finished",))
        try:
            started = time.perf_counter()
            stopper.start()
            loop.run(max_cycles=1)
            elapsed = time.perf_counter() - started
        finally:
            stopper.cancel()
            db.dispose()
    assert elapsed < 10
    assert [(o.source, o.status) for o in seen] == [("first", "failed")]  # "second" never started
    assert (seen[0].error or "").startswith("source 'first': stopped by a second SIGTERM before it finished")


def test_a_stuck_loop_stops_on_a_second_sigterm(tmp_path: Path, migrated_postgres_url: str) -> None:
    open_database(migrated_postgres_url, migrate=True).dispose()
    files = {"lab": write_inventory(tmp_path / "lab.yaml", 3, prefix="lab")}
    with SilentProxy(("127.0.0.1", make_url(migrated_postgres_url).port or 5432)) as proxy:
        url = _through(proxy, migrated_postgres_url, answer_timeout="600", connect_timeout="3")
        config = write_config(tmp_path / "inventory.yaml", url, files, interval="1s", concurrency=1)
        process = start_inventory("-c", str(config), "sync")
        log: list[str] = []
        try:
            wait_for_line(process, "lab: success", log)
            proxy.go_silent()
            # The next sync is due after 1s: whatever it asks the server now goes unanswered.
            assert proxy.held.wait(30), "nothing asked of the silent server within 30 s"
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            wait_for_line(process, "SIGTERM received: finishing the source in progress", log)
            process.send_signal(signal.SIGTERM)
            stopped = time.perf_counter()
            _out, rest = process.communicate(timeout=30)
            waited = time.perf_counter() - stopped
        finally:
            if process.poll() is None:
                process.kill()
    assert waited < 10, "".join(log) + rest
    # Whatever it waited on (the next sync, or the metrics read after the last one), it stopped.
    assert "SIGTERM received again: stopping now" in rest
    assert "Traceback" not in rest


def test_the_first_signal_stops_now_once_its_grace_is_over() -> None:
    stopped = threading.Event()
    aborted: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stopped.set, aborted.append, grace=0.3):
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not aborted and time.monotonic() < deadline:
            time.sleep(0.05)
    assert stopped.is_set()
    assert aborted == ["stopped by SIGTERM: not finished 0.3s after the signal"]
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers in place before are back
