"""Proxmox tools through the real proxmoxer against the fake HTTPS API, which records the guest writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, mac_for
from connectors.proxmox.fake.mutations import MutableFakeProxmox, Mutation
from connectors.proxmox.fake.server import free_port
from inventory.audit.log import AuditFilter, list_entries
from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import Ambiguous, SourceError, TargetChanged
from inventory.policy.approvals import approve
from inventory.policy.execute import ToolFailed, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.storage.database import Database
from inventory.sync import sync_source

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
    raw = {"sources": [pve.source("pve", timeout=5, retries=0)]}
    config: Config = build_config(
        raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(ProxmoxConnector)
    )
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
    assert (
        done.outcome == "success" and done.result is not None and done.result.details["task"].startswith("UPID:pve1:")
    )
    assert pve.mutations == [Mutation("POST", "/nodes/pve1/qemu/100/status/stop", {})]


def test_snapshot_then_rollback_through_approval(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    assert (
        runner.run(
            "proxmox.snapshot", "pve/lab/101", {"name": "pre-upgrade", "description": "before 12.2"}, "alice"
        ).outcome
        == "success"
    )
    rollback = runner.run("proxmox.rollback", "pve/lab/101", {"name": "pre-upgrade"}, "alice")
    assert rollback.outcome == "pending"
    approve(runner, rollback.approval_id, "bob")  # type: ignore[arg-type]
    assert [(m.path, m.params) for m in pve.mutations] == [
        ("/nodes/pve2/qemu/101/snapshot", {"snapname": "pre-upgrade", "description": "before 12.2"}),
        ("/nodes/pve2/qemu/101/snapshot/pre-upgrade/rollback", {}),
    ]


def test_the_api_refusing_a_delete_is_a_recorded_failure(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    pending = runner.run("proxmox.delete", "pve/lab/101", {"purge": "true"}, "alice")
    with pytest.raises(
        ToolFailed,
        match=r"source 'pve', guest build \(lab/101\): delete failed: DELETE /api2/json/nodes/{node}/qemu/{vmid}: HTTP 500.*running",
    ):
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


def last_entry(runner: ToolRunner) -> dict[str, object]:
    with runner.db.session() as session:
        return list_entries(session, AuditFilter(newest_first=True, limit=1))[0]


def test_a_guest_renamed_and_tagged_prod_since_the_sync_is_classified_as_it_is_now(
    runner: ToolRunner, pve: MutableFakeProxmox
) -> None:
    guest = pve.cluster.guest(101)
    guest.name, guest.tags = "prod-db", ["prod"]
    stop = runner.run("proxmox.stop", "pve/lab/101", {}, "alice")
    assert stop.outcome == "pending" and stop.evaluation.classification.tool_class.value == "DESTRUCTIVE"
    assert any("tag prod is protected" in why for why in stop.evaluation.classification.reasons)
    assert stop.evaluation.target is not None and stop.evaluation.target.name == "prod-db"
    assert pve.mutations == []
    live = last_entry(runner)["details"]["live_target"]  # type: ignore[index]
    assert live["name"] == "prod-db" and live["tags"] == ["prod"] and live["identity"]["uuid"] == guest.smbios_uuid


def test_a_vmid_given_to_another_guest_is_refused(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    pve.cluster.guests = [g for g in pve.cluster.guests if g.vmid != 101]
    pve.cluster.guests.append(
        FakeGuest(101, "qemu", "build", "pve2", macs=[mac_for(101)])
    )  # same vmid, name, node: another machine
    with pytest.raises(TargetChanged, match="lab/101 \\(build\\) is another object at source 'pve'.*uuid"):
        runner.run("proxmox.stop", "pve/lab/101", {}, "alice")
    assert pve.mutations == []
    entry = last_entry(runner)
    details: dict[str, Any] = entry["details"]  # type: ignore[assignment]
    assert (
        entry["outcome"] == "refused"
        and details["live_target"]["identity"]["uuid"] == pve.cluster.guest(101).smbios_uuid
    )


def test_a_guest_without_uuid_is_matched_by_name(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    pve.cluster.guest(200).name = "other"  # a container: no SMBIOS uuid, so its name says which one it is
    with pytest.raises(TargetChanged, match="name 'cache' expected, 'other' found"):
        runner.run("proxmox.start", "cache", {}, "alice")
    pve.cluster.guests = [g for g in pve.cluster.guests if g.vmid != 200]
    with pytest.raises(TargetChanged, match="no longer exists at source 'pve'"):
        runner.run("proxmox.start", "workload:pve/lxc/lab/200", {}, "alice")
    assert pve.mutations == []


def test_a_migrated_guest_is_reached_on_its_new_node(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    pve.cluster.guest(101).node = "pve1"
    assert runner.run("proxmox.reboot", "pve/lab/101", {}, "alice").outcome == "success"
    assert pve.mutations == [Mutation("POST", "/nodes/pve1/qemu/101/status/reboot", {})]


def test_an_approved_call_whose_guest_was_replaced_meanwhile_is_refused(
    runner: ToolRunner, pve: MutableFakeProxmox, db: Database
) -> None:
    pending = runner.run("proxmox.delete", "pve/lab/101", {}, "alice")
    assert pending.outcome == "pending"
    pve.cluster.guests = [g for g in pve.cluster.guests if g.vmid != 101]
    pve.cluster.guests.append(FakeGuest(101, "qemu", "build", "pve2", status="stopped", macs=[mac_for(101)]))
    # A sync in between records the new guest under the same vmid: only the request's identity tells them apart.
    assert sync_source(db, ProxmoxConnector(runner.source_config("pve"))).status == "success"  # type: ignore[misc]
    with pytest.raises(TargetChanged, match="approval .*another object.*uuid.*it was rejected"):
        approve(runner, pending.approval_id, "bob")  # type: ignore[arg-type]
    assert pve.mutations == [] and any(g.vmid == 101 for g in pve.cluster.guests)
    entry = last_entry(runner)
    assert (entry["event"], entry["outcome"]) == ("approval", "rejected")


def test_an_unreachable_source_refuses_the_call(runner: ToolRunner, pve: MutableFakeProxmox) -> None:
    assert runner.source_config is not None
    moved = runner.source_config("pve").model_copy(update={"url": f"https://127.0.0.1:{free_port()}"})
    runner.source_config = lambda _name: moved  # nothing listens there: the node is down
    with pytest.raises(
        SourceError,
        match="source 'pve', guest build \\(lab/101\\): re-reading the guest failed: GET /api2/json/\\S+: cannot connect.*nothing was run",
    ):
        runner.run("proxmox.shutdown", "pve/lab/101", {}, "alice")
    entry = last_entry(runner)
    assert entry["outcome"] == "refused" and "source 'pve'" in str(entry["error"])


def test_the_tool_module_does_not_import_the_sdk() -> None:
    code = (
        "import sys, connectors.proxmox.tools; assert 'proxmoxer' not in sys.modules and 'requests' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)
