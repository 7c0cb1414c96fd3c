"""Kubernetes objects (raw API JSON, as dicts) to inventory records.

Only the fields kept are read; every one is optional, because a real API server
omits empty fields and older clusters lack newer ones. Attributes hold nothing
that changes on every poll (resourceVersion, heartbeat and probe times,
managedFields), so that an unchanged object hashes the same across syncs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from inventory.records import Host, Ref, Service, Workload

JSON = Mapping[str, Any]

# Owner kinds that are records of this connector, by the kind their ownerReference names.
CONTROLLER_KINDS = {
    "ReplicaSet": "replicaset",
    "StatefulSet": "statefulset",
    "DaemonSet": "daemonset",
    "Job": "job",
    "Deployment": "deployment",
    "CronJob": "cronjob",
}
_ROLE_PREFIX = "node-role.kubernetes.io/"


class AnnotationFilter:
    """Keeps the annotations whose keys match one of the allowlist's glob patterns."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)

    def __call__(self, meta: JSON) -> dict[str, str]:
        annotations = meta.get("annotations")
        if not annotations or not self.patterns:
            return {}
        return {key: value for key, value in annotations.items() if any(fnmatchcase(key, p) for p in self.patterns)}


def _with_annotations(attributes: dict[str, Any], meta: JSON, annotations: AnnotationFilter) -> dict[str, Any]:
    kept = annotations(meta)
    if kept:
        attributes["annotations"] = kept
    return attributes


def controller_of(meta: JSON) -> Ref | None:
    """The owner that controls an object (ownerReferences[].controller), if it is a kind we keep."""
    for owner in meta.get("ownerReferences") or ():
        if owner.get("controller"):
            kind = CONTROLLER_KINDS.get(owner.get("kind", ""))
            return Ref(kind, owner["uid"]) if kind and owner.get("uid") else None
    return None


def _owner_text(meta: JSON) -> dict[str, str] | None:
    for owner in meta.get("ownerReferences") or ():
        if owner.get("controller"):
            return {"kind": owner.get("kind", ""), "name": owner.get("name", "")}
    return None


def _condition(status: JSON, kind: str) -> str | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind:
            return condition.get("status")
    return None


def _template_images(spec: JSON) -> list[str]:
    pod_spec = ((spec.get("template") or {}).get("spec")) or {}
    return [c.get("image", "") for c in pod_spec.get("containers") or ()]


def _digest(image_id: str | None) -> str | None:
    if not image_id:
        return None
    return image_id.rsplit("@", 1)[1] if "@" in image_id else image_id


# -- hosts ---------------------------------------------------------------------------------


def node_host(obj: JSON, annotations: AnnotationFilter) -> Host:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    labels = meta.get("labels") or {}
    info = status.get("nodeInfo") or {}
    addresses: dict[str, list[str]] = defaultdict(list)
    for address in status.get("addresses") or ():
        addresses[address.get("type", "")].append(address.get("address", ""))
    roles = sorted(
        {key[len(_ROLE_PREFIX) :] for key in labels if key.startswith(_ROLE_PREFIX)}
        | ({labels["kubernetes.io/role"]} if "kubernetes.io/role" in labels else set())
    )
    ready_status = _condition(status, "Ready")
    ready = ready_status == "True"
    unschedulable = bool(spec.get("unschedulable"))
    state = "Ready" if ready else ("NotReady" if ready_status == "False" else "Unknown")
    if unschedulable:
        state += ",SchedulingDisabled"
    system_uuid = info.get("systemUUID") or None
    attributes: dict[str, Any] = {
        "roles": roles,
        "ready": ready,
        "unschedulable": unschedulable,
        "kubelet_version": info.get("kubeletVersion"),
        "kernel_version": info.get("kernelVersion"),
        "os_image": info.get("osImage"),
        "operating_system": info.get("operatingSystem"),
        "architecture": info.get("architecture"),
        "container_runtime": info.get("containerRuntimeVersion"),
        "capacity": status.get("capacity") or {},
        "allocatable": status.get("allocatable") or {},
        "internal_ips": addresses.get("InternalIP", []),
        "external_ips": addresses.get("ExternalIP", []),
        "system_uuid": system_uuid,
        "machine_id": info.get("machineID") or None,
        "provider_id": spec.get("providerID"),
        "pod_cidrs": spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []),
        "taints": [{k: t[k] for k in ("key", "value", "effect") if k in t} for t in spec.get("taints") or ()],
    }
    hostnames = addresses.get("Hostname")
    return Host(
        kind="node",
        external_id=meta["uid"],
        name=meta["name"],
        status=state,
        hostname=hostnames[0] if hostnames else meta["name"],
        machine_uuid=system_uuid.lower() if system_uuid else None,
        addresses=tuple(addresses.get("InternalIP", []) + addresses.get("ExternalIP", [])),
        labels=labels,
        attributes=_with_annotations(attributes, meta, annotations),
    )


