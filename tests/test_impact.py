"""`inventory impact` over the demo lab, and the policy escalating a call whose impact reaches protected things."""

from __future__ import annotations

import json

import pytest
from lab_support import SyncedLab, lab  # noqa: F401 (a fixture)
from sync_support import invoke_inventory

from inventory.audit.log import AuditFilter, list_entries
from inventory.errors import Ambiguous, UsageError
from inventory.impact import impact
from inventory.policy.classes import ToolClass
from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import Effect, builtin_policy, parse_policy


def _labels(items: tuple) -> set[str]:
    return {item.label for item in items}


def test_a_vm_takes_the_kubernetes_node_it_is_and_its_pods(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        result = impact(session, "node-0000")  # the Proxmox guest
    assert result.target.label == "pve/qemu/node-0000"
    assert _labels(result.hosts) == {"k3s/node/node-0000", "pve/vm/node-0000"}
    node = next(h for h in result.hosts if h.source == "k3s")
    assert "(machine_uuid)" in node.via
    pods = [w for w in result.workloads if w.kind == "pod"]
    assert len(pods) == len(result.workloads) == 8 and {w.namespace for w in pods} == {
        "app-000",
        "app-001",
        "kube-system",
    }
    services = {s.service.label: s for s in result.services}
    # Replicas on the other nodes keep every Kubernetes service up; the pool loses one of three VMs.
    assert services["pve/pool/k8s"].lost == 1 and services["pve/pool/k8s"].left_running == 2
    assert not result.services_down


def test_an_lxc_takes_the_docker_engine_on_it_and_its_compose_services(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        result = impact(session, "docker01")
    assert _labels(result.hosts) == {"docker01/docker-engine/docker01", "pve/lxc/docker01"}
    assert {w.kind for w in result.workloads} == {"container"} and len(result.workloads) == 7
    down = _labels(tuple(s.service for s in result.services_down))
    assert "docker01/compose-project/media/media" in down and "docker01/compose-service/monitoring/grafana" in down
    assert "left without ready members" in result.summary()


def test_a_kubernetes_node_or_a_docker_host_goes_downward_only(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        node = impact(session, "k3s/node-0001")
        engine = impact(session, "host:docker01/docker01")
    assert node.target.label == "k3s/node/node-0001" and not node.hosts  # not the VM under it
    assert {w.source for w in node.workloads} == {"k3s"} and len(node.workloads) == 8
    assert not engine.hosts and len(engine.workloads) == 7


def test_a_proxmox_node_takes_every_guest_and_what_runs_in_them(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        result = impact(session, "host:pve1")
    assert {"k3s/node/node-0000", "docker01/docker-engine/docker01"} <= _labels(result.hosts)
    assert {"pve", "k3s", "docker01"} == {w.source for w in result.workloads}


def test_targets_that_name_nothing_or_too_much(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        with pytest.raises(Ambiguous, match="2 hosts match 'host:node-0000'"):
            impact(session, "host:node-0000")
        with pytest.raises(UsageError, match="not for a service"):
            impact(session, "service:web")


def test_cli_table_and_json(lab: SyncedLab) -> None:
    table = invoke_inventory("-c", str(lab.config_path), "impact", "docker01")
    assert table.exit_code == 0, table.stderr
    assert (
        table.stdout.startswith("pve/lxc/docker01 takes 2 host(s), 7 workload(s)")
        and "same machine as pve/docker01 (hostname_address)" in table.stdout
    )
    as_json = json.loads(invoke_inventory("-c", str(lab.config_path), "impact", "node-0000", "-o", "json").stdout)
    assert as_json["target"]["kind"] == "qemu" and len(as_json["workloads"]) == 8
    missing = invoke_inventory("-c", str(lab.config_path), "impact", "nope")
    assert (
        missing.exit_code == 1
        and "no live host or workload matches 'nope'" in missing.stderr
        and "Traceback" not in missing.stderr
    )


def test_stopping_a_vm_whose_pods_are_protected_needs_approval(lab: SyncedLab) -> None:
    registry = ToolRegistry.discover()
    # Without the impact, shutting a guest down is SAFE_MUTATE and allowed: node-0000 is not protected itself.
    blind = ToolRunner(lab.db, builtin_policy(), registry, escalation_sources=[])
    assert blind.evaluate("proxmox.shutdown", "node-0000", {}, "alice").decision.effect is Effect.ALLOW

    runner = ToolRunner(lab.db, builtin_policy(), registry)
    evaluation = runner.evaluate("proxmox.shutdown", "node-0000", {}, "alice")
    assert evaluation.classification.tool_class is ToolClass.DESTRUCTIVE
    assert evaluation.decision.effect is Effect.REQUIRE_APPROVAL
    assert any(
        "its impact reaches workload k3s/pod/kube-system/" in r and "namespace 'kube-system' is protected" in r
        for r in evaluation.classification.reasons
    )

    outcome = runner.run("proxmox.shutdown", "node-0000", {"reason": "kernel update"}, "alice")
    assert outcome.outcome == "pending"
    shown = outcome.as_row()["impact"]  # what the requester sees of the approval request
    assert shown["summary"].startswith("pve/qemu/node-0000 takes 2 host(s), 8 workload(s)") and shown["workloads"] == 8
    with lab.db.session() as session:
        (entry,) = [
            e
            for e in list_entries(session, AuditFilter(tool="proxmox.shutdown"))
            if e["approval_id"] == outcome.approval_id
        ]
    assert entry["outcome"] == "pending" and entry["tool_class"] == "DESTRUCTIVE"
    assert entry["details"]["impact"]["summary"] == shown["summary"]
    assert any("kube-system" in line for line in entry["details"]["impact"]["escalated_by"])


def test_a_protected_label_below_the_target_escalates_too(lab: SyncedLab) -> None:
    policy = parse_policy(b"protected: {namespaces: [], tags: [], labels: {com.docker.compose.project: media}}\n")
    runner = ToolRunner(lab.db, policy, ToolRegistry.discover())
    docker = runner.evaluate("proxmox.reboot", "docker01", {}, "alice")
    assert docker.classification.tool_class is ToolClass.DESTRUCTIVE
    assert any("label com.docker.compose.project=media is protected" in r for r in docker.classification.reasons)
    # A guest with nothing protected below it keeps its class; its impact is still shown.
    quiet = runner.evaluate("proxmox.reboot", "homeassistant", {}, "alice")
    assert quiet.classification.tool_class is ToolClass.SAFE_MUTATE
    assert quiet.as_row()["impact"]["summary"] == "pve/qemu/homeassistant takes 1 host(s), 0 workload(s), 1 service(s)"
