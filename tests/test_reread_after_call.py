"""The closed loop where nobody follows the source live: after a tool call, its target is re-read at its source.

No LiveSource runs in these tests, so no watcher writes anything: whatever change rows appear after a call
were written by the call's own re-read (inventory/reread.py), through the connector's ``LiveLookup.read``.
Real components only: a private Docker engine, the Kubernetes and Proxmox loopback fakes driven by their
client libraries, SQLite and PostgreSQL (the ``db`` fixture runs each test on both).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker_engine_support import busybox_engine, engine_client, run_busybox

from connectors.docker.connector import DockerConnector
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, mac_for
from connectors.proxmox.fake.mutations import MutableFakeProxmox
from inventory.audit.log import AuditFilter, list_entries, verify_chain
from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.policy.execute import CallOutcome, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.queries import list_changes
from inventory.storage.database import Database
from inventory.sync import sync_source
from inventory.testing.docker_engine import (
    DockerEngine,
)
from inventory.timeutil import utcnow

TOOLS = ToolRegistry.discover()


def runner_for(db: Database, config: Config, observe: float) -> ToolRunner:
    return ToolRunner(db, builtin_policy(), TOOLS, source_config=config.source, observe_timeout=observe)


def all_changes(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        return list_changes(session, since=utcnow() - timedelta(hours=1))


def entries_of(db: Database, actor: str) -> list[dict[str, Any]]:
    with db.session() as session:
        assert verify_chain(session).ok
        return list_entries(session, AuditFilter(event="tool_call", actor=actor))


def assert_observed(db: Database, call: CallOutcome, before: set[int], *seen: str) -> list[dict[str, Any]]:
    """The call saw its target change: its change rows name its intent (not inferred), its `observed` entry
    lists them and says what changed; returns the target's new change rows."""
    assert call.outcome == "success", call.error
    assert call.observed is not None, "the call was not observed"
    for words in seen:
        assert words in call.observed, call.observed
    assert " after " in call.observed
    intent = call.audit_seq - 1
    target = call.evaluation.target
    assert target is not None
    rows = [r for r in all_changes(db) if r["id"] not in before and r["object_id"] == target.id]
    rows = [r for r in rows if r["object_type"] == target.object_type]
    assert rows and call.observed_changes == [r["id"] for r in rows]
    for row in rows:
        assert row["cause"]["kind"] == "tool_call" and row["cause"]["ref"] == str(intent)
        assert not row["cause"].get("inferred"), row["by"]
        assert row["by"] == f"{call.evaluation.actor} {call.evaluation.tool} #{intent}"
    logged = [e for e in entries_of(db, call.evaluation.actor) if (e["details"] or {}).get("intent_seq") == intent]
    assert [e["outcome"] for e in logged] == ["success", "observed"]
    observed = logged[-1]["details"]
    assert observed["changes"] == call.observed_changes and observed["seen"] == call.observed
    assert observed["observed_by"].startswith("re-read at the source")
    return rows


def assert_not_observed(db: Database, call: CallOutcome, before: set[int], window: float) -> None:
    """Nothing the inventory keeps changed: the re-reads wrote nothing, and the entry says so after the window."""
    assert call.outcome == "success", call.error
    assert call.observed is not None and call.observed.startswith(f"not observed within {window:g} s (re-read at ")
    assert call.observed_changes == []
    assert [r for r in all_changes(db) if r["id"] not in before] == []  # unchanged objects wrote nothing
    (observed,) = [e for e in entries_of(db, call.evaluation.actor) if e["outcome"] == "observed"]
    assert observed["details"]["changes"] == [] and observed["details"]["seen"] == call.observed


def ids(db: Database) -> set[int]:
    return {r["id"] for r in all_changes(db)}


# -- Docker: a private engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    yield from busybox_engine()


@pytest.fixture
def docker_config(engine: DockerEngine, db: Database, tmp_path: Path) -> Iterator[Config]:
    """A running busybox container "web", synced; an engine source with events off (nobody follows it anyway)."""
    with engine_client(engine) as client:
        run_busybox(client, "web")
        raw = {"sources": [{"type": "docker", "name": "engine", "url": engine.url, "events": False}]}
        path = tmp_path / "inventory.yaml"
        path.write_text(yaml.safe_dump(raw))
        config = build_config(raw, path=path, registry=ConnectorRegistry.discover())
        outcome = sync_source(db, DockerConnector(config.source("engine")))
        assert outcome.status == "success", outcome.error
        yield config


@pytest.mark.docker
def test_docker_a_stop_nobody_follows_is_re_read_and_recorded_as_the_calls_doing(
    db: Database, docker_config: Config
) -> None:
    before = ids(db)
    call = runner_for(db, docker_config, 10).run("docker.stop", "web", {"timeout": "0"}, "alice")
    (row,) = assert_observed(db, call, before, "status running -> exited")
    assert row["action"] == "updated" and row["diff"]["status"] == ["running", "exited"]

    before = ids(db)
    restarted = runner_for(db, docker_config, 10).run("docker.start", "web", {}, "bob")
    assert_observed(db, restarted, before, "status exited -> running")

    # Starting a running container changes nothing: re-read until the window ends, nothing written.
    before = ids(db)
    quiet = runner_for(db, docker_config, 0.5).run("docker.start", "web", {}, "carol")
    assert_not_observed(db, quiet, before, 0.5)

    # The next sync finds nothing left to record: the re-read wrote what the engine holds, as a sync would.
    before = ids(db)
    assert sync_source(db, DockerConnector(docker_config.source("engine"))).status == "success"
    assert [r for r in all_changes(db) if r["id"] not in before] == []


# -- Kubernetes: the loopback fake through the kubernetes client ------------------------------------------------


