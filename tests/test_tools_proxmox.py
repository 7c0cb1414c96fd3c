"""Proxmox tools through the real proxmoxer against the fake HTTPS API, which records the guest writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.proxmox.connector import ProxmoxConnector
from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import Ambiguous
from inventory.policy.approvals import approve
from inventory.policy.execute import ToolFailed, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.storage.database import Database
from inventory.sync import sync_source
from inventory.testing.fake_proxmox_model import FakeCluster, FakeGuest, FakeNode, mac_for
from inventory.testing.fake_proxmox_mutations import MutableFakeProxmox, Mutation

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cluster() -> FakeCluster:
    built = FakeCluster(name="lab", nodes=[FakeNode("pve1", "10.0.0.1"), FakeNode("pve2", "10.0.0.2")])
    built.guests = [
        FakeGuest(100, "qemu", "web", "pve1", tags=["prod"], macs=[mac_for(100)]),
        FakeGuest(101, "qemu", "build", "pve2", macs=[mac_for(101)]),
        FakeGuest(200, "lxc", "cache", "pve2", status="stopped", macs=[mac_for(200)]),
        FakeGuest(300, "lxc", "build", "pve1", macs=[mac_for(300)]),
    ]
    return built


@pytest.fixture
def pve() -> Iterator[MutableFakeProxmox]:
    with MutableFakeProxmox(cluster()) as fake:
        yield fake


@pytest.fixture
def runner(pve: MutableFakeProxmox, db: Database, tmp_path: Path) -> ToolRunner:
    raw = {"sources": [{"type": "proxmox", "name": "pve", "url": pve.url, "token_id": pve.token_id, "token_secret": pve.token_secret, "ca_file": str(pve.ca_file), "timeout": 5, "retries": 0}]}
    config: Config = build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(ProxmoxConnector))
    outcome = sync_source(db, ProxmoxConnector(config.source("pve")))
    assert outcome.status == "success", outcome.error
    return ToolRunner(db, builtin_policy(), ToolRegistry.discover(), source_config=config.source)


def test_power_actions_reach_the_node_of_the_guest(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    assert runner.run("proxmox.shutdown", "pve/lab/101", {"timeout": "30"}, "alice").outcome == "success"
    assert runner.run("proxmox.start", "cache", {}, "alice").outcome == "success"
    assert runner.run("proxmox.reboot", "workload:pve/qemu/lab/101", {}, "alice").outcome == "success"
    assert pve.mutations == [
        Mutation("POST", "/nodes/pve2/qemu/101/status/shutdown", {"timeout": "30"}),
        Mutation("POST", "/nodes/pve2/lxc/200/status/start", {}),
        Mutation("POST", "/nodes/pve2/qemu/101/status/reboot", {}),
    ]
    assert pve.cluster.guest(200).status == "running"


def test_a_prod_guest_is_protected_and_waits_for_approval(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    stop = runner.run("proxmox.stop", "web", {}, "alice")
    assert stop.outcome == "pending" and stop.evaluation.classification.tool_class.value == "DESTRUCTIVE"
    assert pve.mutations == []
    done = approve(runner, stop.approval_id, "bob")  # type: ignore[arg-type]
    assert done.outcome == "success" and done.result is not None and done.result.details["task"].startswith("UPID:pve1:")
    assert pve.mutations == [Mutation("POST", "/nodes/pve1/qemu/100/status/stop", {})]


def test_snapshot_then_rollback_through_approval(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    assert runner.run("proxmox.snapshot", "pve/lab/101", {"name": "pre-upgrade", "description": "before 12.2"}, "alice").outcome == "success"
    rollback = runner.run("proxmox.rollback", "pve/lab/101", {"name": "pre-upgrade"}, "alice")
    assert rollback.outcome == "pending"
    approve(runner, rollback.approval_id, "bob")  # type: ignore[arg-type]
    assert [(m.path, m.params) for m in pve.mutations] == [
        ("/nodes/pve2/qemu/101/snapshot", {"snapname": "pre-upgrade", "description": "before 12.2"}),
        ("/nodes/pve2/qemu/101/snapshot/pre-upgrade/rollback", {}),
    ]


def test_the_api_refusing_a_delete_is_a_recorded_failure(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    pending = runner.run("proxmox.delete", "pve/lab/101", {"purge": "true"}, "alice")
    with pytest.raises(ToolFailed, match=r"source 'pve', guest build \(lab/101\): delete failed: HTTP 500.*running"):
        approve(runner, pending.approval_id, "bob")  # type: ignore[arg-type]
    assert pve.mutations == [] and any(g.vmid == 101 for g in pve.cluster.guests)
    runner.run("proxmox.stop", "pve/lab/101", {}, "alice")
    pending = runner.run("proxmox.delete", "pve/lab/101", {"purge": "true"}, "alice")
    approve(runner, pending.approval_id, "bob")  # type: ignore[arg-type]
    assert pve.mutations[-1] == Mutation("DELETE", "/nodes/pve2/qemu/101", {"purge": "1"})
    assert all(g.vmid != 101 for g in pve.cluster.guests)


def test_a_name_shared_by_two_guests_must_be_named_by_id(runner: ToolRunner) -> None:
    with pytest.raises(Ambiguous, match="2 workloads match 'build'"):
        runner.evaluate("proxmox.start", "build", {}, "alice")


def test_the_tool_module_does_not_import_the_sdk() -> None:
    code = "import sys, connectors.proxmox.tools; assert 'proxmoxer' not in sys.modules and 'requests' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
