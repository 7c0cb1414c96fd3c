"""The Docker connector's watch against a real Docker engine (a private dockerd of this module's own).

Containers are started, stopped, killed, restarted, renamed and removed through docker-py while
``DockerConnector.watch`` runs on a thread: each change must come as a delta within a second,
with the event that made it as its cause. The engine is restarted under the watch, which must
lose nothing. Where dockerd cannot start, these tests skip with the reason on a laptop and fail
under CI (CI=true).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from docker import APIClient
from docker_engine_support import busybox_engine, engine_client, run_busybox
from docker_watch_support import Watcher, cause_of, describe_snapshot, record_of
from sqlalchemy import select

from connectors.docker.config import DockerConfig
from connectors.docker.connector import DockerConnector
from connectors.docker.fake import FakeContainer, FakeDocker
from connectors.docker.records import CONTAINER_KIND
from inventory.cause import CauseKind, describe
from inventory.reconcile import reconcile
from inventory.records import Snapshot
from inventory.storage.database import Database
from inventory.storage.models import Change, WorkloadRow
from inventory.storage.store import SqlStore
from inventory.sync import sync_source
from inventory.testing.docker_engine import (
    BUSYBOX_IMAGE,
    DockerEngine,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    """An engine of this module's own: one test restarts it."""
    yield from busybox_engine()


@pytest.fixture
def client(engine: DockerEngine) -> Iterator[Any]:
    with engine_client(engine) as client:
        yield client


@pytest.fixture
def watcher(engine: DockerEngine, client: Any) -> Iterator[Watcher]:
    started = Watcher(DockerConnector(DockerConfig(name="engine", url=engine.url, timeout=5))).start()
    try:
        yield started
    finally:
        started.close()


def test_each_action_comes_within_a_second_with_its_cause(client: Any, watcher: Watcher) -> None:
    container = run_busybox(client, "web", start=False)
    _, delta = watcher.wait_for(lambda s: s.delta and record_of(s, container) is not None)
    assert cause_of(delta, container)["action"] == "create"

    def act(action: Callable[[], Any], expect: Callable[[Snapshot], bool]) -> dict[str, Any]:
        mark = watcher.mark()
        done = time.monotonic()
        action()
        done = time.monotonic()  # the call returns once the engine did it
        at, snapshot = watcher.wait_for(lambda s: s.delta and expect(s), after=mark)
        assert at - done < 1.0, f"{at - done:.2f} s"
        cause = cause_of(snapshot, container)
        assert cause["kind"] == CauseKind.DOCKER_EVENT.value and "at" in cause
        return cause

    def status(wanted: str) -> Callable[[Snapshot], bool]:
        return lambda s: (record := record_of(s, container)) is not None and record.status == wanted

    assert act(lambda: client.start(container), status("running"))["action"] == "start"
    stopped = act(lambda: client.stop(container), status("exited"))
    assert (stopped["action"], stopped["detail"]) == ("stop", {"exitCode": 137, "signal": 9})
    client.start(container)
    watcher.wait_for(status("running"))
    killed = act(lambda: client.kill(container), status("exited"))
    assert (killed["action"], killed["detail"]["exitCode"]) == ("kill", 137)
    client.start(container)
    watcher.wait_for(status("running"))
    restarted = act(lambda: client.restart(container), status("running"))
    # A client's restart: stated by the engine (no inference), the whole kill-die-stop-start sequence as one.
    assert restarted["action"] == "restart" and "inferred" not in restarted, restarted
    assert restarted["detail"]["exitCode"] == 137
    renamed = act(
        lambda: client.rename(container, "shop"),
        lambda s: (record := record_of(s, container)) is not None and record.name == "shop",
    )
    assert renamed["action"] == "rename"
    destroyed = act(
        lambda: client.remove_container(container, force=True),
        lambda s: ("workload", CONTAINER_KIND, container) in s.deleted,
    )
    # `rm -f` is kill, die, destroy: in one delta, or the kill first while the engine removes it (vfs is slow).
    assert destroyed["action"] == "destroy" and destroyed.get("detail", {}) in ({}, {"exitCode": 137, "signal": 9})
    assert container not in watcher.workloads


def test_a_restart_by_the_restart_policy_is_told_apart(client: Any, watcher: Watcher) -> None:
    container = run_busybox(client, "flaky", "sh -c 'sleep 0.5; exit 3'", policy="always")

    def restarted(snapshot: Snapshot) -> bool:
        cause = snapshot.causes.get(("workload", CONTAINER_KIND, container))
        return cause is not None and cause.action == "restart"

    _, delta = watcher.wait_for(restarted)
    cause = cause_of(delta, container)
    assert cause["inferred"] is True  # the engine does not say who restarted it: its restart count does
    assert cause["detail"]["by"] == "restart policy" and cause["detail"]["exitCode"] == 3
    assert cause["detail"]["restart_count"] >= 1
    assert describe(cause).startswith("docker restart by=restart policy exitCode=3")