# -- workloads -----------------------------------------------------------------------------


def _containers(spec_containers: Iterable[JSON], statuses: Iterable[JSON]) -> tuple[list[dict[str, Any]], int]:
    """Each container's image, digest (from its status) and resources, and the pod's restart count."""
    by_name = {s.get("name"): s for s in statuses}
    result = []
    restarts = 0
    for c in spec_containers:
        entry: dict[str, Any] = {"name": c.get("name"), "image": c.get("image")}
        state = by_name.get(entry["name"])
        if state is not None:
            restarts += int(state.get("restartCount") or 0)
            digest = _digest(state.get("imageID"))
            if digest:
                entry["digest"] = digest
        resources = c.get("resources")
        if resources:
            if resources.get("requests"):
                entry["requests"] = resources["requests"]
            if resources.get("limits"):
                entry["limits"] = resources["limits"]
        result.append(entry)
    return result, restarts


_HOST = frozenset({"host"})
_MEMBERS = frozenset({"members"})


def pod_reason(meta: JSON, status: JSON) -> str | None:
    """What ``kubectl get pods`` shows as STATUS, when it says more than the phase.

    The same order as kubectl's printer: the pod's own reason (Evicted, NodeLost), then an init
    container still at work or failed (Init:0/2, Init:CrashLoopBackOff), then the last container
    waiting or terminated (CrashLoopBackOff, ContainerCreating, ImagePullBackOff, OOMKilled,
    Completed, Error), and Terminating for a pod being deleted.
    """
    phase = status.get("phase")
    reason = status.get("reason") or phase
    init_statuses = status.get("initContainerStatuses") or ()
    initializing = False
    for index, container in enumerate(init_statuses):
        state = container.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        initializing = True
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_statuses)}"
        break
    if not initializing:
        running = False
        for container in reversed(status.get("containerStatuses") or ()):
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode')}"
                )
            elif state.get("running") and container.get("ready"):
                running = True
        if reason == "Completed" and running:
            reason = "Running" if _condition(status, "Ready") == "True" else "NotReady"
    if meta.get("deletionTimestamp") and status.get("reason") != "NodeLost":
        reason = "Terminating"
    return reason if reason != phase else None


def pod_workload(
    obj: JSON, node_refs: Mapping[str, Ref], annotations: AnnotationFilter, *, node_links_unread: bool = False
) -> Workload:
    """A pod; ``node_refs`` maps node names to their records (a pod names its node, a link needs the uid).

    ``node_links_unread``: the node list was not read, so a scheduled pod's link keeps its stored value.
    """
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    node_name = spec.get("nodeName")
    phase = status.get("phase")
    containers, restarts = _containers(spec.get("containers") or (), status.get("containerStatuses") or ())
    attributes: dict[str, Any] = {
        "phase": phase,
        "node": node_name,
        "pod_ip": status.get("podIP"),
        "host_ip": status.get("hostIP"),
        "qos_class": status.get("qosClass"),
        "ready": _condition(status, "Ready") == "True",
        "restart_count": restarts,
        "containers": containers,
        "owner": _owner_text(meta),
    }
    if spec.get("initContainers"):
        attributes["init_containers"] = _containers(spec["initContainers"], status.get("initContainerStatuses") or ())[
            0
        ]
    reason = pod_reason(meta, status)
    if reason:
        attributes["reason"] = reason
    return Workload(
        kind="pod",
        external_id=meta["uid"],
        name=meta["name"],
        namespace=meta.get("namespace"),
        status=phase,
        host=node_refs.get(node_name) if node_name else None,
        parent=controller_of(meta),
        labels=meta.get("labels") or {},
        attributes=_with_annotations(attributes, meta, annotations),
        unread=_HOST if node_name and node_links_unread else frozenset(),
    )


