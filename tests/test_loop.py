"""The long-running sync: cycles with changes between them, backoff of a failing source, SIGTERM, shared services."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from sqlalchemy import func, select
from sync_support import run_inventory, runs_by_source, start_inventory, wait_for_line, write_config, write_inventory

from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.locks import source_lock
from inventory.loop import SyncLoop, backoff_delay
from inventory.outcome import SourceOutcome
from inventory.storage.database import Database, open_database
from inventory.storage.models import Change, HostRow, SyncRun
from inventory.sync import sync_all


class FakeClock:
    """Monotonic time that moves only when the loop sleeps: a schedule is checked to the second, instantly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _loop(db: Database, config_path: Path, clock: FakeClock, **kwargs: object) -> SyncLoop:
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    return SyncLoop(db, config, registry, clock=clock, sleep=clock.sleep, coordinate=False, **kwargs)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(60, n, 600) for n in range(6)] == [60, 120, 240, 480, 600, 600]
    # A cap below the interval never makes a failing source retry faster than a healthy one.
    assert backoff_delay(600, 3, 60) == 600


def test_three_cycles_with_changes_between_them(tmp_path: Path, db: Database) -> None:
    lab = write_inventory(tmp_path / "lab.yaml", 3)
    config = write_config(tmp_path / "inventory.yaml", db.url, {"lab": lab}, interval="10s")
    clock = FakeClock()

    def grow_and_stop_one() -> None:  # after cycle 1: one host (with its workload) appears, one workload stops
        write_inventory(lab, 4)
        _set_status(lab, "hw0", "stopped")

    edits = {
        1: grow_and_stop_one,
        2: lambda: write_inventory(lab, 2),
    }  # after cycle 2: two hosts and their workloads go
    seen: list[SourceOutcome] = []

    def after(outcome: SourceOutcome) -> None:
        seen.append(outcome)
        edit = edits.get(len(seen))
        if edit:
            edit()

    loop = _loop(db, config, clock, on_outcome=after)
    assert loop.run(max_cycles=3) == 3
    assert [o.status for o in seen] == ["success"] * 3
    assert [(o.result.created, o.result.updated, o.result.removed) for o in seen] == [(6, 0, 0), (2, 1, 0), (0, 1, 4)]  # type: ignore[union-attr]
    # The loop slept exactly one interval between cycles (jitter 0).
    assert clock.now == 1000.0 + 2 * 10
    with db.session() as session:
        actions = dict(session.execute(select(Change.action, func.count()).group_by(Change.action)).all())
        live = session.execute(
            select(func.count()).select_from(HostRow).where(HostRow.removed_at.is_(None))
        ).scalar_one()
    assert dict(actions) == {"created": 8, "updated": 2, "removed": 4}
    assert live == 2


def _set_status(path: Path, workload_id: str, status: str) -> None:
    import yaml

    data = yaml.safe_load(path.read_text())
    for workload in data["workloads"]:
        if workload["id"] == workload_id:
            workload["status"] = status
    path.write_text(yaml.safe_dump(data))


def test_a_failing_source_backs_off_while_the_others_keep_their_pace(tmp_path: Path, db: Database) -> None:
    files = {"healthy": write_inventory(tmp_path / "healthy.yaml", 2), "flaky": tmp_path / "missing.yaml"}
    config = write_config(tmp_path / "inventory.yaml", db.url, files, interval="10s")
    clock = FakeClock()
    synced_at: dict[str, list[float]] = {"healthy": [], "flaky": []}
    loop = _loop(db, config, clock, max_backoff=60, on_outcome=lambda o: synced_at[o.source].append(clock.now - 1000.0))

    loop.run(until=1000.0 + 100)
    assert synced_at["healthy"] == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    # 2x, 4x, then capped at max_backoff (60s).
    assert synced_at["flaky"] == [0, 20, 60]
    flaky = next(s for s in loop.schedule if s.source.name == "flaky")
    assert flaky.failures == 3

    # The file appears: the next try succeeds and the source is back on its interval.
    write_inventory(tmp_path / "missing.yaml", 1)
    loop.run(until=1000.0 + 200)
    assert synced_at["flaky"][3:] == [120, 130, 140, 150, 160, 170, 180, 190]
    assert flaky.failures == 0
    statuses = [r.status for r in runs_by_source(db)["flaky"]]
    assert statuses[:3] == ["failed"] * 3 and set(statuses[3:]) == {"success"}


