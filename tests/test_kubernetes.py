"""The Kubernetes connector through the real ``kubernetes`` client against the loopback fake API server."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from connector_contract import ConnectorContract, SourceObject
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from connectors.kubernetes.api import KubernetesApi, RateLimiter
from connectors.kubernetes.config import KubernetesConfig
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterSpec, object_uid
from connectors.kubernetes.fake.server import DEFAULT_TOKEN, FakeKubernetes, write_kubeconfig
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError, SourceError
from inventory.records import Scope, Snapshot
from inventory.redact import redact_text
from inventory.storage.database import Database, open_database
from inventory.storage.models import HostRow, ServiceMember, ServiceRow, Source, SyncRun, WorkloadRow
from inventory.sync import sync_all, sync_source

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 4
REGISTRY = ConnectorRegistry.of(KubernetesConnector)


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="lab", nodes=3, pods=30, minimal_objects=True)) as api:
        yield api


@pytest.fixture
def kubeconfig(tmp_path: Path, cluster: FakeKubernetes) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})


def every_record(snapshot: Snapshot) -> list[Any]:
    """Hosts, workloads and services of a snapshot, for checks that hold for every record."""
    return [*snapshot.hosts, *snapshot.workloads, *snapshot.services]


def connector(kubeconfig: Path, **settings: Any) -> KubernetesConnector:
    values: dict[str, Any] = {
        "name": "lab",
        "kubeconfig": kubeconfig,
        "page_size": PAGE_SIZE,
        "qps": 1000,
        "burst": 1000,
        "timeout": 5,
    }
    values.update(settings)
    return KubernetesConnector(KubernetesConfig(**values))


def uids(cluster: FakeKubernetes, resource: str) -> set[str]:
    return {o["metadata"]["uid"] for o in cluster.objects.items[resource]}


def live(session: Any, model: Any, kind: str | None = None) -> list[Any]:
    query = select(model).where(model.removed_at.is_(None))
    if kind is not None:
        query = query.where(model.kind == kind)
    return list(session.scalars(query))


def removed_count(db: Database) -> int:
    with db.session() as session:
        return sum(
            session.scalar(select(func.count()).select_from(m).where(m.removed_at.is_not(None))) or 0
            for m in (HostRow, WorkloadRow, ServiceRow)
        )


def test_importing_the_connector_does_not_import_the_sdk() -> None:
    code = (
        "import sys, connectors.kubernetes.connector, connectors.kubernetes.api, connectors.kubernetes.records, "
        "connectors.kubernetes.fake.server\n"
        "assert 'kubernetes' not in sys.modules, 'the SDK was imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True, timeout=60)


def test_every_kind_lands_with_its_links(db: Database, cluster: FakeKubernetes, kubeconfig: Path) -> None:
    outcome = sync_source(db, connector(kubeconfig))
    assert outcome.status == "success", outcome.error
    assert outcome.result is not None and outcome.result.unresolved_links == 0
    objects = cluster.objects.items
    with db.session() as session:
        source = session.scalar(select(Source).where(Source.name == "lab"))
        assert source is not None and source.identity == object_uid("lab", "namespace", "", "kube-system")

        nodes = {h.external_id: h for h in live(session, HostRow, "node")}
        assert set(nodes) == uids(cluster, "nodes")
        control = nodes[object_uid("lab", "node", "", "node-0000")]
        assert control.status == "Ready" and control.attributes["roles"] == ["control-plane", "master"]
        assert control.machine_uuid == object_uid("lab", "smbios", "node-0000")  # lower-cased systemUUID
        assert control.attributes["machine_id"] and control.attributes["kubelet_version"] == "v1.31.1+k3s1"
        assert control.attributes["capacity"]["cpu"] == "8" and control.attributes["allocatable"]["pods"] == "110"
        assert control.addresses == ["192.168.0.10", "203.0.113.1"]  # internal, then external

        workloads = {w.external_id: w for w in live(session, WorkloadRow)}
        by_kind = {
            kind: {w.external_id for w in workloads.values() if w.kind == kind}
            for kind in ("pod", "deployment", "statefulset", "daemonset", "job", "cronjob", "replicaset")
        }
        for resource, kind in (
            ("pods", "pod"),
            ("deployments", "deployment"),
            ("statefulsets", "statefulset"),
            ("daemonsets", "daemonset"),
            ("jobs", "job"),
            ("cronjobs", "cronjob"),
        ):
            assert by_kind[kind] == uids(cluster, resource), kind
        # Replicasets are kept only where they link pods to a deployment: old revisions are not.
        live_replicasets = {
            o["metadata"]["uid"] for o in objects["replicasets"] if (o.get("spec") or {}).get("replicas", 1)
        }
        assert by_kind["replicaset"] == live_replicasets and len(live_replicasets) < len(objects["replicasets"])

        node_ids_by_name = {h.name: h.id for h in nodes.values()}
        ids = {w.id: w for w in workloads.values()}
        for pod_json in objects["pods"]:
            pod = workloads[pod_json["metadata"]["uid"]]
            node_name = (pod_json.get("spec") or {}).get("nodeName")
            assert pod.host_id == (node_ids_by_name[node_name] if node_name else None), pod.name
            owners = pod_json["metadata"].get("ownerReferences") or []
            if owners:
                assert ids[pod.parent_id].external_id == owners[0]["uid"], pod.name
        # The chains a user follows: pod -> replicaset -> deployment, pod -> job -> cronjob.
        web_pod = next(w for w in workloads.values() if w.kind == "pod" and w.name.startswith("web-0-"))
        replicaset = ids[web_pod.parent_id]
        assert (
            replicaset.kind == "replicaset"
            and ids[replicaset.parent_id].kind == "deployment"
            and ids[replicaset.parent_id].name == "web-0"
        )
        backup_pod = next(w for w in workloads.values() if w.kind == "pod" and w.name.startswith("backup-"))
        job = ids[backup_pod.parent_id]
        assert job.kind == "job" and ids[job.parent_id].kind == "cronjob" and backup_pod.status == "Succeeded"
        assert web_pod.attributes["containers"][0]["digest"].startswith("sha256:")
        assert web_pod.attributes["containers"][0]["requests"] == {"cpu": "100m", "memory": "128Mi"}
        assert web_pod.attributes["qos_class"] == "Burstable" and web_pod.attributes["pod_ip"].startswith("10.42.")

        services = {(s.kind, s.namespace, s.name): s for s in live(session, ServiceRow)}
        assert {s.external_id for s in services.values() if s.kind == "service"} == uids(cluster, "services")
        assert {s.external_id for s in services.values() if s.kind == "ingress"} == uids(cluster, "ingresses")
        member = aliased(WorkloadRow)

        def members(service: ServiceRow) -> set[str]:
            rows = session.scalars(
                select(member.name)
                .join(ServiceMember, ServiceMember.workload_id == member.id)
                .where(ServiceMember.service_id == service.id)
            )
            return set(rows)

        web = services[("service", "app-000", "web-0")]
        assert members(web) == {
            w.name
            for w in workloads.values()
            if w.kind == "pod" and w.labels.get("app") == "web-0" and w.namespace == "app-000"
        }
        assert (
            web.attributes["type"] == "LoadBalancer"
            and web.attributes["load_balancer_ingress"]
            and web.status == "Ready"
        )
        assert members(services[("service", "app-000", "db")]) == {"db-0", "db-1", "db-2"}
        assert services[("service", "app-000", "db")].attributes["headless"] is True
        assert members(services[("service", "default", "kubernetes")]) == set()  # no selector: no members
        ingress = services[("ingress", "app-000", "web")]
        assert ingress.attributes["class"] == "traefik" and ingress.attributes["tls_hosts"] == [
            "app-000.apps.example.com"
        ]
        assert {r["service"] for r in ingress.attributes["rules"]} == {"web-0", "web-1"}
        assert members(ingress) == members(web) | members(services[("service", "app-000", "web-1")])


def test_objects_missing_optional_fields_still_land(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete, snapshot.errors
    bare = {(r.kind, r.name): r for r in every_record(snapshot) if r.name.startswith("bare-")}
    assert set(bare) == {
        ("node", "bare-node"), ("pod", "bare-pod"), ("deployment", "bare-deployment"),
        ("replicaset", "bare-replicaset"), ("statefulset", "bare-statefulset"), ("daemonset", "bare-daemonset"),
        ("job", "bare-job"), ("cronjob", "bare-cronjob"), ("service", "bare-service"), ("ingress", "bare-ingress"),
    }  # fmt: skip
    assert bare[("node", "bare-node")].status == "Unknown" and bare[("node", "bare-node")].machine_uuid is None
    pod = bare[("pod", "bare-pod")]
    assert pod.host is None and pod.parent is None and pod.status is None and pod.attributes["containers"] == []
    assert (
        bare[("service", "bare-service")].members == ()
        and bare[("service", "bare-service")].attributes["type"] == "ClusterIP"
    )
    json.dumps([r.attributes for r in bare.values()])  # attributes stay plain JSON


def test_every_list_is_paginated_across_many_pages(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete, snapshot.errors
    pods = cluster.objects.count("pods")
    assert pods > 3 * PAGE_SIZE
    assert cluster.pages_served("pods") == math.ceil(pods / PAGE_SIZE)
    assert {w.external_id for w in snapshot.workloads if w.kind == "pod"} == uids(cluster, "pods")
    for _path, query in cluster.requests[1:]:  # every list call after the identity read carries a limit
        assert query.get("limit") == str(PAGE_SIZE)


def test_an_unchanged_cluster_writes_nothing_on_the_second_sync(migrated_sqlite_url: str, kubeconfig: Path) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    try:
        first = sync_source(db, connector(kubeconfig))
        second = sync_source(db, connector(kubeconfig))
        assert first.result is not None and second.result is not None
        assert second.result.changed == 0 and second.result.unchanged == first.result.created
    finally:
        db.dispose()


def check_fault_keeps_everything(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path, fault: Any, message: str
) -> None:
    """A list that fails removes nothing of its kind; the lists that completed still remove what they no longer hold."""
    good = sync_source(db, connector(kubeconfig))
    assert good.ok, good.error
    fault(cluster)
    resource = message.split(":", 1)[0]
    kind = {"pods": "pod", "deployments": "deployment"}[resource]
    victim = next(o["metadata"] for o in cluster.objects.items[resource] if o["metadata"].get("namespace") == "app-000")
    cluster.mutate(resource, victim["name"], "app-000", None)  # gone, but its list fails: not removed
    cluster.mutate("nodes", "node-0002", None, None)  # gone from a list that completed: removed
    outcome = sync_source(db, connector(kubeconfig, timeout=1.0))
    assert outcome.status == "partial"
    assert message in (outcome.error or ""), outcome.error
    assert outcome.result is not None and outcome.result.removed == 1
    with db.session() as session:
        run = session.scalar(select(SyncRun).order_by(SyncRun.id.desc()))
        assert run is not None and run.complete is False and message in (run.error or "")
        assert victim["uid"] in {w.external_id for w in live(session, WorkloadRow, kind)}
        assert "node-0002" not in {h.name for h in live(session, HostRow)}
    if "pods" in message:
        assert "services: not updated" in (outcome.error or "")  # their members would be computed from part of the pods


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (lambda api: api.malformed_page("pods", page=3), "pods: malformed JSON on page 3"),
        (lambda api: api.delay("pods", 3.0, page=2, times=1), "pods: timed out after 1s on page 2"),
        (lambda api: api.fail_page("deployments", page=1, status=500), "deployments: HTTP 500 on page 1"),
    ],
    ids=["malformed-json", "slow", "server-error"],
)
def test_a_fault_in_the_middle_of_a_list_keeps_everything_and_names_the_resource(
    migrated_sqlite_url: str, cluster: FakeKubernetes, kubeconfig: Path, fault: Any, message: str
) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    try:
        check_fault_keeps_everything(db, cluster, kubeconfig, fault, message)
    finally:
        db.dispose()


def test_a_server_error_on_page_two_removes_nothing_on_either_engine(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    check_fault_keeps_everything(
        db, cluster, kubeconfig, lambda api: api.fail_page("pods", page=2, status=500), "pods: HTTP 500 on page 2"
    )


def test_pods_whose_nodes_could_not_be_read_keep_their_links_and_still_update(
    cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    cluster.fail_page("nodes", page=1, status=503)
    snapshot = connector(kubeconfig).collect()
    assert not snapshot.complete and snapshot.hosts == []
    assert snapshot.errors == [
        "nodes: HTTP 503 on page 1 of GET /api/v1/nodes: an error on the server (injected) has prevented the request from succeeding (get nodes)"
    ]
    pods = [w for w in snapshot.workloads if w.kind == "pod"]
    assert len(pods) == cluster.objects.count("pods")  # brought up to date, their node links kept as stored
    assert all(p.unread == {"host"} for p in pods if p.attributes["node"]) and all(
        not p.unread for p in pods if not p.attributes["node"]
    )
    assert Scope("workload", "pod") in (snapshot.scopes or []) and Scope("host", "node") not in (snapshot.scopes or [])
    assert {s.kind for s in snapshot.services} == {"service", "ingress"}


def test_a_deleted_pod_leaves_its_service_and_a_relabelled_pod_joins_another(
    migrated_sqlite_url: str, cluster: FakeKubernetes, kubeconfig: Path
) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    try:
        assert sync_source(db, connector(kubeconfig)).ok
        cluster.mutate("pods", "db-2", "app-000", None)

        def relabel(pod: dict[str, Any]) -> None:
            pod["metadata"]["labels"] = {"app": "db"}

        web_pod = next(
            o["metadata"]["name"] for o in cluster.objects.items["pods"] if o["metadata"]["name"].startswith("web-1-")
        )
        cluster.mutate("pods", web_pod, "app-000", relabel)
        outcome = sync_source(db, connector(kubeconfig))
        assert outcome.ok and outcome.result is not None and outcome.result.removed == 1, outcome.error
        with db.session() as session:
            service = session.scalar(
                select(ServiceRow).where(ServiceRow.name == "db", ServiceRow.namespace == "app-000")
            )
            assert service is not None
            names = set(
                session.scalars(
                    select(WorkloadRow.name)
                    .join(ServiceMember, ServiceMember.workload_id == WorkloadRow.id)
                    .where(ServiceMember.service_id == service.id)
                )
            )
            assert names == {"db-0", "db-1", web_pod}
    finally:
        db.dispose()


def test_an_expired_continue_token_restarts_that_list_once(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.expire_continue("pods", times=1, page=3)
    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete, snapshot.errors
    pods = [w.external_id for w in snapshot.workloads if w.kind == "pod"]
    assert len(pods) == len(set(pods)) and set(pods) == uids(cluster, "pods")  # nothing twice, nothing missing
    assert cluster.pages_served("pods") == math.ceil(len(pods) / PAGE_SIZE) + 3  # pages 1, 2 and the refused 3 again


def test_a_continue_token_that_expires_again_fails_the_list(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.expire_continue("pods", times=2)
    snapshot = connector(kubeconfig).collect()
    assert not snapshot.complete
    assert any(e.startswith("pods: the continue token expired again") for e in snapshot.errors), snapshot.errors


def test_unauthorized_names_the_context_hides_the_token_and_removes_nothing(
    db: Database, cluster: FakeKubernetes, kubeconfig: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert sync_source(db, connector(kubeconfig)).ok
    wrong = "wrong-token-4f9c2b7e1d"
    bad = write_kubeconfig(tmp_path / "bad-kubeconfig", {"lab": cluster}, token=wrong)
    with pytest.raises(SourceError) as raised:
        connector(bad).collect()
    assert "unauthorized for context 'lab'" in str(raised.value) and wrong not in str(raised.value)
    outcome = sync_source(db, connector(bad))
    assert (
        outcome.status == "failed"
        and "source 'lab', namespace kube-system: unauthorized for context 'lab' (HTTP 401)" in (outcome.error or "")
    )
    assert wrong not in (outcome.error or "") and wrong not in caplog.text
    assert removed_count(db) == 0


def test_an_exec_plugin_token_works_and_each_token_it_hands_out_is_masked(
    cluster: FakeKubernetes, tmp_path: Path
) -> None:
    # As EKS, GKE and OIDC helpers do: the kubeconfig runs a command for a short-lived token,
    # and the client runs it again when the token has expired, in the middle of a poll.
    token_file = tmp_path / "current-token"
    token_file.write_text("exec-token-first-7c1d9e")
    cluster.token = token_file.read_text()
    plugin = tmp_path / "token-plugin"
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib\n"
        f"token = pathlib.Path({str(token_file)!r}).read_text()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': token, 'expirationTimestamp': '2000-01-01T00:00:00Z'}}))\n"
    )
    plugin.chmod(0o755)
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "lab",
        "clusters": [{"name": "lab", "cluster": {"server": cluster.url}}],
        "users": [{"name": "lab", "user": exec_user}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
    }))  # fmt: skip

    snapshot = connector(kubeconfig).collect()
    assert snapshot.complete, snapshot.errors
    assert "exec-token-first-7c1d9e" not in redact_text("Authorization: Bearer exec-token-first-7c1d9e")

    api = KubernetesApi("lab", KubernetesConfig(name="lab", kubeconfig=kubeconfig, timeout=5))
    try:
        token_file.write_text("exec-token-rotated-04b2fa")
        cluster.token = token_file.read_text()
        api.get("/api/v1/namespaces/kube-system", "namespace kube-system")  # the expired token is refreshed first
    finally:
        api.close()
    assert "exec-token-rotated-04b2fa" not in redact_text("token exec-token-rotated-04b2fa in a message")


def test_a_token_rejected_in_the_middle_fails_the_whole_source(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    cluster.fail_page("pods", page=2, status=401)
    with pytest.raises(SourceError, match=r"source 'lab', pods: unauthorized for context 'lab'"):
        connector(kubeconfig).collect()


def test_an_unreachable_server_is_a_source_error_naming_source_and_resource(tmp_path: Path) -> None:
    api = FakeKubernetes(ClusterSpec(nodes=1, pods=1)).start()
    config = write_kubeconfig(tmp_path / "kubeconfig", {"gone": api})
    api.stop()
    with pytest.raises(SourceError, match=r"source 'lab', namespace kube-system: cannot reach context 'gone'"):
        connector(config).collect()


def test_every_context_or_a_list_of_contexts_is_one_source_each(db: Database, tmp_path: Path) -> None:
    with (
        FakeKubernetes(ClusterSpec(name="east", nodes=2, pods=8)) as east,
        FakeKubernetes(ClusterSpec(name="west", nodes=1, pods=5)) as west,
    ):
        path = write_kubeconfig(tmp_path / "kubeconfig", {"east": east, "west": west}, current="west")
        raw = {
            "sources": [
                {"type": "kubernetes", "name": "fleet", "kubeconfig": str(path), "context": "*", "page_size": 3}
            ]
        }
        config = build_config(raw, database_url=db.url, registry=REGISTRY)
        assert [s.name for s in config.sources] == ["fleet:east", "fleet:west"]
        listed = build_config(
            {"sources": [{"type": "kubernetes", "name": "k", "kubeconfig": str(path), "context": ["west"]}]},
            registry=REGISTRY,
        )
        assert [(s.name, s.context) for s in listed.sources] == [("k:west", "west")]  # type: ignore[attr-defined]
        # Without a context the current one is read.
        current = connector(path).collect()
        assert current.identity == object_uid("west", "namespace", "", "kube-system")

        outcomes = sync_all(db, config, REGISTRY)
        assert [o.status for o in outcomes] == ["success", "success"], [o.error for o in outcomes]
    with db.session() as session:
        sources = {s.name: s for s in session.scalars(select(Source))}
        assert sources["fleet:east"].identity == object_uid("east", "namespace", "", "kube-system")
        assert sources["fleet:west"].identity == object_uid("west", "namespace", "", "kube-system")
        for name, nodes in (("fleet:east", 2), ("fleet:west", 1)):
            count = session.scalar(
                select(func.count()).select_from(HostRow).where(HostRow.source_id == sources[name].id)
            )
            assert count == nodes


def test_renaming_a_context_keeps_the_cluster(
    migrated_sqlite_url: str, cluster: FakeKubernetes, tmp_path: Path
) -> None:
    db = open_database(migrated_sqlite_url, migrate=True)
    try:
        first = write_kubeconfig(tmp_path / "one", {"old-name": cluster})
        second = write_kubeconfig(tmp_path / "two", {"new-name": cluster})
        config_one = build_config(
            {"sources": [{"type": "kubernetes", "name": "c", "kubeconfig": str(first), "context": ["old-name"]}]},
            registry=REGISTRY,
        )
        assert sync_all(db, config_one, REGISTRY)[0].ok
        config_two = build_config(
            {"sources": [{"type": "kubernetes", "name": "c", "kubeconfig": str(second), "context": ["new-name"]}]},
            registry=REGISTRY,
        )
        outcome = sync_all(db, config_two, REGISTRY)[0]
        assert outcome.ok and outcome.result is not None and outcome.result.created == 0
        with db.session() as session:
            assert [s.name for s in session.scalars(select(Source))] == ["c:new-name"]
    finally:
        db.dispose()


def test_namespace_lists_and_the_annotation_allowlist(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    only = connector(
        kubeconfig, namespaces=["app-000"], annotation_allowlist=["cert-manager.io/*", "kubectl.kubernetes.io/*"]
    ).collect()
    assert only.complete, only.errors
    assert {w.namespace for w in only.workloads} | {s.namespace for s in only.services} == {"app-000"}
    assert len(only.hosts) == cluster.objects.count("nodes")  # nodes belong to no namespace
    namespaced_paths = [path for path, _query in cluster.requests if "/namespaces/app-000/" in path]
    assert any(
        path.endswith("/namespaces/app-000/pods") for path in namespaced_paths
    )  # asked per namespace, not filtered here
    ingress = next(s for s in only.services if s.kind == "ingress")
    assert ingress.attributes["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt"}

    skipped = connector(kubeconfig, exclude_namespaces=["kube-*", "minimal"]).collect()
    namespaces = {w.namespace for w in skipped.workloads}
    assert "kube-system" not in namespaces and "minimal" not in namespaces and "app-000" in namespaces
    assert all("annotations" not in w.attributes for w in skipped.workloads)  # no allowlist, no annotations


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    files = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key", "ca": tmp_path / "ca.pem"}
    leaf.private_key_and_cert_chain_pem.write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    return files


def test_server_url_token_and_ca_file_over_verified_tls(tmp_path: Path, tls_files: dict[str, Path]) -> None:
    (tmp_path / "token").write_text(DEFAULT_TOKEN + "\n")
    with FakeKubernetes(ClusterSpec(nodes=1, pods=3), tls=(str(tls_files["cert"]), str(tls_files["key"]))) as api:
        entry = {
            "type": "kubernetes",
            "name": "remote",
            "server": api.url,
            "token_file": "token",
            "ca_file": "ca.pem",
            "page_size": 2,
        }
        config = build_config({"sources": [entry]}, path=tmp_path / "inventory.yaml", registry=REGISTRY)
        snapshot = KubernetesConnector(config.sources[0]).collect()
        assert snapshot.complete and len(snapshot.hosts) == 1, snapshot.errors
        assert DEFAULT_TOKEN not in repr(snapshot) and DEFAULT_TOKEN not in repr(config.sources[0])

        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        with pytest.raises(
            SourceError,
            match=r"source 'remote', namespace kube-system: TLS handshake with server https://127\.0\.0\.1:\d+ failed "
            r"on GET /api/v1/namespaces/kube-system: certificate verify failed",
        ):
            KubernetesConnector(config.sources[0].model_copy(update={"ca_file": other_ca})).collect()
        unverified = KubernetesConnector(
            config.sources[0].model_copy(update={"ca_file": None, "verify_tls": False})
        ).collect()
        assert unverified.complete


def test_in_cluster_service_account(
    tmp_path: Path, tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(DEFAULT_TOKEN)
    (account / "ca.crt").write_bytes(tls_files["ca"].read_bytes())
    with FakeKubernetes(
        ClusterSpec(name="incluster", nodes=2, pods=6), tls=(str(tls_files["cert"]), str(tls_files["key"]))
    ) as api:
        # What the kubelet puts into every pod's environment.
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", api.url.rsplit(":", 1)[1])
        snapshot = KubernetesConnector(
            KubernetesConfig(name="self", in_cluster=True, service_account_dir=account)
        ).collect()
        assert snapshot.complete and len(snapshot.hosts) == 2, snapshot.errors
        assert snapshot.identity == object_uid("incluster", "namespace", "", "kube-system")

        (account / "token").write_text("revoked-token-0000")
        with pytest.raises(SourceError, match="unauthorized for the in-cluster service account"):
            KubernetesConnector(KubernetesConfig(name="self", in_cluster=True, service_account_dir=account)).collect()


def test_the_client_side_rate_limit_spaces_calls_after_the_burst() -> None:
    limiter = RateLimiter(qps=20, burst=2)
    started = time.monotonic()
    for _ in range(7):
        limiter.acquire()
    elapsed = time.monotonic() - started
    assert elapsed >= 5 / 20 - 0.02  # two free, five at 20 per second
    assert limiter.waited >= 0.2


def test_the_rate_limit_applies_to_a_real_collection(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    started = time.monotonic()
    snapshot = connector(kubeconfig, page_size=50, qps=40, burst=1).collect()
    assert snapshot.complete
    calls = len(cluster.requests)
    assert time.monotonic() - started >= (calls - 1) / 40 - 0.02


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"server": "https://k:6443", "context": "x"}, "server cannot be combined with context"),
        ({"in_cluster": True, "kubeconfig": "k"}, "in_cluster: true cannot be combined"),
        ({"token": "t"}, "token and ca_file go with server"),
        ({"service_account_dir": "/sa"}, "service_account_dir goes with in_cluster"),
        ({"server": "k:6443"}, "server must be a URL"),
        ({"context": ["a", "*"]}, '"*" stands alone'),
        ({"qps": 0}, "qps"),
        ({"tiemout": 3}, "unknown key"),
    ],
)
def test_config_mistakes_are_named(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        build_config({"sources": [{"type": "kubernetes", "name": "k", **settings}]}, registry=REGISTRY)


def test_a_context_missing_from_the_kubeconfig_is_a_source_error(kubeconfig: Path) -> None:
    with pytest.raises(SourceError, match=r"source 'lab', credentials: cannot load credentials for context 'nope'"):
        connector(kubeconfig, context="nope").collect()


def test_durations_and_defaults() -> None:
    config = build_config(
        {"sources": [{"type": "kubernetes", "name": "k", "server": "https://k.example:6443", "timeout": "1m30s"}]},
        registry=REGISTRY,
    ).sources[0]
    assert isinstance(config, KubernetesConfig)
    assert config.timeout == 90 and config.verify_tls is True and config.page_size == 500 and config.context is None


def test_all_contexts_of_a_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        build_config(
            {"sources": [{"type": "kubernetes", "name": "k", "kubeconfig": str(tmp_path / "nope"), "context": "*"}]},
            registry=REGISTRY,
        )


def test_a_snapshot_is_plain_data(cluster: FakeKubernetes, kubeconfig: Path) -> None:
    snapshot = connector(kubeconfig).collect()
    assert isinstance(snapshot, Snapshot)
    text = json.dumps([[r.attributes, dict(r.labels)] for r in every_record(snapshot)])
    assert DEFAULT_TOKEN not in text and "managedFields" not in text and "resourceVersion" not in text


# -- the connector contract -----------------------------------------------------------------------


class TestContract(ConnectorContract):
    @pytest.fixture
    def fake(self) -> Iterator[FakeKubernetes]:
        with FakeKubernetes(ClusterSpec(name="lab", nodes=3, pods=30, minimal_objects=True)) as api:
            yield api

    def connector(self, fake: FakeKubernetes) -> KubernetesConnector:
        # Server and token: the contract checks that the token reaches no record.
        return KubernetesConnector(
            KubernetesConfig(
                name="lab", server=fake.url, token=DEFAULT_TOKEN, page_size=PAGE_SIZE, qps=1000, burst=1000, timeout=5
            )
        )

    def rename(self, fake: FakeKubernetes) -> tuple[SourceObject, str]:
        # The API never renames an object; the fake does, to show that its uid alone is its identity.
        def rename(obj: dict[str, Any]) -> None:
            obj["metadata"]["name"] = "backup-nightly"

        fake.mutate("cronjobs", "backup", "app-000", rename)
        return SourceObject("workload", "cronjob", object_uid_of(fake, "cronjobs", "backup-nightly")), "backup-nightly"

    def remove(self, fake: FakeKubernetes) -> SourceObject:
        uid = object_uid_of(fake, "pods", "db-1")
        fake.mutate("pods", "db-1", "app-000", None)
        return SourceObject("workload", "pod", uid)

    def break_one(self, fake: FakeKubernetes) -> None:
        # The kind ``remove`` deletes from: a list that fails removes nothing of its own kind.
        fake.fail_page("pods", page=1, status=500, times=None)

    def heal(self, fake: FakeKubernetes) -> None:
        fake.faults.clear()

    def remove_beside_a_failed_scope(self, fake: FakeKubernetes) -> SourceObject:
        # Pods are one scope, Services another: a complete pod list removes the deleted pod.
        gone = self.remove(fake)
        fake.fail_page("services", page=1, status=500, times=None)
        return gone

    def break_detail(self, fake: FakeKubernetes) -> tuple[SourceObject, str]:
        # A pod's host link comes from the node list: without it the link is kept as stored.
        pod = next(o for o in fake.objects.items["pods"] if o["spec"].get("nodeName"))
        fake.fail_page("nodes", page=1, status=500, times=None)
        return SourceObject("workload", "pod", str(pod["metadata"]["uid"])), "host_id"

    def secrets(self, fake: FakeKubernetes) -> list[str]:
        return [DEFAULT_TOKEN]


def object_uid_of(fake: FakeKubernetes, resource: str, name: str) -> str:
    return next(str(o["metadata"]["uid"]) for o in fake.objects.items[resource] if o["metadata"]["name"] == name)
