"""Sources collect concurrently (sync.concurrency at once) while writes stay one source at a time."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode
from connectors.proxmox.fake.server import FakeProxmox
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.storage.database import Database
from inventory.sync import sync_all


def _cluster(name: str) -> FakeCluster:
    cluster = FakeCluster(name, nodes=[FakeNode("pve1", "10.0.0.1")])
    cluster.guests = [FakeGuest(100 + i, "qemu", f"vm-{i}", "pve1", agent="disabled") for i in range(3)]
    return cluster


def _sources(fakes: list[FakeProxmox]) -> list[dict[str, Any]]:
    return [
        {"type": "proxmox", "name": f"pve{i}", "url": f.url, "token_id": f.token_id, "token_secret": f.token_secret,
         "ca_file": str(f.ca_file), "retries": 0}
        for i, f in enumerate(fakes)
    ]  # fmt: skip


def test_a_multi_source_sync_takes_about_as_long_as_its_slowest_source(db: Database) -> None:
    registry = ConnectorRegistry.of(ProxmoxConnector)
    with ExitStack() as stack:
        fakes = [stack.enter_context(FakeProxmox(_cluster(f"c{i}"))) for i in range(3)]
        for fake in fakes:
            fake.faults.latency = 0.4  # every answer: three sequential rounds of calls per source
        config = build_config({"sync": {"concurrency": 3}, "sources": _sources(fakes)}, registry=registry)

        started = time.perf_counter()
        outcomes = sync_all(db, config, registry)
        wall = time.perf_counter() - started

    assert [o.status for o in outcomes] == ["success"] * 3 and [o.source for o in outcomes] == ["pve0", "pve1", "pve2"]
    slowest = max(o.duration for o in outcomes)
    assert wall < 0.6 * sum(o.duration for o in outcomes), (wall, [o.duration for o in outcomes])
    assert wall < slowest + 1.0


def test_concurrency_one_runs_the_sources_one_after_another(db: Database) -> None:
    registry = ConnectorRegistry.of(ProxmoxConnector)
    with ExitStack() as stack:
        fakes = [stack.enter_context(FakeProxmox(_cluster(f"c{i}"))) for i in range(2)]
        for fake in fakes:
            fake.faults.latency = 0.3
        config = build_config({"sync": {"concurrency": 1}, "sources": _sources(fakes)}, registry=registry)

        started = time.perf_counter()
        outcomes = sync_all(db, config, registry)
        wall = time.perf_counter() - started

    assert wall >= 0.95 * sum(o.duration for o in outcomes)
