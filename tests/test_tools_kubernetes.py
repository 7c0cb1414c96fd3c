"""Kubernetes tools through the real ``kubernetes`` client against the fake API server, which records the writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.audit.log import AuditFilter, list_entries
from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import NotFound, SourceError, TargetChanged
from inventory.policy.approvals import approve
from inventory.policy.execute import PolicyDenied, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import load_policy
from inventory.storage.database import Database
from inventory.sync import sync_source

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS = ToolRegistry.discover()


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


@pytest.fixture
def setup(cluster: MutableFakeKubernetes, db: Database, tmp_path: Path) -> tuple[ToolRunner, Config]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    raw = {
        "sources": [
            {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}
        ]
    }
    config = build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of(KubernetesConnector))
    outcome = sync_source(db, KubernetesConnector(config.source("lab")))
    assert outcome.status == "success", outcome.error
    policy = load_policy(PROJECT_ROOT / "config" / "policy.yaml", known_tools=TOOLS.names())
    return ToolRunner(db, policy, TOOLS, source_config=config.source), config


def uid_of(cluster: MutableFakeKubernetes, resource: str, namespace: str | None, name: str) -> str:
    found = cluster._find(resource, namespace, name)
    assert found is not None
    return str(found["metadata"]["uid"])


def test_reads_list_pods_and_pod_logs(setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes) -> None:
    runner, _ = setup
    listed = runner.run("kubernetes.list_pods", "source:lab", {"namespace": "app-000"}, "alice")
    assert listed.outcome == "success" and len(listed.result.data) == 8  # type: ignore[union-attr]
    assert {p["namespace"] for p in listed.result.data} == {"app-000"}  # type: ignore[union-attr]
    logs = runner.run("kubernetes.pod_logs", "lab/db-0", {"tail": "10"}, "alice")
    assert logs.result is not None and "db-0: ready" in logs.result.data
    assert cluster.mutations == []


def test_restart_and_scale_reach_the_api_server(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    restarted = runner.run("kubernetes.restart_deployment", "web-0", {}, "alice")
    assert restarted.outcome == "success"
    scaled = runner.run("kubernetes.scale_deployment", "lab/web-1", {"replicas": "5"}, "alice")
    assert scaled.outcome == "success" and scaled.evaluation.classification.tool_class.value == "SAFE_MUTATE"
    restart, scale = cluster.mutations
    assert (restart.method, restart.path) == ("PATCH", "/apis/apps/v1/namespaces/app-000/deployments/web-0")
    assert "kubectl.kubernetes.io/restartedAt" in restart.body["spec"]["template"]["metadata"]["annotations"]
    assert (scale.method, scale.path, scale.body) == (
        "PATCH",
        "/apis/apps/v1/namespaces/app-000/deployments/web-1/scale",
        {"spec": {"replicas": 5}},
    )
    assert cluster._find("deployments", "app-000", "web-1")["spec"]["replicas"] == 5  # type: ignore[index]


def test_scale_to_zero_and_kube_system_are_destructive_and_wait(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    to_zero = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "alice")
    assert to_zero.outcome == "pending" and to_zero.evaluation.classification.tool_class.value == "DESTRUCTIVE"
    system = runner.run("kubernetes.restart_deployment", "coredns", {}, "alice")
    assert system.outcome == "pending" and any("kube-system" in r for r in system.evaluation.classification.reasons)
    assert cluster.mutations == []
    done = approve(runner, to_zero.approval_id, "bob")  # type: ignore[arg-type]
    assert done.outcome == "success"
    assert [m.body for m in cluster.mutations] == [{"spec": {"replicas": 0}}]


def test_delete_pod_carries_the_uid_precondition(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    uid = uid_of(cluster, "pods", "app-000", "db-1")
    deleted = runner.run("kubernetes.delete_pod", "db-1", {}, "alice")
    assert deleted.outcome == "success"
    (mutation,) = cluster.mutations
    assert (mutation.method, mutation.path) == ("DELETE", "/api/v1/namespaces/app-000/pods/db-1")
    assert mutation.body["preconditions"] == {"uid": uid}
    assert cluster._find("pods", "app-000", "db-1") is None


def test_a_pod_replaced_under_the_same_name_is_not_deleted(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    # The controller replaced db-2 since the last sync: same name, new uid.
    cluster.mutate("pods", "db-2", "app-000", lambda pod: pod["metadata"].__setitem__("uid", "0000-new-uid"))
    with pytest.raises(TargetChanged, match="db-2.*another object at source 'lab'.*'0000-new-uid' found"):
        runner.run("kubernetes.delete_pod", "db-2", {}, "alice")
    assert cluster._find("pods", "app-000", "db-2") is not None and cluster.mutations == []
    with runner.db.session() as session:
        (entry,) = list_entries(session, AuditFilter(event="tool_call"))
    assert entry["outcome"] == "refused" and "another object" in entry["error"]
    assert entry["details"]["live_target"]["identity"] == {"uid": "0000-new-uid"}


def test_a_deployment_replaced_under_the_same_name_is_not_restarted(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    # Nothing in a PATCH says which object it was meant for: only the re-read identity stops it.
    cluster.mutate("deployments", "web-0", "app-000", lambda d: d["metadata"].__setitem__("uid", "0000-recreated"))
    with pytest.raises(TargetChanged, match="web-0.*another object"):
        runner.run("kubernetes.restart_deployment", "web-0", {}, "alice")
    assert cluster.mutations == []


def test_labels_set_at_the_source_since_the_sync_classify_the_call(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    cluster.mutate(
        "deployments", "web-1", "app-000", lambda d: d["metadata"].setdefault("labels", {}).__setitem__("tags", "prod")
    )
    call = runner.run("kubernetes.restart_deployment", "web-1", {}, "alice")
    assert call.outcome == "pending" and call.evaluation.classification.tool_class.value == "DESTRUCTIVE"
    assert call.evaluation.decision.rule_label == "prod-changes-need-approval" and cluster.mutations == []


def test_an_approved_delete_of_a_pod_replaced_meanwhile_is_refused(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    pending = runner.run("kubernetes.delete_pod", "db-1", {"force": "true"}, "alice")
    assert pending.outcome == "pending"
    cluster.mutate("pods", "db-1", "app-000", lambda pod: pod["metadata"].__setitem__("uid", "0000-new-uid"))
    with pytest.raises(TargetChanged, match="approval .*another object.*it was rejected"):
        approve(runner, pending.approval_id, "bob")  # type: ignore[arg-type]
    assert cluster.mutations == []
    with runner.db.session() as session:
        last = list_entries(session, AuditFilter(newest_first=True, limit=1))[0]
    assert (last["event"], last["outcome"]) == ("approval", "rejected") and "0000-new-uid" in last["error"]


def test_an_unreachable_api_server_refuses_the_call(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    cluster.stop()
    with pytest.raises(
        SourceError, match="source 'lab', deployment app-000/web-0: re-reading it failed.*nothing was run"
    ):
        runner.run("kubernetes.restart_deployment", "web-0", {}, "alice")
    with runner.db.session() as session:
        (entry,) = list_entries(session, AuditFilter(event="tool_call"))
    assert entry["outcome"] == "refused" and "source 'lab'" in entry["error"]


def test_delete_namespace_needs_approval_and_system_namespaces_are_denied(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    with pytest.raises(PolicyDenied, match="no-namespace-deletion-of-system"):
        runner.run("kubernetes.delete_namespace", "source:lab", {"namespace": "kube-system"}, "alice")
    pending = runner.run("kubernetes.delete_namespace", "source:lab", {"namespace": "app-000"}, "alice")
    assert pending.outcome == "pending"
    approve(runner, pending.approval_id, "bob")  # type: ignore[arg-type]
    assert [(m.method, m.path) for m in cluster.mutations] == [("DELETE", "/api/v1/namespaces/app-000")]
    with runner.db.session() as session:
        outcomes = [(e["tool"], e["outcome"]) for e in list_entries(session, AuditFilter(event="tool_call"))]
    assert outcomes == [
        ("kubernetes.delete_namespace", "denied"),
        ("kubernetes.delete_namespace", "pending"),
        ("kubernetes.delete_namespace", "success"),
    ]


def test_targets_resolve_by_uid_and_ambiguous_names_are_refused(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    uid = uid_of(cluster, "deployments", "app-000", "web-0")
    evaluation = runner.evaluate(
        "kubernetes.scale_deployment", f"workload:lab/deployment/{uid}", {"replicas": "3"}, "alice"
    )
    assert evaluation.target is not None and evaluation.target.name == "web-0"
    with pytest.raises(NotFound):
        runner.evaluate("kubernetes.scale_deployment", "db-0", {"replicas": "3"}, "alice")  # a pod, not a deployment


def test_the_tool_module_does_not_import_the_sdk() -> None:
    code = "import sys, connectors.kubernetes.tools; assert 'kubernetes' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_grace_period_zero_is_as_destructive_as_force(
    setup: tuple[ToolRunner, Config], cluster: MutableFakeKubernetes
) -> None:
    runner, _ = setup
    forced = runner.run("kubernetes.delete_pod", "db-1", {"force": "true"}, "alice")
    immediate = runner.run("kubernetes.delete_pod", "db-2", {"grace_period": "0"}, "alice")
    for call in (forced, immediate):
        assert call.outcome == "pending" and call.evaluation.classification.tool_class.value == "DESTRUCTIVE"
    assert any("grace_period=0" in why for why in immediate.evaluation.classification.reasons)
    assert cluster.mutations == []
    graceful = runner.run("kubernetes.delete_pod", "db-0", {"grace_period": "30"}, "alice")
    assert graceful.outcome == "success" and graceful.evaluation.classification.tool_class.value == "SAFE_MUTATE"
