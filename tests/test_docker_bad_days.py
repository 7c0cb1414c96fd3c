"""Ordinary bad days of a Docker source: an engine that freezes or vanishes mid-sync, a throttling proxy, dropped connections.

Through docker-py against the loopback fake engine, which can stop answering (while still
accepting connections, as a hung dockerd does), close connections unanswered, and answer
429/503 with Retry-After as a socket proxy in front of an engine may.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from connectors.docker.config import DockerConfig
from connectors.docker.connector import DockerConnector
from connectors.docker.fake import FakeContainer, FakeDocker, generate_containers
from connectors.docker.records import COMPOSE_SERVICE_KIND
from inventory.records import Snapshot
from inventory.storage.database import Database
from inventory.sync import sync_source


def collect(fake: FakeDocker, **options: Any) -> Snapshot:
    return DockerConnector(DockerConfig(name="engine", url=fake.url, **options)).collect()


def running_containers(count: int) -> list[FakeContainer]:
    return generate_containers(count, running_every=1, compose_projects=0)


def test_an_engine_that_stops_answering_costs_one_timeout_and_one_error_line(db: Database, tmp_path: Path) -> None:
    containers = running_containers(60)
    with FakeDocker(containers, socket_path=tmp_path / "engine.sock") as fake:
        connector = DockerConnector(DockerConfig(name="engine", url=fake.url, timeout=1, concurrency=4))
        assert sync_source(db, connector).ok
        for container in containers:  # it answered the list, then hung on every inspect
            fake.freeze(f"/containers/{container.id}/")
        started = time.monotonic()
        outcome = sync_source(db, connector)
        elapsed = time.monotonic() - started
    # Before: 60 inspects / 4 at a time x 1 s = 15 s, with the source's lock held throughout.
    assert elapsed < 4, f"{elapsed:.1f}s"
    assert outcome.status == "partial" and outcome.result is not None and outcome.result.removed == 0
    names = ", ".join(c.name for c in containers[::-1][:5])  # in the list's order: the newest first
    assert (
        outcome.error
        == f"source 'engine', containers: inspect failed for 60 containers (engine unreachable): {names}, ..."
    )


def test_an_engine_that_vanishes_mid_sync_is_one_short_error() -> None:
    containers = running_containers(59)
    with FakeDocker(containers) as fake:
        for container in containers:  # every inspect's connection closes unanswered, the resend's too
            fake.drop(f"/containers/{container.id}/", times=2)
        snapshot = collect(fake, timeout=2, concurrency=8)
        inspects = sum(1 for p in fake.requests if p.startswith("/containers/") and p != "/containers/json")
    assert len(snapshot.errors) == 1 and len(snapshot.errors[0]) < 300, snapshot.errors
    assert snapshot.errors[0].startswith(
        "containers: inspect failed for 59 containers (engine unreachable): c00058, c00057"
    )
    assert inspects < 59  # the inspects not yet sent were abandoned
    assert len(snapshot.workloads) == 59  # listed, so still there, with what inspect alone knows kept as stored


def test_retry_after_from_a_throttling_proxy_is_honoured() -> None:
    with FakeDocker(running_containers(5)) as fake:
        fake.throttle("/containers/json", retry_after=1, times=1)
        fake.throttle("/info", retry_after=0, times=2, status=503)
        started = time.monotonic()
        snapshot = collect(fake)
    assert snapshot.complete and snapshot.errors == [] and len(snapshot.workloads) == 5
    assert time.monotonic() - started >= 1.0


def test_a_throttle_beyond_the_budget_is_not_waited_out() -> None:
    with FakeDocker(running_containers(5)) as fake:
        fake.throttle("/containers/json", retry_after=600, times=1)
        started = time.monotonic()
        snapshot = collect(fake)
    assert time.monotonic() - started < 5
    assert snapshot.errors == ["containers: GET /v1.41/containers/json: HTTP 429: too many requests"]


def test_a_dropped_connection_is_sent_once_more() -> None:
    with FakeDocker(running_containers(5)) as fake:
        fake.drop("/containers/json", times=1)
        snapshot = collect(fake)
    assert snapshot.complete and snapshot.errors == [] and len(snapshot.workloads) == 5


def test_a_compose_service_and_its_containers_never_disagree() -> None:
    labels = {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": "web",
        "com.docker.compose.oneoff": "False",
    }
    containers = [FakeContainer(id=f"{i}" * 64, name=f"shop-web-{i}", state="running", labels=labels) for i in (1, 2)]
    with FakeDocker(containers) as fake:
        fake.restated[containers[1].id] = "exited"  # it stopped between the list and its inspect
        snapshot = collect(fake)
    statuses = {w.name: w.status for w in snapshot.workloads}
    assert statuses == {"shop-web-1": "running", "shop-web-2": "exited"}
    service = next(s for s in snapshot.services if s.kind == COMPOSE_SERVICE_KIND)
    assert service.status == "partial"  # what its containers say, not the list's older "running"
