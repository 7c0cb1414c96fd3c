"""Following a Kubernetes cluster as it changes: a list of each kind, then a watch of it (``Connector.watch``).

The start is a full collection (``_Collector``, the same lists and scopes as ``collect``), yielded as
it is; each list's resourceVersion is where the watch of that list starts (``?watch=true
&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=S``). One reader thread per watch (per
kind, or per kind and namespace for an account that lists per namespace) reads its stream and puts
the events on one queue; the generator applies them to what it holds (nodes, pods and controllers as
records, services and ingresses raw: their members follow the pods) and yields what changed, at most
a few snapshots a second.

Records are built by the functions ``collect`` uses (records.py), from the same inputs, and compared
with what was last yielded: an event that changes nothing the inventory keeps (a heartbeat, a new
resourceVersion) yields nothing. A pod's change also recomputes the members of the services whose
selector matches it, a replicaset's or pod's change whether that replicaset is kept (live, or the
owner of a pod), a node's arrival the links of the pods on it.

``stop`` is looked at every ``poll`` seconds by the generator, never by a reader: a reader blocks on
its stream (a watch request lasts ``timeout_seconds``, read timeout a little longer, so a silently dead
connection is found), and stopping shuts its socket down, which ends the read at once. Short request
timeouts would do the same at the cost of a new request per kind every second, for ever.

Bookmarks advance a reader's resourceVersion without events. A stream the server ends (timeoutSeconds)
is opened again from there; a cut connection or an API server away is retried with backoff, from the
last resourceVersion, so nothing in the gap is lost. A 410 Gone (the history no longer reaches back
to it) is answered by a new list of that kind (that namespace) only, yielded as a snapshot reading its
scope with all of it. A 401, a 403 (the account may list but not watch), or a reader failing for
longer than ``give_up`` seconds raises a SourceError: the core then syncs in full and watches again.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.kubernetes.api import API_KINDS, KubernetesApi, ListFailed, WatchExpired, qualified
from connectors.kubernetes.api import SCOPES as _SCOPES
from connectors.kubernetes.causes import Owners, Writer, cause_of, changed_parts, controller_reference, owner_of
from connectors.kubernetes.causes import writers as writers_of
from connectors.kubernetes.records import (
    AnnotationFilter,
    controller_workload,
    ingress_record,
    node_host,
    pod_workload,
    service_record,
)
from inventory.errors import SourceError
from inventory.records import Host, ObjectKey, Ref, Scope, Service, Snapshot, Workload

log = logging.getLogger(__name__)

Record = Host | Workload | Service
_CONTROLLER_KINDS = ("replicaset", "deployment", "statefulset", "daemonset", "job", "cronjob")
_RESOURCE_OF_KIND = {kind: resource for resource, (_type, kind) in _SCOPES.items()}


@dataclass
class _Item:
    """What a reader puts on the queue: an event, a relist after 410, or why it cannot go on."""

    what: str  # "event" | "relist" | "fatal"
    resource: str
    namespace: str | None
    type: str = ""
    obj: dict[str, Any] | None = None
    items: list[dict[str, Any]] | None = None
    error: SourceError | None = None


class Watcher:
    """One ``watch`` run of one source; tunables are attributes so that tests can shorten them."""

    # Seconds the server keeps one watch request open (client-go picks 5 to 10 minutes).
    timeout_seconds = 300
    # Seconds a reader may fail to reconnect before the stream gives up (SourceError).
    give_up = 120.0
    # Seconds between the first event of a batch and its snapshot, and the least between two snapshots.
    batch = 0.1
    spacing = 0.2
    # How often the generator looks at ``stop`` while nothing arrives.
    poll = 0.25

    def __init__(self, source_name: str, api: KubernetesApi, collector: Any, stop: threading.Event) -> None:
        """``collector``: the connector's ``_Collector`` (keep_raw), which reads the lists the watches start from."""
        self.source_name = source_name
        self.api = api
        self.collector = collector
        self.stop = stop
        self.halt = threading.Event()  # tells the readers to end
        self.queue: queue.Queue[_Item] = queue.Queue()
        self.threads: list[threading.Thread] = []

    # -- the generator -------------------------------------------------------------------

    def run(self) -> Iterator[Snapshot]:
        collector = self.collector
        first = collector.run()
        if self.stop.is_set():
            return  # stopped while listing: what was read is not a position to watch from
        if collector.failed:
            raise SourceError(
                self.source_name, "watch", "cannot start: " + "; ".join(first.errors or sorted(collector.failed))
            )
        self.state = _State(collector, first)
        streams = self.state.streams
        if not streams:
            raise SourceError(self.source_name, "watch", "nothing to watch: every list is forbidden")
        yield first
        try:
            for resource, namespace in streams:
                version = self.api.versions.get((resource, namespace), "")
                thread = threading.Thread(
                    target=self._follow,
                    args=(resource, namespace, version),
                    name=f"k8s-watch-{resource}",
                    daemon=True,
                )
                thread.start()
                self.threads.append(thread)
            yield from self._loop()
        finally:
            self.halt.set()
            self.api.shutdown_watches()
            deadline = time.monotonic() + 1.0
            for thread in self.threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> Iterator[Snapshot]:
        last = 0.0
        while not self.stop.is_set():
            try:
                item = self.queue.get(timeout=self.poll)
            except queue.Empty:
                continue
            batch = [item]
            until = max(time.monotonic() + self.batch, last + self.spacing)
            while not self.stop.is_set():
                left = until - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.queue.get(timeout=min(left, self.poll)))
                except queue.Empty:
                    continue
            for snapshot in self._apply(batch):
                if not snapshot.object_count and not snapshot.deleted and not snapshot.scopes:
                    continue
                last = time.monotonic()
                yield snapshot

    def _apply(self, batch: list[_Item]) -> Iterator[Snapshot]:
        """One delta for the events of a batch; a relist is a snapshot of its own, reading its scope."""
        state = self.state
        delta = state.begin()
        for item in batch:
            if item.what == "fatal":
                assert item.error is not None
                raise item.error
            if item.what == "relist":
                if not delta.empty():
                    yield delta.finish()
                    delta = state.begin()
                assert item.items is not None
                # A list shows objects as they are, not which change happened: its causes are inferred.
                delta.stated = False
                state.relist(item.resource, item.namespace, item.items)
                yield delta.finish(relisted=(item.resource, item.namespace))
                delta = state.begin()
                continue
            assert item.obj is not None
            state.event(item.resource, item.type, item.obj)
        yield delta.finish()

    # -- a reader thread -----------------------------------------------------------------

    def _follow(self, resource: str, namespace: str | None, version: str) -> None:
        where = resource if namespace is None else f"{resource} in namespace {namespace}"
        delay = 0.1
        failing_since: float | None = None
        while not self.halt.is_set():
            try:
                for event in self.api.open_watch(
                    resource, namespace, version, self.timeout_seconds, self.timeout_seconds + 30.0
                ):
                    failing_since, delay = None, 0.1
                    version = self._event(resource, namespace, event, version)
                    if self.halt.is_set():
                        return
                continue  # the server ended the request (timeoutSeconds): ask again from where it was
            except WatchExpired:
                log.info("source %r: watch of %s expired (410 Gone); listing it again", self.source_name, where)
                try:
                    version = self._relist(resource, namespace)
                    failing_since, delay = None, 0.1
                    continue
                except Exception as exc:
                    error: BaseException = exc
            except Exception as exc:
                error = exc
            if self.halt.is_set():
                return
            try:
                reason = self.api._explain(error, resource, f"on watch of {where}")
            except SourceError as fatal:  # a 401: the credentials were refused
                self.queue.put(_Item("fatal", resource, namespace, error=fatal))
                return
            if reason.status == 403:
                grant = (
                    f"grant it watch as well as get and list, e.g. kubectl create clusterrole inventory-read "
                    f"--verb=get,list,watch --resource={qualified(resource)},... "
                    "(deploy/kubernetes has the ClusterRole)"
                )
                self.queue.put(
                    _Item(
                        "fatal",
                        resource,
                        namespace,
                        error=SourceError(self.source_name, resource, f"{reason.reason}: {grant}"),
                    )
                )
                return
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > self.give_up:
                self.queue.put(
                    _Item(
                        "fatal",
                        resource,
                        namespace,
                        error=SourceError(
                            self.source_name, resource, f"{reason.reason} (reconnecting for {self.give_up:g}s)"
                        ),
                    )
                )
                return
            log.info("source %r: watch of %s: %s; reconnecting in %.1fs", self.source_name, where, reason.reason, delay)
            self.halt.wait(delay * (0.5 + random.random()))  # jitter: many readers do not reconnect at once
            delay = min(delay * 2, 5.0)

    def _event(self, resource: str, namespace: str | None, event: Mapping[str, Any], version: str) -> str:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise WatchExpired(str(obj.get("message") or "410 Gone"))
            raise ListFailed(f"watch error: {obj.get('message') or obj.get('reason')}", obj.get("code"))
        meta = obj.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.queue.put(_Item("event", resource, namespace, str(kind), obj))
        return str(meta.get("resourceVersion") or version)  # a BOOKMARK only moves the position

    def _relist(self, resource: str, namespace: str | None) -> str:
        items: list[dict[str, Any]] = []
        self.api.list_all(resource, namespace, items.extend, items.clear)
        self.queue.put(_Item("relist", resource, namespace, items=items))
        return self.api.versions.get((resource, namespace), "")


