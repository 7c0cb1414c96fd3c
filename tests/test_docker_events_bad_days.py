"""The Docker watch on bad days, against the loopback fake engine through docker-py: a cut event
stream, an engine that forgets its events (restarted), one that hangs, one that refuses /events,
one that stays away; and what it does on good ones that a real engine cannot stage on cue
(a burst of hundreds of events, Compose projects emptied).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from docker import APIClient
from docker_watch_support import Watcher, cause_of, record_of

import connectors.docker.events
import connectors.docker.watch
from connectors.docker.config import DockerConfig
from connectors.docker.connector import DockerConnector
from connectors.docker.events import engine_time
from connectors.docker.fake import FakeContainer, FakeDocker, FakeEngineInfo, generate_containers
from connectors.docker.records import COMPOSE_PROJECT_KIND, COMPOSE_SERVICE_KIND, CONTAINER_KIND, SWARM_SERVICE_KIND
from inventory.errors import SourceError
from inventory.records import Scope, Snapshot

STOPPED_AT = "2026-12-06T10:00:00.000000000Z"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDocker]:
    with FakeDocker(
        generate_containers(6, running_every=1, compose_projects=0), socket_path=tmp_path / "d.sock"
    ) as fake:
        yield fake


def watch(fake: FakeDocker, *, followed: bool = True, **options: float) -> Watcher:
    watcher = Watcher(DockerConnector(DockerConfig(name="engine", url=fake.url, **options))).start()
    if followed:
        fake.events.wait_followed()  # a stream to cut
    return watcher


def by_name(fake: FakeDocker, name: str) -> FakeContainer:
    return next(c for c in fake.containers.values() if c.name == name)


def stop(fake: FakeDocker, container: FakeContainer) -> None:
    """`docker stop` at the fake: its state, and the engine's events for it."""
    container.state, container.exit_code, container.finished_at = "exited", 137, STOPPED_AT
    fake.emit(container, "kill", signal="9")
    fake.emit(container, "die", exitCode="137")
    fake.emit(container, "stop")


def stopped(container: FakeContainer) -> Callable[[Snapshot], bool]:
    return lambda s: (record := record_of(s, container.id)) is not None and record.status == "exited"


def test_a_cut_stream_replays_the_gap_from_the_engine(fake: FakeDocker) -> None:
    fake.emit(by_name(fake, "c00001"), "update")  # an event the engine still holds: the gap can be proved whole
    watcher = watch(fake, timeout=1)
    try:
        victim = by_name(fake, "c00002")
        fake.freeze("/events")  # the next connection hangs...
        fake.events.cut()  # ...and the open one is cut, as a network blip does
        stop(fake, victim)  # in the gap: nobody is listening
        time.sleep(0.5)
        fake.thaw()
        _, delta = watcher.wait_for(stopped(victim))
        assert delta.delta and cause_of(delta, victim.id)["action"] == "stop"
        assert watcher.lists == 1  # replayed, not relisted
    finally:
        watcher.close()


def test_an_engine_that_forgot_its_events_is_read_again(fake: FakeDocker) -> None:
    fake.emit(by_name(fake, "c00001"), "update")
    watcher = watch(fake)
    try:
        victim = by_name(fake, "c00003")
        fake.events.forget()  # restarted: what happened before is gone from its memory
        fake.events.cut()
        stop(fake, victim)
        fake.events.forget()
        _, relist = watcher.wait_for(lambda s: not s.delta and stopped(victim)(s), seconds=10)
        assert relist.complete and not relist.causes  # a full read says no cause it does not know
        assert watcher.lists == 2
        # And it follows on from there.
        again = by_name(fake, "c00004")
        stop(fake, again)
        _, delta = watcher.wait_for(stopped(again))
        assert delta.delta and cause_of(delta, again.id)["detail"] == {"exitCode": 137, "signal": 9}
    finally:
        watcher.close()


def test_a_cut_before_any_event_was_seen_relists(fake: FakeDocker) -> None:
    watcher = watch(fake)
    try:
        fake.events.cut()
        watcher.wait_for(lambda s: not s.delta, after=1)
    finally:
        watcher.close()