@pytest.fixture
def kube() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


@pytest.fixture
def kube_config(kube: MutableFakeKubernetes, db: Database, tmp_path: Path) -> Config:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": kube})
    source = {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}
    config = build_config(
        {"sources": [source]}, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(KubernetesConnector)
    )
    outcome = sync_source(db, KubernetesConnector(config.source("lab")))
    assert outcome.status == "success", outcome.error
    return config


def test_kubernetes_a_scale_and_a_pod_delete_are_re_read_and_recorded(db: Database, kube_config: Config) -> None:
    runner = runner_for(db, kube_config, 10)
    before = ids(db)
    scaled = runner.run("kubernetes.scale_deployment", "lab/web-1", {"replicas": "5"}, "alice")
    (row,) = assert_observed(db, scaled, before, "attributes.replicas 2 -> 5")
    assert row["action"] == "updated"

    before = ids(db)
    deleted = runner.run("kubernetes.delete_pod", "db-1", {}, "bob")
    (row,) = assert_observed(db, deleted, before)
    assert row["action"] == "removed" and deleted.observed is not None and deleted.observed.startswith("removed after")

    # A rollout restart changes only the pod template, which the inventory does not keep: nothing to see.
    before = ids(db)
    quiet = runner_for(db, kube_config, 0.5).run("kubernetes.restart_deployment", "web-0", {}, "carol")
    assert_not_observed(db, quiet, before, 0.5)


class FailingAfterWrites(MutableFakeKubernetes):
    """An API server that goes away once it has taken a write: every request after it fails with 503."""

    down = False

    def route(self, method: str, raw_path: str, headers: Any) -> tuple[int, bytes, float]:
        if self.down:
            return 503, b'{"kind":"Status","status":"Failure","reason":"ServiceUnavailable","code":503}', 0.0
        answer = super().route(method, raw_path, headers)
        if method == "PATCH":
            self.down = True
        return answer


def test_kubernetes_a_source_gone_after_the_call_is_said_not_to_be_observed(db: Database, tmp_path: Path) -> None:
    api = FailingAfterWrites(ClusterSpec(name="lab", nodes=1, pods=4, replicas_per_deployment=2))
    with api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": api})
        source = {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}
        config = build_config(
            {"sources": [source]}, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(KubernetesConnector)
        )
        assert sync_source(db, KubernetesConnector(config.source("lab"))).status == "success"
        before = ids(db)
        call = runner_for(db, config, 10).run("kubernetes.scale_deployment", "lab/web-0", {"replicas": "3"}, "alice")
    assert call.outcome == "success" and api.down  # the call ran and stays a success
    assert call.observed is not None and call.observed.startswith("could not be observed: source 'lab'")
    assert "503" in call.observed and call.observed_changes == []
    assert [r for r in all_changes(db) if r["id"] not in before] == []
    outcomes = [e["outcome"] for e in entries_of(db, "alice")]
    assert outcomes == ["started", "success", "observed"]


# -- Proxmox VE: the loopback fake through proxmoxer ------------------------------------------------------------


@pytest.fixture
def pve() -> Iterator[MutableFakeProxmox]:
    built = FakeCluster(name="lab", nodes=[FakeNode("pve1", "10.0.0.1"), FakeNode("pve2", "10.0.0.2")])
    built.guests = [
        FakeGuest(101, "qemu", "build", "pve2", macs=[mac_for(101)]),
        FakeGuest(200, "lxc", "cache", "pve2", status="stopped", macs=[mac_for(200)]),
    ]
    with MutableFakeProxmox(built) as fake:
        yield fake


@pytest.fixture
def pve_config(pve: MutableFakeProxmox, db: Database, tmp_path: Path) -> Config:
    raw = {"sources": [pve.source("pve", timeout=5, retries=0)]}
    config = build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(ProxmoxConnector))
    outcome = sync_source(db, ProxmoxConnector(config.source("pve")))
    assert outcome.status == "success", outcome.error
    return config


def test_proxmox_a_stop_is_re_read_and_recorded_and_a_quiet_call_says_so(
    db: Database, pve_config: Config, pve: MutableFakeProxmox
) -> None:
    before = ids(db)
    call = runner_for(db, pve_config, 10).run("proxmox.stop", "pve/lab/101", {}, "alice")
    (row,) = assert_observed(db, call, before, "status running -> stopped")
    assert row["action"] == "updated"
    # The guest seen as a host changed with it: the call's doing too, matched by the re-read.
    (host_row,) = [r for r in all_changes(db) if r["id"] not in before and r["object_type"] == "host"]
    assert host_row["cause"]["ref"] == str(call.audit_seq - 1) and host_row["cause"]["inferred"] is True

    # A snapshot changes nothing the inventory keeps.
    before = ids(db)
    quiet = runner_for(db, pve_config, 0.5).run("proxmox.snapshot", "pve/lab/101", {"name": "before"}, "bob")
    assert_not_observed(db, quiet, before, 0.5)

    # The node stops answering after the call: the re-read fails, the call stays a success, the entry says why.
    pve.faults.fail(r"/status/current$", 595, "No route to host")
    before = ids(db)
    started = runner_for(db, pve_config, 10).run("proxmox.start", "pve/lab/200", {}, "carol")
    assert started.outcome == "success" and pve.cluster.guest(200).status == "running"
    assert started.observed is not None and started.observed.startswith("could not be observed: source 'pve'")
    assert "No route to host" in started.observed and started.observed_changes == []
    assert [r for r in all_changes(db) if r["id"] not in before] == []
    (observed,) = [e for e in entries_of(db, "carol") if e["outcome"] == "observed"]
    assert observed["details"]["seen"] == started.observed
