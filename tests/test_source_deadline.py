"""A source's deadline: a hung collection is abandoned, the run is partial, the lock released, the wait named."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.proxmox.connector import ProxmoxConnector
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.locks import source_lock
from inventory.storage.database import Database
from inventory.sync import sync_all
from inventory.testing.fake_proxmox import FakeProxmox
from inventory.testing.fake_proxmox_model import FakeCluster, FakeGuest, FakeNode


@pytest.fixture
def pve() -> Iterator[FakeProxmox]:
    cluster = FakeCluster("lab", nodes=[FakeNode("pve1", "10.0.0.1"), FakeNode("pve2", "10.0.0.2")])
    cluster.guests = [FakeGuest(100, "qemu", "web", "pve1"), FakeGuest(101, "qemu", "db", "pve2")]
    with FakeProxmox(cluster) as fake:
        yield fake


def _source(fake: FakeProxmox, name: str = "pve", **extra: Any) -> dict[str, Any]:
    return {
        "type": "proxmox", "name": name, "url": fake.url, "token_id": fake.token_id,
        "token_secret": fake.token_secret, "ca_file": str(fake.ca_file), "timeout": "30s", "retries": 0, **extra,
    }  # fmt: skip


def test_a_collection_past_its_deadline_is_abandoned_partial_and_releases_the_lock(
    db: Database, pve: FakeProxmox
) -> None:
    pve.faults.slow_nodes["pve2"] = 20  # pve2 hangs far longer than the deadline
    registry = ConnectorRegistry.of(ProxmoxConnector)
    config = build_config({"sources": [_source(pve, deadline="1s")]}, registry=registry)

    started = time.perf_counter()
    (outcome,) = sync_all(db, config, registry)
    waited = time.perf_counter() - started

    assert outcome.status == "partial", outcome.error
    assert (
        "abandoned after waiting 1s (deadline: the source's `deadline:`, raise it in <config> sources[0].deadline)"
        in (outcome.error or "")
    )
    assert waited < 5
    assert outcome.result is not None and outcome.result.removed == 0
    with source_lock(db, "pve"):  # free at once: nobody holds it any more
        pass


def test_the_global_deadline_applies_to_every_source(pve: FakeProxmox) -> None:
    config = build_config(
        {"sync": {"deadline": "2m"}, "sources": [_source(pve)]}, registry=ConnectorRegistry.of(ProxmoxConnector)
    )

    assert config.sync.deadline == 120.0 and config.sources[0].deadline is None
    assert build_config({"sources": []}).sync.deadline == 600.0
