"""The Kubernetes connector's watch(): list then watch through the real client against the loopback API server.

Every change at the fake server (put/remove/mutate, with the managedFields entry its manager writes)
must reach a yielded snapshot as the record collect() would build; bookmarks, 410 Gone, cut
connections, a restarted API server and a namespace-scoped account are the far side's doing.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.kubernetes.config import KubernetesConfig
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.kubernetes.watch import Watcher
from inventory.cause import CauseKind
from inventory.errors import SourceError
from inventory.reconcile import reconcile
from inventory.records import Scope, Snapshot
from inventory.storage.database import Database
from inventory.storage.store import SqlStore

App = "app-000"


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="lab", nodes=3, pods=30)) as api:
        api.bookmark_interval = 0.2
        yield api


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Watcher, "give_up", 5.0)


def make_connector(tmp_path: Path, cluster: FakeKubernetes, **settings: Any) -> KubernetesConnector:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    values: dict[str, Any] = {"name": "lab", "kubeconfig": kubeconfig, "qps": 1000, "burst": 1000, "timeout": 5}
    values.update(settings)
    return KubernetesConnector(KubernetesConfig(**values))


class Follow:
    """watch() on a thread; its snapshots on a queue; what it holds is the first snapshot plus every delta."""

    def __init__(self, connector: KubernetesConnector) -> None:
        self.stop = threading.Event()
        self.out: queue.Queue[Snapshot | BaseException] = queue.Queue()
        self.held: dict[tuple[str, str, str], Any] = {}
        self.seen: list[Snapshot] = []
        self.thread = threading.Thread(target=self._run, args=(connector,), daemon=True)
        self.thread.start()
        self.first = self.next()
        assert not self.first.delta
        self._hold(self.first)

    def _run(self, connector: KubernetesConnector) -> None:
        try:
            for snapshot in connector.watch(self.stop):
                self.out.put(snapshot)
        except BaseException as exc:  # handed to the test
            self.out.put(exc)

    def _hold(self, snapshot: Snapshot) -> None:
        for scope in snapshot.scopes or ():
            if snapshot.delta:
                for key in [k for k in self.held if scope.covers(k[0], k[1], getattr(self.held[k], "namespace", None))]:
                    del self.held[key]
        groups: list[tuple[str, list[Any]]] = [
            ("host", snapshot.hosts),
            ("workload", snapshot.workloads),
            ("service", snapshot.services),
        ]
        for object_type, records in groups:
            for record in records:
                self.held[(object_type, record.kind, record.external_id)] = record
        for key in snapshot.deleted:
            self.held.pop(key, None)

    def next(self, timeout: float = 5.0) -> Snapshot:
        item = self.out.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        if item.delta:
            self._hold(item)
        self.seen.append(item)
        return item

    def until(self, found: Callable[[Snapshot], bool], timeout: float = 5.0) -> Snapshot:
        deadline = time.monotonic() + timeout
        while True:
            snapshot = self.next(max(0.01, deadline - time.monotonic()))
            if found(snapshot):
                return snapshot

    def drain(self, seconds: float) -> list[Snapshot]:
        got = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got.append(self.next(max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                break
        return got

    def close(self) -> float:
        started = time.monotonic()
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        return time.monotonic() - started


def new_pod(cluster: FakeKubernetes, like: str = "web-0", name: str | None = None) -> dict[str, Any]:
    """A copy of a pod of ``like``'s replicaset, with a new name and uid (what its controller would create)."""
    template = next(
        p
        for p in cluster.objects.items["pods"]
        if p["metadata"]["name"].startswith(like + "-") and p["metadata"].get("namespace") == App
    )
    pod = copy.deepcopy(template)
    meta = pod["metadata"]
    meta["name"] = name or f"{like}-new-{uuid.uuid4().hex[:5]}"
    meta["uid"] = str(uuid.uuid4())
    meta["managedFields"] = []
    return pod


def names(snapshot: Snapshot, kind: str = "pod") -> set[str]:
    records: list[Any] = [*snapshot.workloads, *snapshot.services]
    return {r.name for r in records if r.kind == kind}


def matches_collect(follow: Follow, connector: KubernetesConnector) -> None:
    """What the watch yielded, put together, is what a collect now reads (records equal, none missing)."""
    fresh = connector.collect()
    wanted: dict[tuple[str, str, str], Any] = {("host", r.kind, r.external_id): r for r in fresh.hosts}
    wanted |= {("workload", r.kind, r.external_id): r for r in fresh.workloads}
    wanted |= {("service", r.kind, r.external_id): r for r in fresh.services}
    assert set(follow.held) == set(wanted)
    for key, record in wanted.items():
        assert follow.held[key] == record, key


