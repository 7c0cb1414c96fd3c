"""The benchmark's realistic Kubernetes fake: a real cluster's kind counts and object weights, and the
connector reads all of it through the real client."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from connectors.kubernetes.connector import KubernetesConfig, KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterObjects, ClusterSpec
from connectors.kubernetes.fake.realistic import fields_v1, generate_realistic_cluster, pod_json_bytes
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@pytest.fixture(scope="module")
def tenth() -> ClusterObjects:
    """A tenth of the benchmark's 500 nodes and 15,000 pods."""
    return generate_realistic_cluster(ClusterSpec(name="bench", nodes=50, pods=1500))


def test_kind_counts_are_those_of_a_real_cluster(tenth: ClusterObjects) -> None:
    counts = {resource: len(items) for resource, items in tenth.items.items()}
    assert counts["pods"] == 1500 and counts["nodes"] == 50
    # A real cluster of 15,000 pods: ~1,300 StatefulSets and Jobs, ~650 CronJobs and Ingresses, ~6,600 ReplicaSets.
    assert counts["statefulsets"] == 130 and counts["jobs"] == 130
    assert counts["cronjobs"] == 65 and counts["ingresses"] == 65
    assert 640 <= counts["replicasets"] <= 680
    at_zero = sum(1 for rs in tenth.items["replicasets"] if rs["spec"]["replicas"] == 0)
    assert at_zero / counts["replicasets"] >= 0.7  # old revisions kept by revisionHistoryLimit
    assert counts["daemonsets"] >= 5 and counts["services"] > counts["deployments"]
    owners = Counter(pod["metadata"]["ownerReferences"][0]["kind"] for pod in tenth.items["pods"])
    assert owners["DaemonSet"] == 5 * 50 and owners["Job"] == 130 and owners["StatefulSet"] == 260


def test_objects_weigh_what_real_ones_do(tenth: ClusterObjects) -> None:
    assert 4500 <= pod_json_bytes(tenth) <= 6500
    for resource, items in tenth.items.items():
        for obj in items:
            managers = obj["metadata"]["managedFields"]
            assert managers and all(m["fieldsType"] == "FieldsV1" and m["fieldsV1"] for m in managers), resource
    for resource in ("deployments", "statefulsets", "daemonsets", "cronjobs", "services", "ingresses"):
        for obj in tenth.items[resource]:
            applied = json.loads(obj["metadata"]["annotations"][LAST_APPLIED])
            assert applied["spec"] == obj["spec"] and applied["metadata"]["name"] == obj["metadata"]["name"]
    pod = tenth.items["pods"][0]
    container = pod["spec"]["containers"][0]
    assert container["resources"]["requests"] and pod["spec"]["tolerations"] and pod["status"]["containerStatuses"]


def test_managed_fields_use_the_api_servers_field_set_format() -> None:
    container = {"name": "web", "ports": [{"containerPort": 80, "protocol": "TCP"}], "args": ["-v"]}
    assert fields_v1({"containers": [container]}, top=True) == {
        "f:containers": {
            'k:{"name":"web"}': {
                ".": {},
                "f:name": {},
                "f:ports": {
                    'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}
                },
                "f:args": {},
            }
        }
    }


def test_the_connector_reads_a_realistic_cluster_whole(tmp_path: Path) -> None:
    objects = generate_realistic_cluster(ClusterSpec(name="bench", nodes=4, pods=120))
    with FakeKubernetes(objects=objects) as api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"bench": api})
        snapshot = KubernetesConnector(KubernetesConfig(name="bench", kubeconfig=kubeconfig, page_size=50)).collect()
    assert snapshot.complete, snapshot.errors
    kinds = Counter(w.kind for w in snapshot.workloads)
    items = objects.items
    assert kinds["pod"] == len(items["pods"]) == 120
    assert kinds["statefulset"] == len(items["statefulsets"]) and kinds["cronjob"] == len(items["cronjobs"])
    assert kinds["job"] == len(items["jobs"]) and kinds["deployment"] == len(items["deployments"])
    # Old ReplicaSets (scaled to zero, no pods) are not inventory.
    assert kinds["replicaset"] == sum(1 for rs in items["replicasets"] if rs["spec"]["replicas"])
    assert len(snapshot.hosts) == 4
    assert len(snapshot.services) == len(items["services"]) + len(items["ingresses"])
    # Every pod is linked to its node, and controller-owned pods to their controller.
    assert all(w.host is not None and w.parent is not None for w in snapshot.workloads if w.kind == "pod")
