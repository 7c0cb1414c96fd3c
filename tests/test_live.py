"""Live sources on SQLite and PostgreSQL: a streaming connector's changes written within a second, by one process.

The connector is scripted here (the far side of the wire): ``collect`` lists what the far side holds, and
``watch`` yields the deltas the test feeds through a queue, as a streaming connector builds them. Everything
on our side is real: SourceRunner, LiveSource, the locks, reconcile, both databases, the audit log and a real
tool call through ToolRunner.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from click.testing import CliRunner
from conftest import POSTGRES_ADMIN_URL
from prometheus_client import generate_latest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from inventory.audit.log import AuditFilter, list_entries, verify_chain
from inventory.cause import Cause, CauseKind
from inventory.cli import cli
from inventory.config import build_config
from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.errors import SourceError
from inventory.live import DIED, LiveSource
from inventory.loop import SyncLoop
from inventory.metrics import SyncMetrics
from inventory.policy.approvals import approve
from inventory.policy.classes import ToolClass
from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy, parse_policy
from inventory.policy.tools import ToolContext, ToolResult, ToolSpec
from inventory.queries import list_changes, list_sources
from inventory.records import Host, Ref, Snapshot, Workload
from inventory.storage.database import Database, open_database
from inventory.storage.models import SyncRun
from inventory.sync import SourceRunner
from inventory.timeutil import utcnow

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TYPE = "scripted"


class FarSide:
    """What the scripted source holds, and the deltas its watch will yield (or the error it will raise)."""

    def __init__(self, pods: int = 3) -> None:
        self.status = {f"web-{i}": "running" for i in range(pods)}
        self.events: queue.Queue[Snapshot | Exception] = queue.Queue()
        self.watches = 0
        self.lock = threading.Lock()

    def pod(self, name: str) -> Workload:
        return Workload("container", f"id-{name}", name, status=self.status[name], host=Ref("node", "n1"))

    def snapshot(self) -> Snapshot:
        with self.lock:
            return Snapshot(
                hosts=[Host("node", "n1", "node-1", status="Ready")],
                workloads=[self.pod(name) for name in sorted(self.status)],
            )

    def change(self, name: str, status: str, *, withhold: bool = False, cause: Cause | None = None) -> None:
        """Change one object at the far side; its delta is fed to the watch unless withheld (a lost event)."""
        with self.lock:
            self.status[name] = status
            delta = Snapshot.changes()
            record = self.pod(name)
        delta.workloads.append(record)
        if cause is not None:
            delta.attribute("workload", record, cause)
        if not withhold:
            self.events.put(delta)

    def remove(self, name: str) -> None:
        with self.lock:
            del self.status[name]
        delta = Snapshot.changes()
        delta.delete("workload", "container", f"id-{name}", Cause(CauseKind.DOCKER_EVENT, action="destroy"))
        self.events.put(delta)


class ScriptedConnector(Connector):
    type_name = TYPE
    streams = True
    far: ClassVar[FarSide]

    def collect(self) -> Snapshot:
        return self.far.snapshot()

    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:
        self.far.watches += 1
        while not stop.is_set():
            try:
                item = self.far.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture
def far() -> FarSide:
    return FarSide()


@pytest.fixture
def registry(far: FarSide) -> ConnectorRegistry:
    connector = type("Scripted", (ScriptedConnector,), {"far": far})
    return ConnectorRegistry.of(connector)


def source(**keys: Any) -> SourceConfig:
    return SourceConfig(type=TYPE, name="lab", **keys)


def live_source(db: Database, registry: ConnectorRegistry, **options: Any) -> LiveSource:
    keys = {k: options.pop(k) for k in ("full_sync_interval",) if k in options}
    runner = SourceRunner(db, registry, configured=["lab"])
    options.setdefault("backoff", 0.05)
    options.setdefault("lock_poll", 0.1)
    return LiveSource(runner, source(**keys), **options)


def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "the condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


def changes(db: Database, **filters: Any) -> list[dict[str, Any]]:
    with db.session() as session:
        return list_changes(session, since=utcnow() - timedelta(hours=1), **filters)


def watching(live: LiveSource, sessions: int = 1) -> None:
    eventually(lambda: live.stats.state == "watching" and live.stats.sessions >= sessions, what="watching")


@pytest.fixture
def running(db: Database, registry: ConnectorRegistry) -> Iterator[Callable[..., LiveSource]]:
    started: list[LiveSource] = []

    def start(**options: Any) -> LiveSource:
        live = live_source(db, registry, **options)
        live.start()
        started.append(live)
        return live

    yield start
    for live in started:
        live.request_stop()
    for live in started:
        assert live.join(5), "a live source did not stop"


def status(db: Database, tmp_path: Path, *options: str) -> Any:
    """`inventory status` of the database (the scripted source is not configured: shown as stored)."""
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": db.url}, "sources": []}))
    result = CliRunner().invoke(cli, ["-c", str(path), "status", *options])
    assert result.exit_code == 0, result.output
    return result


def test_a_delta_is_visible_within_a_second_and_an_unchanged_object_writes_nothing(
    db: Database, far: FarSide, running: Callable[..., LiveSource], tmp_path: Path
) -> None:
    live = running()
    watching(live)
    before = len(changes(db))  # the first full sync's creations

    started = time.monotonic()
    far.change("web-1", "stopped", cause=Cause(CauseKind.DOCKER_EVENT, action="stop"))
    row = eventually(lambda: changes(db, action="updated"), what="the change row")[0]
    assert time.monotonic() - started < 1.0
    assert row["name"] == "web-1" and row["diff"] == {"status": ["running", "stopped"]} and row["by"] == "docker stop"

    far.events.put(far.snapshot())  # a relist-like snapshot of what is stored already: nothing to write
    far.change("web-2", "running")  # the same status again
    eventually(lambda: live.stats.deltas == 3, what="three deltas written")
    assert len(changes(db)) == before + 1

    far.remove("web-0")
    removed = eventually(lambda: changes(db, action="removed"), what="the removal")
    assert [(r["name"], r["by"]) for r in removed] == [("web-0", "docker destroy")]
    with db.session() as session:
        run = session.get(SyncRun, live.stats.run_id)
        assert run is not None and run.status == "watching" and (run.updated, run.removed) == (1, 1)
        (row,) = list_sources(session)
    assert row["watching_since"] is not None and row["last_success_at"] >= row["watching_since"]
    (shown,) = json.loads(status(db, tmp_path, "-o", "json", "--max-age", "1m").stdout)
    assert shown["watching_since"] is not None and shown["drift_repaired"] is None
    assert "watching since " in status(db, tmp_path, "-o", "wide").stdout

    started = time.monotonic()  # stopping is prompt: the watch checks its stop every second at most
    live.request_stop()
    assert live.join(3) and time.monotonic() - started < 1.5
    with db.session() as session:
        assert session.execute(select(SyncRun.status).order_by(SyncRun.id.desc()).limit(1)).scalar() == "success"
        assert list_sources(session)[0]["watching_since"] is None


def test_a_watch_error_falls_back_to_a_full_sync_and_the_periodic_full_sync_counts_drift(
    db: Database, far: FarSide, running: Callable[..., LiveSource]
) -> None:
    metrics = SyncMetrics()
    live = running(full_sync_interval=1.0, on_outcome=metrics.observe)
    watching(live)
    far.change("web-0", "failed", withhold=True)  # happens while the stream is broken
    far.events.put(SourceError("lab", None, "watch connection lost for good"))
    watching(live, sessions=2)
    eventually(lambda: far.watches == 2, what="the watch called again")
    assert live.stats.full_syncs == 2
    assert [r["name"] for r in changes(db, action="updated")] == ["web-0"]  # repaired by the full sync
    with db.session() as session:
        runs = session.execute(select(SyncRun.status, SyncRun.error).order_by(SyncRun.id)).all()
    assert [r.status for r in runs] == ["success", "failed", "success", "watching"]
    assert "watch connection lost for good" in (runs[1].error or "")

    far.change("web-2", "stopped")  # the watch resumed: deltas land again
    eventually(lambda: len(changes(db, action="updated")) == 2, what="a delta after the restart")
    eventually(lambda: live.stats.drift_syncs >= 1, what="a periodic full sync")
    assert live.stats.last_drift == 0  # the stream was right
    assert 'inventory_drift_repaired{source="lab"} 0.0' in generate_latest(metrics.registry).decode()

    far.change("web-1", "stopped", withhold=True)  # an event the stream lost
    eventually(lambda: live.stats.last_drift == 1, what="the drift repaired")
    assert changes(db, action="updated")[-1]["name"] == "web-1"
    assert 'inventory_drift_repaired_objects_total{source="lab"} 1.0' in generate_latest(metrics.registry).decode()
    with db.session() as session:
        (row,) = list_sources(session)
    assert row["drift_repaired"] in (0, 1) and row["watching_since"] is not None  # 0: a later sync found no more


WATCHER = """
import sys, threading, time
from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.live import DIED, LiveSource
from inventory.records import Host, Snapshot
from inventory.storage.database import open_database
from inventory.sync import SourceRunner