def test_the_watch_survives_an_engine_restart_and_loses_nothing(engine: DockerEngine, client: Any) -> None:
    keeper = run_busybox(client, "keeper")  # no restart policy: stopped by the engine's shutdown, stays stopped
    phoenix = run_busybox(client, "phoenix", policy="always")  # started again by the engine
    watcher = Watcher(DockerConnector(DockerConfig(name="engine", url=engine.url, timeout=5))).start()
    try:
        before = dict(watcher.workloads)
        assert before[keeper].status == before[phoenix].status == "running"
        engine.restart()
        newborn = run_busybox(client, "newborn")  # made as soon as the engine answers: the watch may still be away
        collector = DockerConnector(DockerConfig(name="engine", url=engine.url))
        deadline = time.monotonic() + 30
        # What the snapshots add up to is what a full sync reads now: nothing was lost across the restart.
        while watcher.workloads != {w.external_id: w for w in collector.collect().workloads}:
            assert watcher.error is None, watcher.error
            assert time.monotonic() < deadline, [describe_snapshot(s) for _, s in watcher.received]
            time.sleep(0.2)
        assert watcher.workloads[keeper].status == "exited"
        assert watcher.workloads[phoenix].status == "running"
        assert watcher.workloads[phoenix].attributes["started_at"] != before[phoenix].attributes["started_at"]
        assert watcher.workloads[newborn].status == "running"
    finally:
        assert watcher.close() < 1.5
    assert watcher.error is None


def test_stop_ends_an_idle_watch_within_a_second(watcher: Watcher) -> None:
    time.sleep(1.2)  # idle, between two windows of the event stream
    assert watcher.close() < 1.2
    assert watcher.error is None


def test_an_unchanged_container_is_no_write_and_a_change_is_stored_with_its_cause(
    db: Database, engine: DockerEngine, client: Any
) -> None:
    container = run_busybox(client, "steady")
    connector = DockerConnector(DockerConfig(name="engine", url=engine.url, timeout=5))
    assert sync_source(db, connector).ok
    watcher = Watcher(connector).start()
    try:
        mark = watcher.mark()
        client.kill(container, signal="SIGWINCH")  # an event, and nothing changes
        _, quiet = watcher.wait_for(lambda s: s.delta and record_of(s, container) is not None, after=mark)
        assert write(db, quiet) == 0
        mark = watcher.mark()
        client.stop(container)
        _, stopped = watcher.wait_for(
            lambda s: (record := record_of(s, container)) is not None and record.status == "exited", after=mark
        )
        assert write(db, stopped) == 1
    finally:
        watcher.close()
    with db.session() as session:
        change = session.execute(select(Change).order_by(Change.id.desc()).limit(1)).scalar_one()
        row = session.execute(select(WorkloadRow).where(WorkloadRow.external_id == container)).scalar_one()
    assert row.status == "exited"
    assert describe(change.cause) == "docker stop exitCode=137 signal=9"


def write(db: Database, delta: Snapshot) -> int:
    """Reconcile a delta as the core does; the number of change rows it wrote."""
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id("engine", "docker")
        result = reconcile(delta, store, source_id=source_id, run_id=store.start_run(source_id))
        return result.changed


def test_health_flips_come_with_the_health_they_flipped_to(client: Any, watcher: Watcher) -> None:
    healthcheck = {"test": ["CMD", "true"], "interval": 300_000_000, "timeout": 1_000_000_000, "retries": 1}
    container = run_busybox(client, "checked", healthcheck=healthcheck)
    _, delta = watcher.wait_for(
        lambda s: (record := record_of(s, container)) is not None and record.attributes.get("health") == "healthy"
    )
    cause = cause_of(delta, container)
    assert (cause["action"], cause["detail"]) == ("health_status", {"health": "healthy"})


def test_the_fake_engine_sends_the_events_a_real_one_sends(client: Any) -> None:
    """The loopback fake's /events (used by the bad-day tests) against the reference: this engine."""
    since = int(time.time()) - 1
    container = run_busybox(client, "reference")
    client.kill(container)
    real = {
        e["Action"]: e
        for e in client.events(since=since, until=int(time.time()) + 1, filters={"container": container}, decode=True)
    }
    with FakeDocker([FakeContainer(id=container, name="reference", image=BUSYBOX_IMAGE)]) as fake:
        twin = fake.containers[container]
        fake.emit(twin, "kill", signal="9")
        fake.emit(twin, "die", exitCode="137")
        reader = APIClient(base_url=fake.url, version="1.41")
        try:
            faked = {e["Action"]: e for e in reader.events(since=since, until=int(time.time()) + 1, decode=True)}
        finally:
            reader.close()
    for action in ("kill", "die"):
        assert set(faked[action]) == set(real[action])
        assert set(faked[action]["Actor"]) == set(real[action]["Actor"])
        assert set(faked[action]["Actor"]["Attributes"]) == set(real[action]["Actor"]["Attributes"])
        assert {k: faked[action][k] for k in ("Type", "Action", "id", "from", "scope")} == {
            k: real[action][k] for k in ("Type", "Action", "id", "from", "scope")
        }
