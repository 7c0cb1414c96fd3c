"""Ordinary bad days of a Kubernetes source: narrow permissions, throttling, dropped connections, odd pods.

Through the real ``kubernetes`` client against the loopback fake API server, which answers
403 the way RBAC does, 429/503 with Retry-After, and drops connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from connectors.kubernetes.config import KubernetesConfig
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from inventory.cli import cli
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.records import Scope
from inventory.storage.database import Database
from inventory.storage.models import HostRow, WorkloadRow
from inventory.sync import sync_source

REGISTRY = ConnectorRegistry.of(KubernetesConnector)
NAMESPACED = (
    "pods",
    "replicasets",
    "deployments",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "services",
    "ingresses",
)


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="lab", nodes=3, pods=40, namespaces=2)) as api:
        yield api


@pytest.fixture
def kubeconfig(tmp_path: Path, cluster: FakeKubernetes) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})


def connector(kubeconfig: Path, **settings: Any) -> KubernetesConnector:
    values: dict[str, Any] = {
        "name": "lab",
        "kubeconfig": kubeconfig,
        "page_size": 4,
        "qps": 1000,
        "burst": 1000,
        "timeout": 5,
    }
    values.update(settings)
    return KubernetesConnector(KubernetesConfig(**values))


def live_names(db: Database, model: Any, kind: str | None = None) -> set[tuple[str | None, str]]:
    with db.session() as session:
        query = select(model).where(model.removed_at.is_(None))
        if kind is not None:
            query = query.where(model.kind == kind)
        return {(getattr(row, "namespace", None), row.name) for row in session.scalars(query)}


def first_pod(cluster: FakeKubernetes, namespace: str) -> dict[str, Any]:
    return next(
        o
        for o in cluster.objects.items["pods"]
        if o["metadata"].get("namespace") == namespace and o["status"]["phase"] == "Running"
    )


# -- permissions -------------------------------------------------------------------------------


def test_nodes_forbidden_keep_the_pods_links_and_a_complete_pod_list_still_removes(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    assert sync_source(db, connector(kubeconfig)).ok
    cluster.forbid("nodes")
    gone = first_pod(cluster, "app-000")["metadata"]
    cluster.mutate("pods", gone["name"], "app-000", None)

    snapshot = connector(kubeconfig).collect()
    assert snapshot.errors == [] and snapshot.hosts == []
    assert snapshot.warnings == [
        "permissions: skipped, forbidden for context 'lab' (HTTP 403): nodes (pods keep their last known node links; pods never linked have none)"
    ]
    scheduled = [w for w in snapshot.workloads if w.kind == "pod" and w.attributes["node"]]
    assert scheduled and all(p.host is None and p.unread == {"host"} for p in scheduled)  # kept as stored, not cleared
    assert Scope("workload", "pod") in (snapshot.scopes or []) and not any(
        s.object_type == "host" for s in snapshot.scopes or []
    )

    outcome = sync_source(db, connector(kubeconfig))
    assert outcome.status == "success" and outcome.error is None
    assert outcome.result is not None and outcome.result.removed == 1  # the deleted pod: its list was complete
    assert ("app-000", gone["name"]) not in live_names(db, WorkloadRow, "pod")
    assert len(live_names(db, HostRow)) == 3  # nodes not read are not gone


def test_nodes_and_pods_both_forbidden_claim_no_kept_pod_links(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.forbid("nodes")
    cluster.forbid("pods")

    snapshot = connector(kubeconfig).collect()

    (permissions,) = [w for w in snapshot.warnings if w.startswith("permissions:")]
    assert "nodes" in permissions and "pods" in permissions
    assert "node links" not in permissions  # no pod was read, so none keeps a link


def test_a_namespace_scoped_account_reads_what_it_may_says_so_once_and_succeeds(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A Role in app-000 only: no nodes (cluster scope), no namespace kube-system, nothing in app-001.
    cluster.forbid("nodes")
    cluster.forbid("namespaces")
    for resource in NAMESPACED:
        cluster.forbid(resource, "app-001")
    caplog.set_level(logging.INFO)
    snapshot = connector(kubeconfig, namespaces=["app-000", "app-001"]).collect()

    assert snapshot.errors == [] and snapshot.complete and snapshot.identity is None
    assert snapshot.warnings[0].startswith("namespace kube-system: forbidden for context 'lab' (HTTP 403)")
    assert 'cannot get resource "namespaces"' in snapshot.warnings[0]
    assert snapshot.warnings[1:] == [
        "permissions: skipped, forbidden for context 'lab' (HTTP 403): nodes; "
        + ", ".join(NAMESPACED)
        + " in namespace app-001 (pods keep their last known node links; pods never linked have none)"
    ]
    assert {w.namespace for w in snapshot.workloads} == {"app-000"}
    assert Scope("workload", "pod", "app-000") in (snapshot.scopes or [])
    assert Scope("workload", "pod") not in (snapshot.scopes or [])  # app-001 was not read: nothing there is gone

    outcome = sync_source(db, connector(kubeconfig, namespaces=["app-000", "app-001"]))
    assert outcome.status == "success", outcome.error
    assert sum("skipped, forbidden" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1
    assert sum("kube-system" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING) == 1


def test_sync_once_prints_each_failure_and_each_skipped_kind_once(
    cluster: FakeKubernetes, kubeconfig: Path, tmp_path: Path
) -> None:
    cluster.forbid("nodes")
    cluster.fail_page("deployments", page=1, status=500, times=None)
    config_file = tmp_path / "inventory.yaml"
    config_file.write_text(
        f"sources:\n  - {{type: kubernetes, name: lab, kubeconfig: '{kubeconfig}', context: lab, timeout: 5}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "sync", "--once"]
    )
    assert result.exit_code == 1, result.output  # deployments failed: partial
    assert result.stderr.count("deployments: HTTP 500") == 1, result.stderr
    assert result.stderr.count("skipped, forbidden for context 'lab'") == 1, result.stderr


def test_the_loop_says_a_skipped_kind_once_however_many_runs(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from inventory.loop import SyncLoop

    cluster.forbid("nodes")
    config = build_config(
        {"sources": [{"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab"}]},
        registry=REGISTRY,
    )
    seen: list[Any] = []
    # Polled (follow=False): what is said once is said across runs of the loop's schedule.
    loop = SyncLoop(db, config, REGISTRY, coordinate=False, on_outcome=seen.append, sleep=lambda _s: None, follow=False)
    caplog.set_level(logging.DEBUG)
    loop.schedule[0].interval = 0.01
    loop.run(max_cycles=3)

    assert [o.status for o in seen] == ["success"] * 3 and all(o.warnings for o in seen)
    said = [r for r in caplog.records if "skipped, forbidden" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]


def test_a_namespace_dropped_from_the_config_has_its_objects_removed(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    cluster.forbid("nodes")  # a namespace-scoped account, as such configs usually go with
    both = sync_source(db, connector(kubeconfig, namespaces=["app-000", "app-001"]))
    assert both.ok, both.error
    assert {ns for ns, _ in live_names(db, WorkloadRow)} == {"app-000", "app-001"}

    one = sync_source(db, connector(kubeconfig, namespaces=["app-000"]))
    assert one.ok, one.error
    assert {ns for ns, _ in live_names(db, WorkloadRow)} == {
        "app-000"
    }  # outside the configured set: gone from this source
    assert one.result is not None and one.result.removed > 0


# -- throttling and hiccups --------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(cluster: FakeKubernetes, kubeconfig: Path, status: int) -> None:
    cluster.throttle("pods", page=2, retry_after=1, status=status)
    started = time.monotonic()
    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete and snapshot.errors == [], snapshot.errors
    assert time.monotonic() - started >= 1.0  # the wait the server asked for
    assert len([w for w in snapshot.workloads if w.kind == "pod"]) == cluster.objects.count("pods")


def test_retry_after_beyond_the_budget_fails_that_list_at_once(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.throttle("pods", page=1, retry_after=120, times=None)
    started = time.monotonic()
    snapshot = connector(kubeconfig).collect()
    assert time.monotonic() - started < 5
    assert snapshot.errors[0].startswith("pods: HTTP 429 on page 1"), snapshot.errors


def test_a_server_that_keeps_throttling_is_asked_a_bounded_number_of_times(
    cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    cluster.throttle("deployments", page=1, retry_after=0, times=None)
    snapshot = connector(kubeconfig).collect()
    assert any(
        e.startswith("deployments: HTTP 429 on page 1") and "still refused after 3 retries" in e
        for e in snapshot.errors
    ), snapshot.errors
    assert cluster.pages_served("deployments") == 4


def test_a_dropped_connection_is_asked_again_once(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.drop_connection("pods", page=2, times=1)
    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete and snapshot.errors == [], snapshot.errors

    cluster.drop_connection("pods", page=1, times=2)
    failed = connector(kubeconfig).collect()
    assert any(e.startswith("pods: cannot reach context 'lab' on page 1") for e in failed.errors), failed.errors


# -- contexts and config -----------------------------------------------------------------------


def test_every_context_reads_each_cluster_once(
    cluster: FakeKubernetes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeKubernetes(ClusterSpec(name="other", nodes=1, pods=3)) as other:
        path = write_kubeconfig(tmp_path / "kubeconfig", {"admin": cluster, "readonly": cluster, "other": other})
        raw = {"sources": [{"type": "kubernetes", "name": "fleet", "kubeconfig": str(path), "context": "*"}]}
        config = build_config(raw, registry=REGISTRY)
    assert [s.name for s in config.sources] == ["fleet:admin", "fleet:other"]
    assert "skipped 'readonly' (same cluster as 'admin')" in caplog.text


def test_a_missing_kubeconfig_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "kubeconfig"
    config_file = tmp_path / "inventory.yaml"
    config_file.write_text(
        f"sources:\n  - type: kubernetes\n    name: k\n    kubeconfig: {missing}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "sync", "--once"]
    )
    assert result.exit_code == 2, result.output
    assert f"cannot read kubeconfig {missing}" in result.output and "Traceback" not in result.output


def test_one_cluster_configured_twice_is_said_with_both_names(db: Database, cluster: FakeKubernetes) -> None:
    from connectors.kubernetes.fake.server import DEFAULT_TOKEN
    from inventory.sync import sync_all

    # One cluster through two URLs: no config check can tell, the cluster's identity does.
    servers = {"a": cluster.url, "b": cluster.url.replace("127.0.0.1", "localhost")}
    config = build_config(
        {
            "sync": {"concurrency": 1},
            "sources": [
                {"type": "kubernetes", "name": name, "server": server, "token": DEFAULT_TOKEN, "timeout": 5}
                for name, server in servers.items()
            ],
        },
        registry=REGISTRY,
    )
    sync_all(db, config, REGISTRY)
    first, second = sync_all(db, config, REGISTRY)

    assert (first.status, second.status) == ("success", "success"), (first.error, second.error)
    assert [w for w in first.warnings if "the same kubernetes as source 'b'" in w], first.warnings
    assert [w for w in second.warnings if "the same kubernetes as source 'a'" in w], second.warnings


def test_a_missing_default_kubeconfig_is_a_config_error_naming_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope" / "config"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    config_file = tmp_path / "inventory.yaml"
    config_file.write_text("sources:\n  - {type: kubernetes, name: k}\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "sync", "--once"]
    )
    assert result.exit_code == 2, result.output
    assert f"cannot read kubeconfig {missing}" in result.output and "Traceback" not in result.output


def test_an_allowlist_glob_keeps_every_key_it_matches(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    snapshot = connector(kubeconfig, annotation_allowlist=["kubectl.kubernetes.io/*"]).collect()
    deployment = next(w for w in snapshot.workloads if w.kind == "deployment")
    assert set(deployment.attributes["annotations"]) == {"kubectl.kubernetes.io/last-applied-configuration"}


# -- pod status --------------------------------------------------------------------------------


def _evicted(pod: dict[str, Any]) -> None:
    pod["status"] = {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}


def _waiting(reason: str) -> Any:
    def change(pod: dict[str, Any]) -> None:
        pod["status"]["phase"] = "Pending" if reason == "ContainerCreating" else "Running"
        for status in pod["status"]["containerStatuses"]:
            status["state"] = {"waiting": {"reason": reason}}
            status["ready"] = False

    return change


def _oom_killed(pod: dict[str, Any]) -> None:
    for status in pod["status"]["containerStatuses"]:
        status["state"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        status["ready"] = False


@pytest.mark.parametrize(
    ("change", "phase", "reason"),
    [
        (_evicted, "Failed", "Evicted"),
        (_waiting("CrashLoopBackOff"), "Running", "CrashLoopBackOff"),
        (_waiting("ContainerCreating"), "Pending", "ContainerCreating"),
        (_waiting("ImagePullBackOff"), "Running", "ImagePullBackOff"),
        (_oom_killed, "Running", "OOMKilled"),
        (None, "Running", None),
    ],
    ids=["evicted", "crashloop", "creating", "imagepull", "oomkilled", "running"],
)
def test_a_pod_carries_the_reason_kubectl_shows_beside_its_phase(
    cluster: FakeKubernetes, kubeconfig: Path, change: Any, phase: str, reason: str | None
) -> None:
    pod = first_pod(cluster, "app-000")["metadata"]
    if change is not None:
        cluster.mutate("pods", pod["name"], "app-000", change)
    snapshot = connector(kubeconfig).collect()
    record = next(w for w in snapshot.workloads if w.external_id == pod["uid"])
    assert record.status == phase
    assert record.attributes.get("reason") == reason


def test_a_completed_job_pod_reads_completed(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    snapshot = connector(kubeconfig).collect()
    job_pods = [w for w in snapshot.workloads if w.kind == "pod" and (w.attributes["owner"] or {}).get("kind") == "Job"]
    assert job_pods and all(p.status == "Succeeded" and p.attributes["reason"] == "Completed" for p in job_pods)