def test_a_change_is_yielded_as_collect_builds_it(tmp_path: Path, cluster: FakeKubernetes) -> None:
    connector = make_connector(tmp_path, cluster)
    follow = Follow(connector)
    try:
        pod = cluster.put("pods", new_pod(cluster), manager="kube-controller-manager")
        added = follow.until(lambda s: pod["metadata"]["name"] in names(s))
        assert added.delta and added.scopes == []
        # The service selecting it gains a member, and the ingress routing to that service follows.
        assert any(
            s.kind == "service" and any(m.external_id == pod["metadata"]["uid"] for m in s.members)
            for s in added.services
        )

        cluster.mutate(
            "pods",
            pod["metadata"]["name"],
            App,
            lambda o: o["status"].__setitem__("phase", "Failed"),
            manager="kubelet",
            subresource="status",
        )
        modified = follow.until(lambda s: pod["metadata"]["name"] in names(s))
        assert next(w for w in modified.workloads if w.kind == "pod").status == "Failed"

        cluster.remove("pods", App, pod["metadata"]["name"])
        deleted = follow.until(lambda s: ("workload", "pod", pod["metadata"]["uid"]) in s.deleted)
        assert ("workload", "pod", pod["metadata"]["uid"]) not in deleted.causes  # a deletion's author is unknown
        follow.drain(0.4)
        matches_collect(follow, connector)
    finally:
        follow.close()


def test_an_unchanged_object_yields_nothing_and_reconciles_to_no_change(
    tmp_path: Path, cluster: FakeKubernetes, db: Database
) -> None:
    connector = make_connector(tmp_path, cluster)
    full = connector.collect()
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id("lab", "kubernetes", None)
        reconcile(full, store, source_id=source_id, run_id=store.start_run(source_id))
    follow = Follow(connector)
    try:
        # A write that changes nothing kept (a new resourceVersion, a heartbeat-like status touch): no snapshot.
        name = next(
            p["metadata"]["name"] for p in cluster.objects.items["pods"] if p["metadata"].get("namespace") == App
        )
        cluster.mutate(
            "pods", name, App, lambda o: o["metadata"].setdefault("annotations", {}).__setitem__("touched", "1")
        )
        assert follow.drain(0.8) == []
        # The watch's first snapshot (its list) is the collect's records: reconciled, it changes nothing.
        with db.write_session() as session:
            store = SqlStore(session)
            result = reconcile(follow.first, store, source_id=source_id, run_id=store.start_run(source_id))
        assert result.changed == 0
    finally:
        follow.close()


def test_bookmarks_move_the_position_of_a_quiet_watch(tmp_path: Path, cluster: FakeKubernetes) -> None:
    follow = Follow(make_connector(tmp_path, cluster))
    try:
        cluster.mutate(
            "nodes", "node-0001", None, lambda o: o["metadata"]["labels"].__setitem__("zone", "b"), manager="kubectl"
        )
        follow.until(lambda s: any(h.name == "node-0001" for h in s.hosts))
        version = cluster._resource_version
        # Every kind's watch open (on a busy machine one may still be connecting), then a bookmark or two
        # reach the pods' watch, which saw no event.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cluster.watches_open() < 10:
            time.sleep(0.05)
        time.sleep(0.6)
        assert cluster.cut_watches() >= 10
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cluster.watches_open() < 10:
            time.sleep(0.05)
        resumed = [q for p, q in cluster.requests if p == "/api/v1/pods" and q.get("watch") == "true"]
        assert int(resumed[-1]["resourceVersion"]) >= version
        assert resumed[-1]["allowWatchBookmarks"] == "true"
    finally:
        follow.close()


def test_410_gone_relists_that_kind_only_and_loses_nothing(tmp_path: Path, cluster: FakeKubernetes) -> None:
    connector = make_connector(tmp_path, cluster)
    follow = Follow(connector)
    gone = next(p for p in cluster.objects.items["pods"] if p["metadata"].get("namespace") == App)
    added = new_pod(cluster)
    try:

        def lists() -> dict[str, int]:
            return {
                r: sum(1 for path, q in cluster.requests if path.endswith("/" + r) and q.get("watch") != "true")
                for r in ("nodes", "pods", "deployments", "services")
            }

        before = lists()

        def while_down() -> None:
            cluster.remove("pods", App, gone["metadata"]["name"])
            cluster.put("pods", added, manager="kube-controller-manager")
            cluster.expire_history("pods")

        cluster.restart(down=0.3, while_down=while_down)
        relist = follow.until(lambda s: bool(s.scopes))
        assert relist.scopes == [Scope("workload", "pod")]
        assert added["metadata"]["name"] in names(relist) and gone["metadata"]["name"] not in names(relist)
        assert len([w for w in relist.workloads if w.kind == "pod"]) == len(cluster.objects.items["pods"])
        follow.drain(0.5)
        # Only pods were listed again; the other kinds resumed their watches.
        after = lists()
        assert after["pods"] == before["pods"] + 1
        assert {r: n for r, n in after.items() if r != "pods"} == {r: n for r, n in before.items() if r != "pods"}
        matches_collect(follow, connector)
    finally:
        follow.close()