def _replicas_state(desired: int, ready: int) -> str:
    if desired == 0:
        return "ScaledToZero"
    return "Ready" if ready >= desired else "NotReady"


def controller_workload(kind: str, obj: JSON, annotations: AnnotationFilter) -> Workload:
    """Deployments, replicasets, statefulsets, daemonsets, jobs and cronjobs."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    attributes: dict[str, Any]
    if kind == "daemonset":
        desired, ready = int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0)
        attributes = {
            "desired": desired,
            "ready": ready,
            "available": int(status.get("numberAvailable") or 0),
            "images": _template_images(spec),
        }
        state = _replicas_state(desired, ready)
    elif kind == "job":
        attributes = {
            "completions": spec.get("completions"),
            "parallelism": spec.get("parallelism"),
            "succeeded": int(status.get("succeeded") or 0),
            "failed": int(status.get("failed") or 0),
            "active": int(status.get("active") or 0),
            "images": _template_images(spec),
        }
        if _condition(status, "Complete") == "True":
            state = "Complete"
        elif _condition(status, "Failed") == "True":
            state = "Failed"
        elif spec.get("suspend"):
            state = "Suspended"
        else:
            state = "Running" if attributes["active"] else "Pending"
    elif kind == "cronjob":
        job_spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        attributes = {
            "schedule": spec.get("schedule"),
            "suspend": bool(spec.get("suspend")),
            "concurrency_policy": spec.get("concurrencyPolicy"),
            "images": _template_images(job_spec),
        }
        if spec.get("timeZone"):
            attributes["time_zone"] = spec["timeZone"]
        state = "Suspended" if spec.get("suspend") else "Scheduled"
    else:  # deployment, replicaset, statefulset: spec.replicas defaults to 1
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready = int(status.get("readyReplicas") or 0)
        attributes = {
            "replicas": desired,
            "ready_replicas": ready,
            "available_replicas": int(status.get("availableReplicas") or 0),
            "selector": (spec.get("selector") or {}).get("matchLabels") or {},
            "images": _template_images(spec),
        }
        if kind == "deployment":
            attributes["strategy"] = (spec.get("strategy") or {}).get("type")
            attributes["paused"] = bool(spec.get("paused"))
        elif kind == "statefulset":
            attributes["service_name"] = spec.get("serviceName")
        state = _replicas_state(desired, ready)
    return Workload(
        kind=kind,
        external_id=meta["uid"],
        name=meta["name"],
        namespace=meta.get("namespace"),
        status=state,
        parent=controller_of(meta) if kind in ("replicaset", "job") else None,
        labels=meta.get("labels") or {},
        attributes=_with_annotations(attributes, meta, annotations),
    )


# -- services ------------------------------------------------------------------------------


class PodIndex:
    """Pods by namespace and label, to find the members of a selector without scanning every pod."""

    def __init__(self) -> None:
        self._by_label: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))

    def add(self, pod: Workload) -> None:
        labels = self._by_label[pod.namespace or ""]
        for pair in pod.labels.items():
            labels[pair].add(pod.external_id)

    def match(self, namespace: str | None, selector: Mapping[str, str]) -> tuple[Ref, ...]:
        """Pods of the namespace carrying every label of the selector; an empty selector matches none."""
        if not selector:
            return ()
        labels = self._by_label.get(namespace or "")
        if labels is None:
            return ()
        sets = sorted((labels.get(pair, set()) for pair in selector.items()), key=len)
        found = set(sets[0]).intersection(*sets[1:])
        return tuple(Ref("pod", uid) for uid in sorted(found))


def _lb_ingress(status: JSON) -> list[str]:
    return [i.get("ip") or i.get("hostname") or "" for i in ((status.get("loadBalancer") or {}).get("ingress") or ())]


def _members_unread(namespace: str | None, unread_in: Collection[str | None]) -> frozenset[str]:
    """``members`` when the pods of the namespace (None in ``unread_in``: of every namespace) were not read."""
    return _MEMBERS if None in unread_in or namespace in unread_in else frozenset()


def service_record(
    obj: JSON, pods: PodIndex, annotations: AnnotationFilter, members_unread: Collection[str | None] = ()
) -> Service:
    """A Service; its members are the pods its selector matches (kept as stored where ``members_unread`` says)."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    service_type = spec.get("type", "ClusterIP")
    selector = spec.get("selector") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    lb = _lb_ingress(status)
    attributes: dict[str, Any] = {
        "type": service_type,
        "cluster_ips": [ip for ip in cluster_ips if ip != "None"],
        "headless": spec.get("clusterIP") == "None",
        "external_ips": spec.get("externalIPs") or [],
        "load_balancer_ingress": lb,
        "ports": [
            {k: p[k] for k in ("name", "protocol", "port", "targetPort", "nodePort") if k in p}
            for p in spec.get("ports") or ()
        ],
        "selector": selector,
    }
    if spec.get("externalName"):
        attributes["external_name"] = spec["externalName"]
    state = ("Ready" if lb else "Pending") if service_type == "LoadBalancer" else None
    return Service(
        kind="service",
        external_id=meta["uid"],
        name=meta["name"],
        namespace=meta.get("namespace"),
        status=state,
        members=pods.match(meta.get("namespace"), selector),
        labels=meta.get("labels") or {},
        attributes=_with_annotations(attributes, meta, annotations),
        unread=_members_unread(meta.get("namespace"), members_unread),
    )