def test_a_hung_event_stream_is_noticed_and_left(fake: FakeDocker) -> None:
    fake.emit(by_name(fake, "c00001"), "update")
    watcher = watch(fake, timeout=1)
    try:
        fake.freeze("/events")  # the open window ends; every one after hangs
        # Each hangs for a window plus the timeout, then is given up and asked again.
        deadline = time.monotonic() + 20
        while (asked := fake.hung.count("/events")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.thaw()
        victim = by_name(fake, "c00005")
        stop(fake, victim)
        watcher.wait_for(stopped(victim))
        assert asked >= 2
        assert watcher.close() < 1.5
    finally:
        watcher.close()


def test_events_refused_by_a_socket_proxy_end_the_watch_with_the_reason(fake: FakeDocker) -> None:
    fake.faults["/events"] = 403
    error = watch(fake, followed=False).ended()
    assert isinstance(error, SourceError)
    assert "source 'engine', events: GET /v1.41/events: HTTP 403" in str(error)


def test_an_engine_away_for_too_long_ends_the_watch(fake: FakeDocker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connectors.docker.events, "GIVE_UP_AFTER", 1.0)
    monkeypatch.setattr(connectors.docker.watch, "GIVE_UP_AFTER", 1.0)
    watcher = watch(fake, timeout=1)
    fake.stop()
    error = watcher.ended()
    assert isinstance(error, SourceError), error
    assert "source 'engine', events: no event stream for 1 s: cannot connect" in str(error)


def test_a_burst_is_a_few_deltas_not_one_per_event(tmp_path: Path) -> None:
    containers = generate_containers(100, running_every=1, compose_projects=0)
    with FakeDocker(containers, socket_path=tmp_path / "d.sock") as fake:
        watcher = watch(fake)
        try:
            mark = watcher.mark()
            started = time.monotonic()
            for container in containers:
                stop(fake, container)  # 300 events at once
            deadline = started + 10
            while any(watcher.workloads[c.id].status != "exited" for c in containers):
                assert time.monotonic() < deadline, "not every stop came"
                time.sleep(0.05)
            took = time.monotonic() - started
            deltas = [s for _, s in watcher.received[mark:]]
        finally:
            watcher.close()
    assert len(deltas) <= 1 + 4 * took, (len(deltas), took)
    assert all(cause_of(d, w.external_id)["action"] == "stop" for d in deltas for w in d.workloads)


def test_a_compose_project_follows_its_containers_and_goes_with_the_last(tmp_path: Path) -> None:
    def member(number: int, oneoff: bool = False) -> FakeContainer:
        labels = {
            "com.docker.compose.project": "shop",
            "com.docker.compose.service": "web",
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "True" if oneoff else "False",
        }
        return FakeContainer(id=f"{number}" * 64, name=f"shop-web-{number}", state="running", labels=labels)

    web1, web2, oneoff = member(1), member(2), member(3, oneoff=True)
    with FakeDocker([web1, web2, oneoff], socket_path=tmp_path / "d.sock") as fake:
        watcher = watch(fake)
        try:
            stop(fake, web2)
            _, delta = watcher.wait_for(stopped(web2))
            groups = {s.kind: s for s in delta.services}
            assert groups[COMPOSE_SERVICE_KIND].status == "partial"  # as collect says it: 1 of 2 replicas running
            assert groups[COMPOSE_PROJECT_KIND].attributes["one_off_containers"] == 1
            assert cause_of(delta, web2.id) == delta.causes[("service", COMPOSE_SERVICE_KIND, "shop/web")].to_json()
            assert {s.kind: s for s in collect(fake).services} == groups  # the same records a full sync builds
            for container in (web1, web2, oneoff):
                fake.containers.pop(container.id)
                fake.emit(container, "destroy")
            _, gone = watcher.wait_for(lambda s: ("service", COMPOSE_PROJECT_KIND, "shop") in s.deleted)
            assert ("service", COMPOSE_SERVICE_KIND, "shop/web") in gone.deleted
            assert {("workload", CONTAINER_KIND, c.id) for c in (web1, web2, oneoff)} <= gone.deleted
        finally:
            watcher.close()


def collect(fake: FakeDocker) -> Snapshot:
    return DockerConnector(DockerConfig(name="engine", url=fake.url)).collect()


def test_the_fake_serves_events_with_since_until_and_filters(fake: FakeDocker) -> None:
    web = by_name(fake, "c00001")
    first = fake.emit(web, "health_status: healthy")
    fake.emit(web, "exec_start: sh -c true")
    last = fake.emit(web, "die", exitCode="1")
    client = APIClient(base_url=fake.url, version="1.41")
    try:
        # docker-py passes the timestamps on as they are: nanoseconds as the API takes them.
        replayed = list(
            client.events(
                since=f"{first['timeNano'] // 10**9}.{first['timeNano'] % 10**9:09d}",  # type: ignore[call-overload]
                until=f"{last['timeNano'] // 10**9 + 1}",
                filters={"type": "container", "event": ["health_status", "die"]},
                decode=True,
            )
        )
    finally:
        client.close()
    assert [e["Action"] for e in replayed] == ["health_status: healthy", "die"]
    assert replayed[1]["Actor"]["Attributes"] == {"image": web.image, "name": "c00001", "exitCode": "1"}
    assert json.loads(json.dumps(replayed[1])) == last


def test_a_swarm_task_container_brings_the_managers_services_along(tmp_path: Path) -> None:
    task = FakeContainer(
        id="7" * 64,
        name="web.1.abc",
        state="running",
        labels={"com.docker.swarm.service.id": "svc1", "com.docker.swarm.task.id": "task1"},
    )
    with FakeDocker([task], socket_path=tmp_path / "d.sock", engine=FakeEngineInfo(swarm_node_addr="10.9.8.7")) as fake:
        watcher = watch(fake)
        try:
            stop(fake, task)
            _, delta = watcher.wait_for(stopped(task))
        finally:
            watcher.close()
    # The manager's service list, read whole (this fake's is empty): what collect reads for it.
    assert Scope("service", SWARM_SERVICE_KIND) in (delta.scopes or [])


def test_the_engine_clock_is_read_with_its_nanoseconds_and_offset() -> None:
    utc = engine_time({"SystemTime": "2026-12-06T09:57:59.753086246Z"})
    assert utc == 1796551079_753086246
    assert engine_time({"SystemTime": "2026-12-06T10:57:59.753086246+01:00"}) == utc
    assert engine_time({"SystemTime": "2026-12-06T09:57:59Z"}) == 1796551079_000000000
    assert engine_time({}) is None
