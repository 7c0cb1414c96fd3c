"""Two syncs of one source never run at once: PostgreSQL advisory locks, SQLite file locks, across processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sync_support import (
    assert_no_overlap,
    run_inventory,
    runs_by_source,
    start_inventory,
    wait_for_line,
    write_config,
    write_inventory,
)

from inventory.errors import SourceLockHeld
from inventory.locks import advisory_key, lock_file_path, source_lock
from inventory.storage.database import Database, open_database
from inventory.storage.models import HostRow, SyncRun, WorkloadRow

ME = f"{os.getpid()}@{socket.gethostname()}"
SOURCES = ("alpha", "beta", "gamma", "delta")
# Enough rows that a sync lasts a while, so that the four processes do meet on a source.
PER_SOURCE = 200


def test_advisory_keys_are_stable_and_distinct() -> None:
    keys = {advisory_key(name) for name in SOURCES}
    assert len(keys) == len(SOURCES)
    assert advisory_key("alpha") == advisory_key("alpha")
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_a_held_lock_names_its_holder(db: Database) -> None:
    with source_lock(db, "alpha"):
        with pytest.raises(SourceLockHeld) as held, source_lock(db, "alpha"):
            pytest.fail("a second holder got the lock")
        # Another source is independent.
        with source_lock(db, "beta"):
            pass
    message = str(held.value)
    assert "source 'alpha' is being synced by" in message
    assert ME in message  # pid@host of this process, from pg_stat_activity or the lock file
    if db.dialect == "postgresql":
        assert "PostgreSQL backend pid" in message
    # Released: a new holder gets it at once.
    with source_lock(db, "alpha"):
        pass


def test_locks_held_for_hours_leave_the_pool_to_requests(migrated_postgres_url: str) -> None:
    """Each source followed live holds its lock's connection as long as it watches: twenty of them must not take
    the pooled connections (5 + 10 overflow) that requests read with."""
    db = open_database(migrated_postgres_url)
    try:
        with ExitStack() as held:
            for index in range(20):
                held.enter_context(source_lock(db, f"live-{index}"))
            readers = [db.read_session() for _ in range(db.engine.pool.size() + 2)]  # type: ignore[attr-defined]
            try:
                for reader in readers:  # each checks a pooled connection out, all at once
                    assert reader.execute(select(func.count()).select_from(SyncRun)).scalar() is not None
            finally:
                for reader in readers:
                    reader.close()
            with ThreadPoolExecutor(max_workers=1) as other:
                assert other.submit(lambda: source_lock(db, "live-0").__enter__()).exception(timeout=30) is not None
    finally:
        db.dispose()


def test_waiting_gets_the_lock_once_it_is_released(db: Database) -> None:
    with ThreadPoolExecutor(1) as pool:
        with source_lock(db, "alpha"):
            started = time.monotonic()

            def second() -> float:
                with source_lock(db, "alpha", wait=10):
                    return time.monotonic() - started

            waited = pool.submit(second)
            time.sleep(0.5)
        assert 0.4 < waited.result(timeout=10) < 5


def test_sqlite_lock_file_sits_beside_the_database(migrated_sqlite_url: str, tmp_path: Path) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    try:
        with source_lock(db, "lab:main"):
            path = lock_file_path(tmp_path / "inventory.db", "lab:main")
            assert path.parent == tmp_path
            assert path.read_text() == ME
    finally:
        db.dispose()


def test_sync_once_exits_1_naming_the_holder_or_waits(tmp_path: Path, sqlite_url: str) -> None:
    # The CLI path is the same on both engines; the locks themselves are tested on both above.
    database_url = sqlite_url
    config = write_config(
        tmp_path / "inventory.yaml", database_url, {"alpha": write_inventory(tmp_path / "alpha.yaml", 3)}
    )
    db = open_database(database_url, migrate=True)
    try:
        with ThreadPoolExecutor(1) as pool:
            with source_lock(db, "alpha"):
                refused = run_inventory("-c", str(config), "sync", "--once")
                waiting = pool.submit(run_inventory, "-c", str(config), "sync", "--once", "--wait", "30")
                time.sleep(2.0)
            waited = waiting.result(timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert "LOCKED source 'alpha' is being synced by" in refused.stderr
        assert ME in refused.stderr
        assert waited.returncode == 0, waited.stderr
        assert "alpha: success, 6 objects (6 created" in waited.stdout
        assert [r.status for r in runs_by_source(db)["alpha"]] == ["success"]
    finally:
        db.dispose()


def _four_at_once(
    tmp_path: Path, database_url: str, *extra: str
) -> tuple[Database, list[subprocess.CompletedProcess[str]]]:
    files = {name: write_inventory(tmp_path / f"{name}.yaml", PER_SOURCE, prefix=name) for name in SOURCES}
    config = write_config(tmp_path / "inventory.yaml", database_url, files)
    db = open_database(database_url, migrate=True)  # PostgreSQL is upgraded once, before the services start
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: run_inventory("-c", str(config), "sync", "--once", *extra, timeout=90), range(4))
        )
    return db, results


def _assert_rows_once(db: Database) -> None:
    with db.session() as session:
        hosts = session.execute(select(func.count()).select_from(HostRow)).scalar_one()
        workloads = session.execute(select(func.count()).select_from(WorkloadRow)).scalar_one()
        distinct = session.execute(select(func.count(func.distinct(HostRow.external_id)))).scalar_one()
        running = session.execute(
            select(func.count()).select_from(SyncRun).where(SyncRun.status == "running")
        ).scalar_one()
    assert (hosts, workloads, distinct, running) == (4 * PER_SOURCE, 4 * PER_SOURCE, 4 * PER_SOURCE, 0)


def test_four_concurrent_syncs_each_source_synced_by_exactly_one(tmp_path: Path, database_url: str) -> None:
    """Without --wait a process that finds a source busy reports it; every source is synced, never twice at once."""
    db, results = _four_at_once(tmp_path, database_url)
    try:
        runs = runs_by_source(db)
        for name in SOURCES:
            synced = sum(f"{name}: success" in r.stdout for r in results)
            locked = sum(f"LOCKED source {name!r} is being synced by" in r.stderr for r in results)
            # Each process either synced the source or saw it locked: no third outcome, no silent skip.
            assert synced + locked == 4, [r.stdout + r.stderr for r in results]
            assert synced >= 1
            # The database agrees with what the processes said, and no two runs overlapped.
            assert len(runs[name]) == synced
            assert all(run.status == "success" for run in runs[name])
            assert_no_overlap(runs[name])
        for result in results:
            assert result.returncode in (0, 1), result.stderr
            assert ("LOCKED" in result.stderr) == (result.returncode == 1), result.stderr
        _assert_rows_once(db)
    finally:
        db.dispose()


def test_four_concurrent_syncs_with_wait_all_succeed_one_after_another(tmp_path: Path, postgres_url: str) -> None:
    # One engine is enough here: waiting is the same polling loop over either lock.
    db, results = _four_at_once(tmp_path, postgres_url, "--wait", "60")
    try:
        assert [r.returncode for r in results] == [0, 0, 0, 0], [r.stderr for r in results]
        runs = runs_by_source(db)
        for name in SOURCES:
            assert len(runs[name]) == 4
            assert_no_overlap(runs[name])
        _assert_rows_once(db)
    finally:
        db.dispose()


def test_kill_9_during_a_sync_leaves_nothing_behind(tmp_path: Path, database_url: str) -> None:
    files = {"big": write_inventory(tmp_path / "big.yaml", 1500, prefix="b")}
    config = write_config(tmp_path / "inventory.yaml", database_url, files)
    db = open_database(database_url, migrate=True)
    try:
        process = start_inventory("-v", "-c", str(config), "sync", "--once")
        try:
            wait_for_line(process, "source big: writing", [])
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        # The kernel (flock) or the server (advisory lock of a dead session) freed the lock:
        # the next sync needs no manual cleanup. PostgreSQL may take a moment to notice the dead client.
        repaired = run_inventory("-c", str(config), "sync", "--once", "--wait", "20")
        assert repaired.returncode == 0, repaired.stderr
        assert "big: success, 3000 objects" in repaired.stdout
        runs = runs_by_source(db)["big"]
        # The killed run's transaction never committed: no run is left "running".
        assert [r.status for r in runs] == ["success"]
        _assert_counts(db, 1500)
    finally:
        db.dispose()


def _assert_counts(db: Database, hosts: int) -> None:
    with db.session() as session:
        live_hosts = session.execute(
            select(func.count()).select_from(HostRow).where(HostRow.removed_at.is_(None))
        ).scalar_one()
        live_workloads = session.execute(
            select(func.count()).select_from(WorkloadRow).where(WorkloadRow.removed_at.is_(None))
        ).scalar_one()
    assert (live_hosts, live_workloads) == (hosts, hosts)
