"""Retention: removed objects, old changes and old sync runs pruned in batches; live objects and links untouched."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sync_support import write_config, write_inventory

from inventory.cli import cli
from inventory.config import RetentionSettings, build_config, load_config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError
from inventory.loop import SyncLoop
from inventory.reconcile import reconcile
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.retention import RetentionSchedule, prune
from inventory.storage.database import Database
from inventory.storage.models import Change, HostRow, ServiceMember, ServiceRow, SyncRun, WorkloadRow
from inventory.storage.store import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
NODE = "Node"
POD = "Pod"


def _sync(db: Database, snapshot: Snapshot, at: datetime, *, status: str = "success", source: str = "k") -> int:
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id(source, "kubernetes")
        run_id = store.start_run(source_id, at)
        if status == "success":
            reconcile(snapshot, store, source_id=source_id, run_id=run_id, now=at)
        store.finish_run(run_id, status=status, finished_at=at)
    return run_id


def _node(name: str) -> Host:
    return Host(kind=NODE, external_id=name, name=name)


def _pod(name: str, node: str | None = None, parent: str | None = None) -> Workload:
    return Workload(
        kind=POD,
        external_id=name,
        name=name,
        namespace="default",
        host=Ref(NODE, node) if node else None,
        parent=Ref("ReplicaSet", parent) if parent else None,
    )


def _replicaset(name: str) -> Workload:
    return Workload(kind="ReplicaSet", external_id=name, name=name, namespace="default")


def _service(name: str, *members: str) -> Service:
    return Service(
        kind="Service", external_id=name, name=name, namespace="default", members=tuple(Ref(POD, m) for m in members)
    )


def _names(db: Database, model: object) -> set[str]:
    with db.session() as session:
        return set(session.execute(select(model.external_id)).scalars())  # type: ignore[attr-defined]


def _count(db: Database, model: object) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())  # type: ignore[arg-type]


def _changes_of(db: Database, external_id: str) -> list[str]:
    with db.session() as session:
        return list(
            session.execute(
                select(Change.action).where(Change.external_id == external_id).order_by(Change.id)
            ).scalars()
        )


def _history(db: Database) -> None:
    """Day 0: two nodes, a ReplicaSet, four pods, two services. Day 1: node-b, pod-2, pod-9 and svc-old
    removed; node-a and rs-1 removed too, but live pod-1 still points at both."""
    _sync(
        db,
        Snapshot(
            hosts=[_node("node-a"), _node("node-b"), _node("node-c")],
            workloads=[
                _replicaset("rs-1"),
                _pod("pod-1", "node-a", "rs-1"),
                _pod("pod-2", "node-b"),
                _pod("pod-3", "node-b"),
                _pod("pod-9", "node-b"),
            ],
            services=[_service("svc-old", "pod-2"), _service("svc-live", "pod-3")],
        ),
        T0,
    )
    _sync(
        db,
        Snapshot(
            hosts=[_node("node-c")],
            workloads=[_pod("pod-1", "node-a", "rs-1"), _pod("pod-3")],
            services=[_service("svc-live", "pod-3")],
        ),
        T0 + DAY,
    )


OBJECTS_ONLY = RetentionSettings(removed_objects=30 * 86400, changes=0, sync_runs=0)


def test_removed_objects_go_with_their_history_and_memberships(db: Database) -> None:
    _history(db)
    live_history = {name: _changes_of(db, name) for name in ("pod-1", "pod-3", "svc-live")}
    with db.session() as session:
        doomed_ids = set(
            session.execute(select(WorkloadRow.id).where(WorkloadRow.external_id.in_(["pod-2", "pod-9"]))).scalars()
        )

    # 29 days after the removals: nothing is old enough yet.
    assert prune(db, OBJECTS_ONLY, now=T0 + 30 * DAY - timedelta(minutes=1)).total == 0
    report = prune(db, OBJECTS_ONLY, now=T0 + 40 * DAY)

    assert _names(db, WorkloadRow) == {"pod-1", "pod-3", "rs-1"}  # rs-1: removed, but live pod-1's parent
    assert _names(db, HostRow) == {"node-a", "node-c"}  # node-a: removed, but live pod-1's host
    assert _names(db, ServiceRow) == {"svc-live"}
    for name, actions in live_history.items():
        assert _changes_of(db, name) == actions
    for name in ("pod-2", "pod-9", "node-b", "svc-old"):
        assert _changes_of(db, name) == []
    with db.session() as session:
        members = set(session.execute(select(ServiceMember.workload_id)).scalars())
    assert not members & doomed_ids
    assert report.rows["workloads"] == 2 and report.rows["hosts"] == 1 and report.rows["services"] == 1
    assert report.rows["changes"] == 8  # created and removed, of each of the four
    assert report.rows["sync_runs"] == 0

    # The links of the live pod read as before, so the next sync sees no change.
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id("k", "kubernetes")
        result = reconcile(
            Snapshot(
                hosts=[_node("node-c")],
                workloads=[_pod("pod-1", "node-a", "rs-1"), _pod("pod-3")],
                services=[_service("svc-live", "pod-3")],
            ),
            store,
            source_id=source_id,
            run_id=99,
            now=T0 + 41 * DAY,
        )
    assert result.changed == 0

    # Once pod-1 goes too and its window passes, what it held goes with it.
    _sync(
        db,
        Snapshot(hosts=[_node("node-c")], workloads=[_pod("pod-3")], services=[_service("svc-live", "pod-3")]),
        T0 + 42 * DAY,
    )
    prune(db, OBJECTS_ONLY, now=T0 + 80 * DAY)
    assert _names(db, WorkloadRow) == {"pod-3"}
    assert _names(db, HostRow) == {"node-c"}


def test_batches_and_a_dry_run_that_deletes_nothing(db: Database) -> None:
    pods = [_pod(f"cron-{i}") for i in range(7)]
    _sync(db, Snapshot(workloads=[_pod("web"), *pods]), T0)
    _sync(db, Snapshot(workloads=[_pod("web")]), T0 + DAY)
    before = (_count(db, WorkloadRow), _count(db, Change))

    dry = prune(db, OBJECTS_ONLY, now=T0 + 60 * DAY, dry_run=True, batch_size=2)
    assert (_count(db, WorkloadRow), _count(db, Change)) == before
    assert dry.dry_run and dry.rows["workloads"] == 7 and dry.rows["changes"] == 14

    real = prune(db, OBJECTS_ONLY, now=T0 + 60 * DAY, batch_size=2)
    assert real.rows == dry.rows
    assert real.batches == 4  # 2 + 2 + 2 + 1
    assert _names(db, WorkloadRow) == {"web"}
    assert _changes_of(db, "web") == ["created"]
    assert prune(db, OBJECTS_ONLY, now=T0 + 60 * DAY, batch_size=2).total == 0


def test_old_changes_of_live_objects_and_old_runs_but_the_latest(db: Database) -> None:
    _sync(db, Snapshot(workloads=[_pod("web")]), T0)
    for day in range(1, 5):  # an update a day
        _sync(
            db,
            Snapshot(workloads=[Workload(kind=POD, external_id="web", name="web", status=f"s{day}")]),
            T0 + day * DAY,
        )
    last_success = _sync(db, Snapshot(), T0 + 5 * DAY, status="failed") - 1
    latest = _sync(db, Snapshot(), T0 + 6 * DAY, status="failed")
    _sync(db, Snapshot(workloads=[_pod("x")]), T0, source="other")  # another source's only run: its latest

    settings = RetentionSettings(removed_objects=0, changes=4 * 86400, sync_runs=2 * 86400)
    report = prune(db, settings, now=T0 + 7 * DAY, batch_size=1)

    assert _changes_of(db, "web") == ["updated", "updated"]  # days 3 and 4: the 4 days before day 7
    with db.session() as session:
        runs = set(session.execute(select(SyncRun.id)).scalars())
    # Runs of days 0-4 are older than 2 days; day 4 is web's latest success, day 6 its latest run.
    assert runs == {last_success, latest, latest - 1, 1 + latest}  # 1 + latest: the other source's only run
    assert report.rows["sync_runs"] == 4 and report.batches >= 4 + 3
    assert _names(db, WorkloadRow) == {"web", "x"}


def test_a_sync_interval_longer_than_the_prune_interval_does_not_put_the_prune_off(
    tmp_path: Path, db: Database
) -> None:
    lab = write_inventory(tmp_path / "lab.yaml", 1)
    config_path = write_config(
        tmp_path / "inventory.yaml", db.url, {"lab": lab}, interval="1d", extra="retention: {interval: 1h}"
    )
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    clock: list[float] = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        loop.retention.wait()  # the prune started at this wake ends before the fake clock moves on
        slept.append(seconds)
        clock[0] += seconds

    loop = SyncLoop(db, config, registry, coordinate=False, clock=lambda: clock[0], sleep=sleep)
    loop.run(until=3 * 3600 + 1)
    loop.retention.wait()
    # The loop woke for each hourly prune (at 0, 1h, 2h and 3h), not only for the daily sync.
    assert max(slept) <= 3600 and loop.retention.next_due == 4 * 3600
    assert loop.cycles == 1


def test_the_loop_prunes_on_schedule_and_a_failed_prune_never_stops_it(
    tmp_path: Path, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    lab = write_inventory(tmp_path / "lab.yaml", 2)
    config_path = write_config(tmp_path / "inventory.yaml", db.url, {"lab": lab}, extra="retention: {sync_runs: 1s}")
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    SyncLoop(db, config, registry, coordinate=False, sleep=lambda _s: None).run(max_cycles=1)
    for _ in range(3):
        _sync(db, Snapshot(), T0, source="gone", status="failed")  # three runs long ago, by a source now gone
    clock = [0.0]
    loop = SyncLoop(db, config, registry, coordinate=False, clock=lambda: clock[0], sleep=lambda _s: None)
    loop.run(max_cycles=1)  # waits for its prune before it returns
    assert loop.retention.last is not None and loop.retention.last.rows["sync_runs"] == 2  # the latest one stays
    assert not loop.retention.start_if_due()  # due again an hour later, not before
    clock[0] += 3600
    assert loop.retention.start_if_due()
    loop.retention.wait()

    # A database the prune cannot read: a warning, and nothing raised.
    broken = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with caplog.at_level(logging.WARNING, logger="inventory.retention"):
            assert RetentionSchedule(broken, RetentionSettings()).run() is None
    finally:
        broken.dispose()
    assert "retention: pruning failed" in caplog.text and "syncing goes on" in caplog.text


def test_db_prune_command(tmp_path: Path, db: Database) -> None:
    _sync(db, Snapshot(workloads=[_pod("web"), _pod("gone")]), T0)
    _sync(db, Snapshot(workloads=[_pod("web")]), T0 + DAY)  # removed long before now (2026-01-02)
    config = tmp_path / "inventory.yaml"
    config.write_text(f"database: {{url: '{db.url}'}}\nretention: {{changes: never}}\n", encoding="utf-8")
    runner = CliRunner()

    dry = runner.invoke(cli, ["--config", str(config), "db", "prune", "--dry-run", "-o", "json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["rows"]["workloads"] == 1 and json.loads(dry.output)["dry_run"] is True
    assert _names(db, WorkloadRow) == {"web", "gone"}

    done = runner.invoke(cli, ["--config", str(config), "db", "prune"])
    assert done.exit_code == 0, done.output
    assert "workloads" in done.stdout and "deleted 4 rows" in done.stderr  # the pod, its 2 changes, the older run
    assert _names(db, WorkloadRow) == {"web"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"changes": "never"}, {"changes": 0.0}),
        ({"changes": 0, "removed_objects": "7d"}, {"changes": 0.0, "removed_objects": 7 * 86400.0}),
        ({}, {"removed_objects": 30 * 86400.0, "changes": 180 * 86400.0, "sync_runs": 30 * 86400.0}),
    ],
)
def test_retention_config(raw: dict[str, object], expected: dict[str, float]) -> None:
    settings = build_config({"retention": raw}).retention
    assert {key: getattr(settings, key) for key in expected} == expected


def test_retention_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("retention:\n  changes: soon\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: retention.changes: not a duration" in str(caught.value)