def test_a_cut_connection_resumes_without_loss_or_duplicates(tmp_path: Path, cluster: FakeKubernetes) -> None:
    connector = make_connector(tmp_path, cluster)
    follow = Follow(connector)
    try:
        cluster.cut_watches()
        pods = [cluster.put("pods", new_pod(cluster), manager="kube-controller-manager") for _ in range(3)]
        got = follow.drain(1.5)
        yielded = [w.name for s in got for w in s.workloads if w.kind == "pod"]
        for pod in pods:
            assert yielded.count(pod["metadata"]["name"]) == 1
        matches_collect(follow, connector)
    finally:
        follow.close()


def test_an_api_server_restart_is_followed(tmp_path: Path, cluster: FakeKubernetes) -> None:
    connector = make_connector(tmp_path, cluster)
    follow = Follow(connector)
    try:
        pod = new_pod(cluster)
        cluster.restart(down=0.5, while_down=lambda: cluster.put("pods", pod, manager="kube-controller-manager"))
        follow.until(lambda s: pod["metadata"]["name"] in names(s), timeout=8)
        later = cluster.put("pods", new_pod(cluster), manager="kube-controller-manager")
        follow.until(lambda s: later["metadata"]["name"] in names(s))
    finally:
        follow.close()


def test_a_namespace_scoped_account_watches_its_namespaces(tmp_path: Path, cluster: FakeKubernetes) -> None:
    for resource in (
        "nodes",
        "pods",
        "services",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "ingresses",
    ):
        cluster.forbid(resource)
    for resource in (
        "pods",
        "services",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "ingresses",
    ):
        cluster.forbidden.discard((resource, None))
        cluster.forbid(resource, "kube-system")
    cluster.forbidden.add(("nodes", None))
    connector = make_connector(tmp_path, cluster, namespaces=[App])
    follow = Follow(connector)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and cluster.watches_open() < 9:  # every kind but nodes, in its namespace
            time.sleep(0.05)
        watches = {p for p, q in cluster.requests if q.get("watch") == "true"}
        assert watches and all(f"/namespaces/{App}/" in p for p in watches)
        assert not any(p.endswith("/nodes") for p in watches)
        pod = cluster.put("pods", new_pod(cluster), manager="kube-controller-manager")
        follow.until(lambda s: pod["metadata"]["name"] in names(s))
        matches_collect(follow, connector)
    finally:
        follow.close()


def test_stop_returns_within_a_second(tmp_path: Path, cluster: FakeKubernetes) -> None:
    follow = Follow(make_connector(tmp_path, cluster))
    time.sleep(0.3)
    assert follow.close() < 1.2
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and cluster.watches_open():
        time.sleep(0.05)
    assert cluster.watches_open() == 0


def test_stop_during_the_first_lists_returns_within_a_second(tmp_path: Path, cluster: FakeKubernetes) -> None:
    cluster.latency = 0.2  # a slow API server: the first lists take seconds
    stop = threading.Event()
    out: list[Any] = []
    connector = make_connector(tmp_path, cluster, page_size=4)
    thread = threading.Thread(target=lambda: out.extend(connector.watch(stop)), daemon=True)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 1.2
    assert out == []  # nothing half-read is yielded


