"""A source's deadline: a hung collection is abandoned, the run is partial, the lock released, the wait named."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.docker.connector import DockerConnector
from connectors.docker.fake import FakeDocker, generate_containers
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, build_cluster
from connectors.proxmox.fake.server import FakeProxmox
from connectors.static.connector import StaticConnector
from inventory.config import build_config
from inventory.connector import Connector, ConnectorRegistry
from inventory.locks import source_lock
from inventory.loop import SyncLoop
from inventory.outcome import SourceOutcome
from inventory.records import Snapshot
from inventory.storage.database import Database, open_database
from inventory.sync import SourceRunner, sync_all


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


# A deadline is a deadline: past it a collection sends nothing more, ends within a call's grace, and
# never runs beside the next run of its source. One slow fake per connector.

GRACE_AFTER_RUN = 1.5  # a call sent just before the deadline may still reach the fake this long after


@pytest.fixture
def sqlite_db(migrated_sqlite_url: str) -> Iterator[Database]:
    """These tests are about collections, not storage: one engine is enough."""
    database = open_database(migrated_sqlite_url, migrate=True)
    yield database
    database.dispose()


def _sync_past_deadline(
    db: Database, connector: type[Connector], source: dict[str, Any], requests: Callable[[], int]
) -> tuple[SourceOutcome, int]:
    """Sync one source whose collection outlives its ``deadline``: its outcome, and the requests the fake
    received after the run (calls still in flight settle first; nothing may come after them)."""
    registry = ConnectorRegistry.of(connector)
    config = build_config({"sources": [source]}, registry=registry)
    # The SDK imported first (a second or more of CPU on a busy machine): the bound is on the collection.
    registry.load_sdks([source["type"]])
    started = time.monotonic()
    (outcome,) = sync_all(db, config, registry)
    took = time.monotonic() - started
    time.sleep(GRACE_AFTER_RUN)
    settled = requests()
    time.sleep(1.0)
    assert outcome.status == "partial", outcome.error
    assert f"abandoned after waiting {source['deadline']} (deadline: " in (outcome.error or "")
    assert took < float(source["deadline"].rstrip("s")) + 3.5
    assert requests() == settled, f"{requests() - settled} requests were sent after the collection was abandoned"
    return outcome, settled


def test_proxmox_sync_once_exits_at_its_deadline_not_after_every_call(tmp_path: Path) -> None:
    cluster = build_cluster(nodes=2, guests=60, name="slow")
    with FakeProxmox(cluster) as fake:
        fake.faults.latency = 1.0  # every call takes 1 s: 60 guests at 4 at once would take 30 s or more
        config = tmp_path / "inventory.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database": {"url": f"sqlite:///{tmp_path / 'inventory.db'}"},
                    "sources": [_source(fake, deadline="3s", concurrency=4)],
                }
            )
        )
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "inventory", "-c", str(config), "sync", "--once"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
        calls_at_exit = fake.total_calls
        time.sleep(1.5)

        assert done.returncode == 1, done.stdout + done.stderr  # partial: not everything was read
        assert "abandoned after waiting 3s (deadline: " in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        # Start-up (imports, migrating the new database) plus the deadline plus a grace; not 30 s of calls.
        assert took < 3 + 8, f"sync --once took {took:.1f}s with a 3s deadline"
        assert fake.total_calls == calls_at_exit  # nothing was left running to make more calls
        assert calls_at_exit < 2 * 60


def test_kubernetes_collection_past_its_deadline_sends_no_more_lists(sqlite_db: Database, tmp_path: Path) -> None:
    with FakeKubernetes(ClusterSpec(name="slow", nodes=2, pods=20)) as api:
        api.latency = 0.5  # ten lists of 0.5 s each: 5 s, far past the deadline
        kubeconfig = write_kubeconfig(tmp_path / "kube.yaml", {"slow": api})
        source = {"type": "kubernetes", "name": "kube", "kubeconfig": str(kubeconfig), "deadline": "1.2s"}
        outcome, sent = _sync_past_deadline(sqlite_db, KubernetesConnector, source, lambda: len(api.requests))

    assert sent < 10  # it stopped listing at the deadline
    assert "not read before it: " in (outcome.error or "")


def test_docker_collection_past_its_deadline_sends_no_more_inspects(sqlite_db: Database) -> None:
    with FakeDocker(generate_containers(40, running_every=1, seed="slow")) as engine:
        engine.latency = 0.5  # 40 inspects at 4 at once: 5 s
        source = {"type": "docker", "name": "engine", "url": engine.url, "deadline": "1.5s", "concurrency": 4}
        _outcome, sent = _sync_past_deadline(sqlite_db, DockerConnector, source, lambda: len(engine.requests))

    assert sent < 40


def test_in_the_loop_an_abandoned_collection_never_overlaps_the_next_run(sqlite_db: Database, tmp_path: Path) -> None:
    with FakeKubernetes(ClusterSpec(name="slow", nodes=2, pods=20)) as api:
        api.latency = 0.5
        kubeconfig = write_kubeconfig(tmp_path / "kube.yaml", {"slow": api})
        registry = ConnectorRegistry.of(KubernetesConnector)
        config = build_config(
            {
                "sync": {"interval": "1s", "jitter": 0},
                "sources": [{"type": "kubernetes", "name": "kube", "kubeconfig": str(kubeconfig), "deadline": "1.2s"}],
            },
            registry=registry,
        )
        outcomes: list[SourceOutcome] = []
        # Polled (follow=False): the deadline and the schedule are what this is about, not the watch.
        loop = SyncLoop(sqlite_db, config, registry, coordinate=False, on_outcome=outcomes.append, follow=False)
        loop.run(until=time.monotonic() + 5)
        most_at_once = api.most_in_flight

    assert len(outcomes) >= 2 and all(o.status == "partial" for o in outcomes), [o.error for o in outcomes]
    assert most_at_once == 1, "a collection abandoned at its deadline ran beside the next one"


def test_a_collection_still_ending_is_waited_for_or_skipped_never_run_beside(sqlite_db: Database) -> None:
    release = threading.Event()

    class Stubborn(StaticConnector):
        """A connector that ignores its cutoff (a third-party one, say)."""

        def collect(self) -> Snapshot:
            release.wait(10)
            return super().collect()

    registry = ConnectorRegistry.of(Stubborn)
    config = build_config({"sources": [{"type": "static", "name": "hand", "deadline": "0.3s"}]}, registry=registry)
    runner = SourceRunner.for_config(sqlite_db, config, registry)

    first = runner.run(config.sources[0])
    second = runner.run(config.sources[0])
    release.set()
    time.sleep(0.2)
    third = runner.run(config.sources[0])

    assert first.status == "partial"
    assert second.status == "skipped" and "has not ended yet" in (second.error or "")
    assert third.status == "success", third.error