class Quiet(Connector):  # the far side: one host, and a stream that never changes
    type_name = "scripted"
    streams = True

    def collect(self):
        return Snapshot(hosts=[Host("node", "n1", "node-1", status="Ready")])

    def watch(self, stop):
        while not stop.wait(0.2):
            pass
        return
        yield

runner = SourceRunner(open_database(sys.argv[1]), ConnectorRegistry.of(Quiet), configured=["lab"])
live = LiveSource(runner, SourceConfig(type="scripted", name="lab"))
live.start()
while live.stats.state != "watching":
    time.sleep(0.02)
print("watching", flush=True)
time.sleep(120)
"""


def test_a_watch_lock_held_by_another_process_keeps_this_one_passive_until_it_dies(
    db: Database, far: FarSide, running: Callable[..., LiveSource]
) -> None:
    """Another process runs a LiveSource of the same source: this one stays passive, and takes over when it is
    killed (its lock goes with it); the dead process's session row is closed as such."""
    holder = subprocess.Popen(
        [sys.executable, "-c", WATCHER, db.url], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "watching"
        live = running()
        eventually(lambda: live.stats.state == "passive", what="passive")
        time.sleep(0.5)
        assert live.stats.state == "passive" and live.stats.full_syncs == 0 and far.watches == 0
        with db.session() as session:
            assert list_sources(session)[0]["watching_since"] is not None  # the other process watches
        os.kill(holder.pid, signal.SIGKILL)  # the holder dies: its lock goes with it
        holder.wait(5)
        watching(live)
        with db.session() as session:
            runs = session.execute(select(SyncRun.status, SyncRun.error).order_by(SyncRun.id)).all()
        assert [(r.status, r.error) for r in runs[1:3]] == [("failed", DIED), ("success", None)]
        far.change("web-1", "stopped")
        eventually(lambda: changes(db, action="updated"), what="the delta of the new holder")
        second = running()  # a second runner (another replica) stays passive while the first watches
        eventually(lambda: second.stats.state == "passive", what="the second passive")
        live.request_stop()
        assert live.join(3)
        watching(second)
        eventually(lambda: far.watches == 2, what="the second runner's watch")
        with db.session() as session:
            alive = session.execute(select(SyncRun.status).where(SyncRun.status == "watching")).scalars().all()
        assert alive == ["watching"]
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(5)


# -- our own tool calls ------------------------------------------------------------------------------------------


def stop_tool(far: FarSide, *, told: bool) -> ToolSpec:
    def implementation(context: ToolContext) -> ToolResult:
        name = context.target.name
        # The far side stops it and reports the event (or, told=False, only a poll will see it).
        far.change(name, "stopped", withhold=not told, cause=Cause(CauseKind.DOCKER_EVENT, action="stop"))
        return ToolResult(f"stopped {name}")

    return ToolSpec(f"{TYPE}.stop", TYPE, "Stop a container.", ToolClass.SAFE_MUTATE, implementation)


def tool_runner(db: Database, far: FarSide, *, told: bool = True, observe: float = 5.0) -> ToolRunner:
    tools = ToolRegistry.of([stop_tool(far, told=told)])
    return ToolRunner(db, builtin_policy(), tools, source_config=lambda _name: source(), observe_timeout=observe)


def test_a_tool_call_is_the_cause_of_its_change_and_the_call_sees_it_happen(
    db: Database, far: FarSide, registry: ConnectorRegistry, running: Callable[..., LiveSource]
) -> None:
    # Nobody follows the source live: the call does not wait, and the next full sync finds the change by time.
    runner = SourceRunner(db, registry)
    assert runner.run(source()).status == "success"
    call = tool_runner(db, far, told=False).run(f"{TYPE}.stop", "lab/container/id-web-2", {}, "alice")
    assert call.outcome == "success" and call.observed is None
    far.change("web-0", "failed", withhold=True)  # not the call's target: not its doing
    assert runner.run(source()).status == "success"
    by = {r["name"]: r["by"] for r in changes(db, action="updated")}
    assert by == {"web-2": f"alice {TYPE}.stop #{call.audit_seq - 1} (inferred)", "web-0": "unknown"}

    # Followed live: the source reports the event, the call waits for the change row and records it.
    live = running()
    watching(live)
    before = {r["id"] for r in changes(db)}
    call = tool_runner(db, far).run(f"{TYPE}.stop", "lab/container/id-web-1", {}, "bob")
    assert call.outcome == "success"
    assert call.observed is not None and call.observed.startswith("status running -> stopped after ")
    (row,) = [r for r in changes(db) if r["id"] not in before]
    assert call.observed_changes == [row["id"]]
    intent = call.audit_seq - 1
    assert row["cause"]["kind"] == "tool_call" and row["cause"]["ref"] == str(intent)
    assert row["by"] == f"bob {TYPE}.stop #{intent}"  # the source's event confirms it: not inferred
    assert row["cause"]["detail"]["source"] == {"kind": "docker_event", "action": "stop"}
    with db.session() as session:
        logged = list_entries(session, AuditFilter(event="tool_call", actor="bob"))
        assert verify_chain(session).ok
    assert [e["outcome"] for e in logged] == ["started", "success", "observed"]
    observed = logged[-1]
    assert observed["details"]["changes"] == [row["id"]] and observed["details"]["intent_seq"] == intent
    assert observed["details"]["seen"] == call.observed

    # A call that waited for approval: its approval's entry is the intent that covers the target.
    policy = parse_policy(APPROVAL_POLICY, known_tools=[f"{TYPE}.stop"])
    approving = ToolRunner(
        db,
        policy,
        ToolRegistry.of([stop_tool(far, told=True)]),
        source_config=lambda _name: source(),
        observe_timeout=5,
    )
    pending = approving.run(f"{TYPE}.stop", "lab/container/id-web-0", {"reason": "disk full"}, "carol")
    assert pending.outcome == "pending" and pending.approval_id is not None
    far.change("web-0", "running")  # someone else restarted it meanwhile: not the pending call's doing
    eventually(lambda: changes(db)[-1]["diff"] == {"status": ["failed", "running"]}, what="the restart")
    assert changes(db)[-1]["by"] == "unknown"
    approved = approve(approving, pending.approval_id, "carol")
    assert approved.outcome == "success" and approved.observed is not None
    with db.session() as session:
        claim = list_entries(session, AuditFilter(event="approval", actor="carol"))[-1]
    assert claim["outcome"] == "approved"
    assert changes(db)[-1]["by"] == f"carol {TYPE}.stop #{claim['seq']}"

    # A call that changes nothing the watcher sees says so after its bounded wait.
    quiet = tool_runner(db, far, told=False, observe=0.5).run(f"{TYPE}.stop", "lab/container/id-web-0", {}, "bob")
    assert quiet.observed == "not observed within 0.5 s (followed live by this process)"
    assert quiet.observed_changes == []


APPROVAL_POLICY = f"""
groups: {{oncall: [carol]}}
rules:
  - name: oncall-approves-own-stops
    effect: require_approval
    self_approval: true
    match: {{actors: ["group:oncall"], tools: [{TYPE}.stop]}}
""".encode()


# -- the loop ----------------------------------------------------------------------------------------------------


def test_the_loop_follows_a_streaming_source_and_stops_promptly(
    migrated_sqlite_url: str, far: FarSide, registry: ConnectorRegistry
) -> None:
    """The loop's own logic (which sources it follows, its stop): the engines are covered above."""
    db = open_database(migrated_sqlite_url, migrate=True)
    config = build_config({"database": {"url": db.url}, "sources": [{"type": TYPE, "name": "lab"}]}, registry=registry)
    metrics = SyncMetrics()
    loop = SyncLoop(db, config, registry, jitter=0, metrics=metrics)
    assert [live.name for live in loop.live] == ["lab"] and loop.schedule == []
    loop.live[0].heartbeat = 0.3
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()

    def last_success() -> float:
        return float(metrics.last_success.labels("lab")._value.get())

    try:
        watching(loop.live[0])
        far.change("web-1", "stopped")
        eventually(lambda: changes(db, action="updated"), what="the delta through the loop")
        # The metric of the last success moves on with the watch's beat (no full sync needed to stay fresh).
        first = eventually(last_success, what="a last success")
        eventually(lambda: last_success() > first, what="the beat refreshing the metric")
    finally:
        started = time.monotonic()
        loop.request_stop()
        thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2.0

    polled = build_config(
        {"database": {"url": db.url}, "sources": [{"type": TYPE, "name": "lab", "events": False}]}, registry=registry
    )
    assert SyncLoop(db, polled, registry).live == []
    assert SyncLoop(db, config, registry, follow=False).live == []  # a bounded run (--max-cycles) polls
    db.dispose()


# -- the database away -------------------------------------------------------------------------------------------


def test_a_database_away_loses_no_change(migrated_postgres_url: str, far: FarSide, registry: ConnectorRegistry) -> None:
    """PostgreSQL refuses every connection for a while (its sessions cut, new ones refused): the delta that
    could not be written is not dropped silently; the session says why, a full sync writes the change once
    the database is back, and the watch resumes. (A few seconds here; the same path serves a 30 s outage.)"""
    db = open_database(migrated_postgres_url, migrate=True)
    name = make_url(migrated_postgres_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    live = live_source(db, registry, backoff=0.2, max_backoff=1.0)
    live.start()
    try:
        watching(live)
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name}
            )
        far.change("web-1", "stopped")  # its delta cannot be written now
        eventually(lambda: live.stats.errors, what="the refused delta said")
        assert "writing a delta failed" in live.stats.errors[0]
        time.sleep(2.0)
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        eventually(lambda: changes(db, action="updated"), timeout=15, what="the change written after the outage")
        watching(live, sessions=2)
        far.change("web-2", "stopped")
        eventually(lambda: len(changes(db, action="updated")) == 2, what="a delta after the outage")
        with db.session() as session:
            runs = session.execute(select(SyncRun.status, SyncRun.error).order_by(SyncRun.id)).all()
        assert runs[-1].status == "watching"
        assert any("writing a delta failed" in (r.error or "") for r in runs if r.status == "failed"), runs
    finally:
        live.request_stop()
        assert live.join(5)
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        db.dispose()