def _backend(backend: JSON) -> dict[str, Any]:
    service = backend.get("service")
    if service:
        port = service.get("port") or {}
        return {"service": service.get("name"), "port": port.get("number", port.get("name"))}
    resource = backend.get("resource") or {}
    return {"resource": f"{resource.get('kind', '')}/{resource.get('name', '')}"}


def ingress_record(
    obj: JSON,
    services: Mapping[tuple[str, str], Service],
    annotations: AnnotationFilter,
    members_unread: Collection[str | None] = (),
) -> Service:
    """An ingress; its members are the pods behind the services it routes to."""
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    namespace = meta.get("namespace") or ""
    rules = []
    backends = []
    for rule in spec.get("rules") or ():
        for path in ((rule.get("http") or {}).get("paths")) or ():
            backend = _backend(path.get("backend") or {})
            backends.append(backend)
            rules.append(
                {"host": rule.get("host"), "path": path.get("path", "/"), "path_type": path.get("pathType"), **backend}
            )
    default = _backend(spec["defaultBackend"]) if spec.get("defaultBackend") else None
    if default:
        backends.append(default)
    tls_hosts = sorted({h for tls in spec.get("tls") or () for h in tls.get("hosts") or ()})
    members: set[Ref] = set()
    for backend in backends:
        service = services.get((namespace, backend.get("service") or ""))
        if service is not None:
            members.update(service.members)
    attributes: dict[str, Any] = {
        "class": spec.get("ingressClassName") or (meta.get("annotations") or {}).get("kubernetes.io/ingress.class"),
        "hosts": sorted({r["host"] for r in rules if r["host"]}),
        "rules": rules,
        "default_backend": default,
        "tls_hosts": tls_hosts,
        "load_balancer_ingress": _lb_ingress(status),
    }
    return Service(
        kind="ingress",
        external_id=meta["uid"],
        name=meta["name"],
        namespace=meta.get("namespace"),
        status="Ready" if attributes["load_balancer_ingress"] else "Pending",
        members=tuple(sorted(members, key=str)),
        labels=meta.get("labels") or {},
        attributes=_with_annotations(attributes, meta, annotations),
        unread=_members_unread(meta.get("namespace"), members_unread),
    )