def test_jitter_spreads_sources_within_its_bounds(tmp_path: Path, sqlite_url: str) -> None:
    files = {f"s{i}": write_inventory(tmp_path / f"s{i}.yaml", 1, prefix=f"s{i}") for i in range(4)}
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, files, interval="100s", jitter=0.2)
    db = open_database(sqlite_url, migrate=True)
    try:
        loop = _loop(db, config, FakeClock())
        loop.run(max_cycles=1)
        delays = [s.next_due - 1000.0 for s in loop.schedule]
        assert all(80 <= d <= 120 for d in delays), delays
        assert len({round(d, 3) for d in delays}) > 1  # not in step
    finally:
        db.dispose()


def test_services_sharing_one_database_split_the_sources(tmp_path: Path, migrated_postgres_url: str) -> None:
    """A second service finds the sources freshly synced (or busy) and leaves them alone."""
    files = {name: write_inventory(tmp_path / f"{name}.yaml", 2, prefix=name) for name in ("a", "b", "c")}
    config_path = write_config(tmp_path / "inventory.yaml", migrated_postgres_url, files, interval="5m")
    db = open_database(migrated_postgres_url, migrate=True)
    try:
        registry = ConnectorRegistry.discover()
        config = load_config(config_path, registry=registry, database_url=migrated_postgres_url)
        first = SyncLoop(db, config, registry)
        first.run(max_cycles=1)
        outcomes: list[SourceOutcome] = []
        second = SyncLoop(db, config, registry, on_outcome=outcomes.append)
        with source_lock(db, "c"):  # a third service is syncing c right now
            second.run(max_cycles=1)
        assert {o.source: o.status for o in outcomes} == {"a": "skipped", "b": "skipped", "c": "locked"}
        assert "synced 0s ago by another process" in {o.source: o for o in outcomes}["a"].error  # type: ignore[operator]
        assert {name: len(runs) for name, runs in runs_by_source(db).items()} == {"a": 1, "b": 1, "c": 1}
    finally:
        db.dispose()


def test_the_loop_keeps_its_own_pace_and_leaves_another_processs_fresh_sync_alone(tmp_path: Path, db: Database) -> None:
    """Its own last sync is never "synced by another process": with the fake clock every cycle comes at once
    (the last sync is 0 s old by the wall clock), and each one still syncs. A sync by someone else is skipped."""
    files = {"lab": write_inventory(tmp_path / "lab.yaml", 2)}
    config_path = write_config(tmp_path / "inventory.yaml", db.url, files, interval="10s")
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    clock = FakeClock()
    seen: list[SourceOutcome] = []
    # Coordinating, as deployed.
    loop = SyncLoop(db, config, registry, clock=clock, sleep=clock.sleep, on_outcome=seen.append)

    assert loop.run(max_cycles=3) == 3
    assert [o.status for o in seen] == ["success"] * 3
    assert clock.now == 1000.0 + 2 * 10  # one interval between syncs, not two

    assert [o.ok for o in sync_all(db, config, registry)] == [True]  # another process (`sync --once`) syncs it now
    loop.run(max_cycles=4)
    assert seen[-1].status == "skipped"
    assert seen[-1].error == "source 'lab': synced 0s ago by another process"
    assert len(runs_by_source(db)["lab"]) == 4


def test_sigterm_mid_sync_finishes_the_source_and_exits_0(tmp_path: Path, database_url: str) -> None:
    files = {
        "big": write_inventory(tmp_path / "big.yaml", 1500, prefix="b"),
        "small": write_inventory(tmp_path / "small.yaml", 2, prefix="s"),
    }
    # One source at a time, so that "the next source" is one not started yet.
    config = write_config(tmp_path / "inventory.yaml", database_url, files, interval="1h", concurrency=1)
    db = open_database(database_url, migrate=True)
    try:
        process = start_inventory("-v", "-c", str(config), "sync")
        log: list[str] = []
        try:
            wait_for_line(process, "source big: writing", log)
            os.kill(process.pid, signal.SIGTERM)
            rest = process.stderr.read()  # type: ignore[union-attr]
        finally:
            process.wait(timeout=60)
        assert process.returncode == 0, "".join(log) + rest
        assert "SIGTERM received: finishing the source in progress" in rest
        # The source in progress committed whole; the loop stopped before the next source.
        assert [(r.status, r.objects) for r in runs_by_source(db)["big"]] == [("success", 3000)]
        assert "small" not in runs_by_source(db)
        with db.session() as session:
            assert (
                session.execute(
                    select(func.count()).select_from(SyncRun).where(SyncRun.status == "running")
                ).scalar_one()
                == 0
            )
        # The next sync completes from where it left off.
        after = run_inventory("-c", str(config), "sync", "--once")
        assert after.returncode == 0, after.stderr
        assert "big: success, 3000 objects (0 created, 0 updated, 0 removed, 0 revived, 3000 unchanged)" in after.stdout
        assert "small: success, 4 objects (4 created" in after.stdout
    finally:
        db.dispose()