class _LivePods:
    """Pods by namespace, with their labels: a service's members, the way ``PodIndex.match`` finds them."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, Mapping[str, str]]] = defaultdict(dict)

    def match(self, namespace: str | None, selector: Mapping[str, str]) -> tuple[Ref, ...]:
        if not selector:
            return ()
        pods = self.labels.get(namespace or "") or {}
        found = [uid for uid, labels in pods.items() if all(labels.get(k) == v for k, v in selector.items())]
        return tuple(Ref("pod", uid) for uid in sorted(found))


def _matches(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    return bool(selector) and labels is not None and all(labels.get(k) == v for k, v in selector.items())


class _Delta:
    """The snapshot of one batch: dirty objects are rebuilt and compared with what was last yielded."""

    def __init__(self, state: _State) -> None:
        self.state = state
        self.snapshot = Snapshot.changes(state.identity)
        self.dirty: set[ObjectKey] = set()
        self.writers: dict[ObjectKey, tuple[tuple[Writer, ...], dict[str, Any]]] = {}
        self.stated = True  # the changes were seen as events (not found by a list)

    def empty(self) -> bool:
        return not self.dirty

    def finish(self, relisted: tuple[str, str | None] | None = None) -> Snapshot:
        return self.state.finish(self, relisted)


class _State:
    """What the watch holds of the cluster, and what it last told the inventory (``shown``)."""

    def __init__(self, collector: Any, first: Snapshot) -> None:
        self.identity = first.identity
        self.annotations: AnnotationFilter = collector.annotations
        self.wanted = collector.wanted
        self.node_links_unread = bool(collector.unreadable("nodes"))
        self.members_unread = collector.unreadable("pods") | collector.unreadable("services")
        self.owners: Owners = collector.owners
        namespaces: list[str | None] = list(collector.exact_namespaces or []) or [None]
        forbidden = set(collector.forbidden)
        self.streams: list[tuple[str, str | None]] = []
        for resource in _SCOPES:
            scopes: list[str | None] = [None] if resource == "nodes" else namespaces
            for namespace in scopes:
                if (resource, namespace) not in forbidden:
                    self.streams.append((resource, namespace))
        self.namespaced = namespaces != [None]

        self.shown: dict[ObjectKey, Record] = {}
        for object_type, records in (("host", first.hosts), ("workload", first.workloads), ("service", first.services)):
            for record in records:
                self.shown[(object_type, record.kind, record.external_id)] = record
        self.nodes: dict[str, Host] = {h.external_id: h for h in first.hosts}
        self.node_refs: dict[str, Ref] = {h.name: Ref("node", h.external_id) for h in first.hosts}
        self.pods: dict[str, Workload] = {}
        self.live = _LivePods()
        self.owned: Counter[str] = Counter()
        self.controllers: dict[str, Workload] = {}
        for record in first.workloads:
            if record.kind == "pod":
                self._set_pod(record.external_id, record)
            else:
                self.controllers[record.external_id] = record
        for record in collector.replicasets:
            self.controllers[record.external_id] = record
        self.services: dict[str, dict[str, Any]] = {o["metadata"]["uid"]: o for o in collector.raw["services"]}
        self.ingresses: dict[str, dict[str, Any]] = {o["metadata"]["uid"]: o for o in collector.raw["ingresses"]}
        self.service_by_name: dict[tuple[str, str], Service] = {
            (s.namespace or "", s.name): s for s in first.services if s.kind == "service"
        }

    # -- events --------------------------------------------------------------------------

    def begin(self) -> _Delta:
        self.delta = _Delta(self)
        return self.delta

    def _set_pod(self, uid: str, pod: Workload | None) -> None:
        old = self.pods.pop(uid, None)
        if old is not None:
            self.live.labels[old.namespace or ""].pop(uid, None)
            if old.parent is not None:
                self.owned[old.parent.external_id] -= 1
        if pod is not None:
            self.pods[uid] = pod
            self.live.labels[pod.namespace or ""][uid] = pod.labels
            if pod.parent is not None:
                self.owned[pod.parent.external_id] += 1

    def event(self, resource: str, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        uid = meta.get("uid")
        if not uid or not self.wanted(meta.get("namespace")):
            return
        object_type, kind = _SCOPES[resource]
        key = (object_type, kind, uid)
        gone = type_ == "DELETED"
        delta = self.delta
        if kind in _CONTROLLER_KINDS:
            self.owners.note(uid, None if gone else owner_of(API_KINDS[resource], obj))
        if not gone:
            reference = controller_reference(meta)
            detail = self.owners.detail({"ownerReferences": [reference]}) if reference else {}
            delta.writers[key] = (writers_of(meta), detail)
        delta.dirty.add(key)
        if kind == "node":
            self._node(uid, None if gone else node_host(obj, self.annotations))
        elif kind == "pod":
            self._pod(uid, None if gone else obj)
        elif kind in _CONTROLLER_KINDS:
            self.controllers.pop(uid, None)
            if not gone:
                self.controllers[uid] = controller_workload(kind, obj, self.annotations)
        elif kind == "service":
            self._service(uid, None if gone else obj)
        else:
            self.ingresses.pop(uid, None)
            if not gone:
                meta.pop("managedFields", None)
                self.ingresses[uid] = obj

    def _node(self, uid: str, host: Host | None) -> None:
        old = self.nodes.pop(uid, None)
        if old is not None:
            self.node_refs.pop(old.name, None)
        if host is not None:
            self.nodes[uid] = host
            self.node_refs[host.name] = Ref("node", uid)
        if (old is None) == (host is None) and (old is None or old.name == host.name):  # type: ignore[union-attr]
            return
        # A node came or went: the pods on it are linked to it, or no longer.
        names = {n.name for n in (old, host) if n is not None}
        for pod_uid, pod in list(self.pods.items()):
            node = pod.attributes.get("node")
            if node in names:
                self._set_pod(pod_uid, dataclasses.replace(pod, host=self.node_refs.get(node)))
                self.delta.dirty.add(("workload", "pod", pod_uid))

    def _pod(self, uid: str, obj: dict[str, Any] | None) -> None:
        old = self.pods.get(uid)
        pod = (
            pod_workload(obj, self.node_refs, self.annotations, node_links_unread=self.node_links_unread)
            if obj is not None
            else None
        )
        self._set_pod(uid, pod)
        dirty = self.delta.dirty
        for record in (old, pod):
            if record is None:
                continue
            if record.parent is not None and record.parent.kind == "replicaset":
                dirty.add(("workload", "replicaset", record.parent.external_id))
        namespace = (pod or old).namespace if (pod or old) is not None else None  # type: ignore[union-attr]
        old_labels, new_labels = (old.labels if old else None), (pod.labels if pod else None)
        if old_labels == new_labels and (old is None) == (pod is None):
            return
        for service_uid, service in self.services.items():
            meta = service["metadata"]
            if meta.get("namespace") != namespace:
                continue
            selector = (service.get("spec") or {}).get("selector") or {}
            if _matches(selector, old_labels) or _matches(selector, new_labels):
                dirty.add(("service", "service", service_uid))

    def _service(self, uid: str, obj: dict[str, Any] | None) -> None:
        self.services.pop(uid, None)
        if obj is not None:
            obj["metadata"].pop("managedFields", None)
            self.services[uid] = obj

    def relist(self, resource: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        """A new list of one kind (in one namespace) after 410: what it holds replaces what was held."""
        object_type, kind = _SCOPES[resource]
        listed = {
            o["metadata"]["uid"]: o
            for o in items
            if o.get("metadata", {}).get("uid") and self.wanted(o["metadata"].get("namespace"))
        }
        held: set[str]
        if kind == "node":
            held = set(self.nodes)
        elif kind == "pod":
            held = set(self.pods)
        elif kind in _CONTROLLER_KINDS:
            held = {uid for uid, r in self.controllers.items() if r.kind == kind}
        elif kind == "service":
            held = set(self.services)
        else:
            held = set(self.ingresses)
        if namespace is not None:
            held = {uid for uid in held if self._namespace_of(object_type, kind, uid) == namespace}
        for uid in held - listed.keys():
            self.event(resource, "DELETED", {"metadata": {"uid": uid, "namespace": namespace}})
        for obj in listed.values():
            self.event(resource, "MODIFIED", obj)

    def _namespace_of(self, object_type: str, kind: str, uid: str) -> str | None:
        if kind == "pod":
            return self.pods[uid].namespace
        if kind in _CONTROLLER_KINDS:
            return self.controllers[uid].namespace
        raw = (self.services if kind == "service" else self.ingresses).get(uid)
        return (raw or {}).get("metadata", {}).get("namespace")

    # -- what changed --------------------------------------------------------------------

    def _desired(self, key: ObjectKey) -> Record | None:
        _object_type, kind, uid = key
        if kind == "node":
            return self.nodes.get(uid)
        if kind == "pod":
            return self.pods.get(uid)
        if kind in _CONTROLLER_KINDS:
            record = self.controllers.get(uid)
            if record is None:
                return None
            if kind == "replicaset" and not (
                record.attributes["replicas"] or record.attributes["ready_replicas"] or self.owned[uid] > 0
            ):
                return None  # an old revision: not inventory (as collect keeps it)
            return record
        if kind == "service":
            obj = self.services.get(uid)
            if obj is None:
                return None
            return service_record(obj, self.live, self.annotations, self.members_unread)  # type: ignore[arg-type]
        obj = self.ingresses.get(uid)
        if obj is None:
            return None
        return ingress_record(obj, self.service_by_name, self.annotations, self.members_unread)

    def finish(self, delta: _Delta, relisted: tuple[str, str | None] | None) -> Snapshot:
        snapshot = delta.snapshot
        order = {"node": 0, "pod": 1, "service": 3, "ingress": 4}
        pending = sorted(delta.dirty, key=lambda key: order.get(key[1], 2))
        done: set[ObjectKey] = set()
        while pending:
            key = pending.pop(0)
            if key in done:
                continue
            done.add(key)
            object_type, kind, uid = key
            old = self.shown.get(key)
            new = self._desired(key)
            if kind == "service":
                if isinstance(old, Service):
                    self.service_by_name.pop((old.namespace or "", old.name), None)
                if isinstance(new, Service):
                    self.service_by_name[(new.namespace or "", new.name)] = new
            if new == old:
                continue
            if kind == "service" and (new is None or old is None or new.members != old.members):  # type: ignore[union-attr]
                # The ingresses of the namespace route to it by name: their members follow.
                namespace = (new or old).namespace  # type: ignore[union-attr]
                for ingress_uid, ingress in self.ingresses.items():
                    if ingress["metadata"].get("namespace") == namespace:
                        pending.append(("service", "ingress", ingress_uid))
            if new is None:
                self.shown.pop(key, None)
                snapshot.delete(object_type, kind, uid)
                continue
            self.shown[key] = new
            self._add(snapshot, object_type, new)
            found = delta.writers.get(key)
            if found is not None:
                cause = cause_of(found[0], changed_parts(old, new), found[1], stated=delta.stated)
                if cause is not None:
                    snapshot.attribute(object_type, new, cause)
        if relisted is not None:
            resource, namespace = relisted
            object_type, kind = _SCOPES[resource]
            scope = Scope(object_type, kind, namespace) if namespace is not None else Scope(object_type, kind)
            snapshot.read(scope)
            records: list[Record] = [*snapshot.hosts, *snapshot.workloads, *snapshot.services]
            present = {(r.kind, r.external_id) for r in records}
            for key, record in self.shown.items():
                if key[1] == kind and (namespace is None or record.namespace == namespace):  # type: ignore[union-attr]
                    if (kind, key[2]) not in present:
                        self._add(snapshot, object_type, record)
        return snapshot

    @staticmethod
    def _add(snapshot: Snapshot, object_type: str, record: Record) -> None:
        if object_type == "host":
            snapshot.hosts.append(record)  # type: ignore[arg-type]
        elif object_type == "workload":
            snapshot.workloads.append(record)  # type: ignore[arg-type]
        else:
            snapshot.services.append(record)  # type: ignore[arg-type]