def test_causes_name_the_field_manager_and_the_owner_chain(tmp_path: Path, cluster: FakeKubernetes) -> None:
    follow = Follow(make_connector(tmp_path, cluster))
    try:
        # kubectl apply (server-side) of a new image: the deployment's spec changed, by kubectl Apply.
        def new_image(obj: dict[str, Any]) -> None:
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27.3"

        cluster.mutate("deployments", "web-0", App, new_image, manager="kubectl", operation="Apply")
        snapshot = follow.until(lambda s: "web-0" in names(s, "deployment"))
        deployment = next(w for w in snapshot.workloads if w.kind == "deployment")
        cause = snapshot.causes[("workload", "deployment", deployment.external_id)]
        assert (cause.kind, cause.actor, cause.action, cause.inferred) == (
            CauseKind.KUBERNETES,
            "kubectl",
            "Apply",
            False,
        )

        # The replicaset controller makes a pod: its cause is the controller, and its chain names the
        # deployment whose template kubectl applied.
        pod = cluster.put("pods", new_pod(cluster), manager="kube-controller-manager")
        snapshot = follow.until(lambda s: pod["metadata"]["name"] in names(s))
        cause = snapshot.causes[("workload", "pod", pod["metadata"]["uid"])]
        assert cause.actor == "kube-controller-manager" and not cause.inferred
        assert cause.detail["via"] == "Deployment/web-0"
        assert [o["kind"] for o in cause.detail["owners"]] == ["ReplicaSet", "Deployment"]
        assert cause.detail["owners"][-1]["template_by"] == "kubectl Apply"

        # The kubelet reports the pod failed: a status change, by the kubelet, not by the controller.
        cluster.mutate(
            "pods",
            pod["metadata"]["name"],
            App,
            lambda o: o["status"].__setitem__("phase", "Failed"),
            manager="kubelet",
            subresource="status",
        )
        snapshot = follow.until(lambda s: pod["metadata"]["name"] in names(s))
        assert snapshot.causes[("workload", "pod", pod["metadata"]["uid"])].actor == "kubelet"
    finally:
        follow.close()


def test_a_full_sync_attributes_the_last_writer_as_inferred(tmp_path: Path, cluster: FakeKubernetes) -> None:
    cluster.mutate(
        "deployments", "web-0", App, lambda o: o["spec"].__setitem__("replicas", 4), manager="kubectl-client-side-apply"
    )
    snapshot = make_connector(tmp_path, cluster).collect()
    deployment = next(w for w in snapshot.workloads if w.kind == "deployment" and w.name == "web-0")
    cause = snapshot.causes[("workload", "deployment", deployment.external_id)]
    assert (cause.actor, cause.action, cause.inferred) == ("kubectl-client-side-apply", "Update", True)


def test_an_account_without_the_watch_verb_is_told_what_to_grant(tmp_path: Path, cluster: FakeKubernetes) -> None:
    cluster.unwatchable.add("pods")
    follow = Follow(make_connector(tmp_path, cluster))
    try:
        with pytest.raises(SourceError, match=r"watch.*--verb=get,list,watch"):
            follow.next()
    finally:
        follow.close()


def test_records_made_from_other_objects_follow_them(tmp_path: Path, cluster: FakeKubernetes) -> None:
    """A service's members follow pod labels, a replicaset left with no replicas and no pods goes, and a
    pod seen before its node is linked to it when the node comes."""
    connector = make_connector(tmp_path, cluster)
    follow = Follow(connector)
    try:
        pod = next(
            p
            for p in cluster.objects.items["pods"]
            if p["metadata"].get("namespace") == App and p["metadata"]["name"].startswith("web-0-")
        )
        cluster.mutate(
            "pods", pod["metadata"]["name"], App, lambda o: o["metadata"]["labels"].clear(), manager="kubectl"
        )
        snapshot = follow.until(lambda s: any(r.kind == "service" for r in s.services))
        assert all(m.external_id != pod["metadata"]["uid"] for s in snapshot.services for m in s.members)

        late = new_pod(cluster)  # a pod of its own (no owner), on a node not there yet
        late["metadata"]["ownerReferences"] = []
        late["spec"]["nodeName"] = "node-late"
        replicaset = next(
            r
            for r in cluster.objects.items["replicasets"]
            if r["metadata"].get("namespace") == App and (r.get("spec") or {}).get("replicas")
        )
        uid = replicaset["metadata"]["uid"]
        owned = [
            p["metadata"]["name"]
            for p in cluster.objects.items["pods"]
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or ())
        ]

        def scale_to_zero(obj: dict[str, Any]) -> None:
            obj["spec"]["replicas"] = 0
            obj["status"] = {"replicas": 0}

        cluster.mutate(
            "replicasets", replicaset["metadata"]["name"], App, scale_to_zero, manager="kube-controller-manager"
        )
        for name in owned:
            cluster.remove("pods", App, name)
        follow.until(lambda s: ("workload", "replicaset", uid) in s.deleted)

        node = copy.deepcopy(cluster.objects.items["nodes"][0])
        node["metadata"].update(name="node-late", uid=str(uuid.uuid4()))
        cluster.put("pods", late, manager="kube-controller-manager")
        first = follow.until(lambda s: late["metadata"]["name"] in names(s))
        assert next(w for w in first.workloads if w.name == late["metadata"]["name"]).host is None
        cluster.put("nodes", node, manager="k3s")
        linked = follow.until(lambda s: late["metadata"]["name"] in names(s))
        host = next(w for w in linked.workloads if w.name == late["metadata"]["name"]).host
        assert host is not None and host.external_id == node["metadata"]["uid"]
        follow.drain(0.4)
        matches_collect(follow, connector)
    finally:
        follow.close()