def test_sigterm_during_sync_once_finishes_the_source_and_skips_the_rest(tmp_path: Path, sqlite_url: str) -> None:
    files = {
        "big": write_inventory(tmp_path / "big.yaml", 1500, prefix="b"),
        "small": write_inventory(tmp_path / "small.yaml", 2, prefix="s"),
    }
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, files, concurrency=1)
    process = start_inventory("-v", "-c", str(config), "sync", "--once")
    try:
        wait_for_line(process, "source big: writing")
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err  # a source left unsynced is not a success
    assert "big: success, 3000 objects (3000 created" in out
    assert "small:" not in out
    assert "stopped by a signal: 1 source(s) not synced" in err


def test_a_database_outage_is_a_failed_sync_not_a_dead_loop(tmp_path: Path, migrated_postgres_url: str) -> None:
    from conftest import POSTGRES_ADMIN_URL
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    config = write_config(
        tmp_path / "inventory.yaml",
        migrated_postgres_url,
        {"lab": write_inventory(tmp_path / "lab.yaml", 2)},
        interval="10s",
    )
    db = open_database(migrated_postgres_url, migrate=True)
    clock = FakeClock()
    seen: list[SourceOutcome] = []

    def drop_after_first(outcome: SourceOutcome) -> None:
        seen.append(outcome)
        if len(seen) == 1:  # the database goes away under the running service
            admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{make_url(migrated_postgres_url).database}" WITH (FORCE)'))
            admin.dispose()

    try:
        loop = _loop(db, config, clock, on_outcome=drop_after_first)
        assert loop.run(max_cycles=3) == 3
    finally:
        db.dispose()
    assert [o.status for o in seen] == ["success", "failed", "failed"]
    assert (seen[1].error or "").startswith("source 'lab': cannot take the sync lock in postgresql")
    assert "does not exist" in (seen[1].error or "")
    # Backing off: 10s, then 20s, then 40s.
    assert clock.now == 1000.0 + 10 + 20


def test_a_slow_source_does_not_hold_back_the_others(tmp_path: Path, db: Database) -> None:
    from connectors.proxmox.connector import ProxmoxConnector
    from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode
    from connectors.proxmox.fake.server import FakeProxmox
    from connectors.static.connector import StaticConnector
    from inventory.config import build_config

    cluster = FakeCluster("slow", nodes=[FakeNode("pve1", "10.0.0.1")])
    cluster.guests = [FakeGuest(100, "qemu", "vm", "pve1", agent="disabled")]
    registry = ConnectorRegistry.of(ProxmoxConnector, StaticConnector)
    with FakeProxmox(cluster) as fake:
        fake.faults.latency = 1.0  # three rounds of calls: about 3 s a sync
        slow = {"type": "proxmox", "name": "slow", "url": fake.url, "token_id": fake.token_id,
                "token_secret": fake.token_secret, "ca_file": str(fake.ca_file), "retries": 0, "interval": "1h"}  # fmt: skip
        quick = {
            "type": "static",
            "name": "quick",
            "path": str(write_inventory(tmp_path / "q.yaml", 1)),
            "interval": 0.3,
        }
        config = build_config({"sync": {"concurrency": 2, "jitter": 0}, "sources": [slow, quick]}, registry=registry)
        seen: list[SourceOutcome] = []

        def stop_when_slow_is_done(outcome: SourceOutcome) -> None:
            seen.append(outcome)
            if outcome.source == "slow":
                loop.request_stop()

        loop = SyncLoop(db, config, registry, coordinate=False, on_outcome=stop_when_slow_is_done)
        watchdog = threading.Timer(30, loop.request_stop)
        watchdog.start()
        try:
            loop.run()
        finally:
            watchdog.cancel()

    order = [(o.source, str(o.status)) for o in seen]
    assert ("slow", "success") in order, order
    quick_meanwhile = order[: order.index(("slow", "success"))]
    # Before: the loop waited for the whole batch, so "quick" synced once while "slow" ran.
    assert len(quick_meanwhile) >= 3 and set(quick_meanwhile) == {("quick", "success")}, order
