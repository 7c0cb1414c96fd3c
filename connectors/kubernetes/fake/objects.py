"""Kubernetes objects for the fake API server, in the JSON shapes of the Kubernetes API reference.

A ``ClusterSpec`` says how big the cluster is; ``generate_cluster`` builds every
object of it deterministically (uids are uuid5 of the cluster name and the
object's path), so that two runs over the same spec serve identical objects and
two clusters with different names never share a uid.

Objects carry what a real API server returns, including the noisy parts a
connector must ignore (``managedFields``, ``resourceVersion``, heartbeat times,
``status.images`` on nodes), so that the fake costs what a real list costs.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

_UID_NAMESPACE = uuid.UUID("6f1f5f43-9a53-4c2e-9d4a-3c1f0a7f5e21")
CREATED = "2026-01-05T10:00:00Z"
_HEARTBEAT = "2026-11-22T01:59:30Z"

# resource -> (API path prefix, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": ("/api/v1", "Namespace", False),
    "nodes": ("/api/v1", "Node", False),
    "pods": ("/api/v1", "Pod", True),
    "services": ("/api/v1", "Service", True),
    "deployments": ("/apis/apps/v1", "Deployment", True),
    "replicasets": ("/apis/apps/v1", "ReplicaSet", True),
    "statefulsets": ("/apis/apps/v1", "StatefulSet", True),
    "daemonsets": ("/apis/apps/v1", "DaemonSet", True),
    "jobs": ("/apis/batch/v1", "Job", True),
    "cronjobs": ("/apis/batch/v1", "CronJob", True),
    "ingresses": ("/apis/networking.k8s.io/v1", "Ingress", True),
}


@dataclass(frozen=True)
class ClusterSpec:
    """How big the fake cluster is. ``pods`` is the target total, daemonset pods included."""

    name: str = "fake"
    nodes: int = 3
    pods: int = 30
    # Application namespaces besides kube-system and default; None scales with pods.
    namespaces: int | None = None
    replicas_per_deployment: int = 10
    # Add one object of every kind carrying only the fields the API requires.
    minimal_objects: bool = False


@dataclass
class ClusterObjects:
    """Every object of a generated cluster, per resource, in the order the API server lists them."""

    spec: ClusterSpec
    items: dict[str, list[JSON]] = field(default_factory=lambda: {r: [] for r in RESOURCES})

    def add(self, resource: str, obj: JSON) -> JSON:
        self.items[resource].append(obj)
        return obj

    def count(self, resource: str) -> int:
        return len(self.items[resource])


def object_uid(cluster: str, *parts: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "/".join((cluster, *parts))))


def image_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _managed_fields(manager: str, operation: str = "Update") -> list[JSON]:
    return [
        {
            "manager": manager,
            "operation": operation,
            "apiVersion": "v1",
            "time": CREATED,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:containers": {}}},
        }
    ]


class ClusterBuilder:
    """Builds objects of one cluster; keeps the counters that make resourceVersions and IPs unique."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.out = ClusterObjects(spec)
        self._version = 1000
        self._pod_ip = 0
        self._service_ip = 10

    def meta(
        self, kind: str, name: str, namespace: str | None = None, labels: JSON | None = None, **extra: Any
    ) -> JSON:
        self._version += 1
        path = (kind, namespace or "", name)
        meta: JSON = {
            "name": name,
            "uid": object_uid(self.spec.name, *path),
            "resourceVersion": str(self._version),
            "creationTimestamp": CREATED,
        }
        if namespace is not None:
            meta["namespace"] = namespace
        if labels:
            meta["labels"] = labels
        meta.update(extra)
        meta["managedFields"] = _managed_fields("kube-controller-manager")
        return meta

    def pod_ip(self) -> str:
        self._pod_ip += 1
        return f"10.42.{self._pod_ip // 250}.{self._pod_ip % 250 + 2}"

    def service_ip(self) -> str:
        self._service_ip += 1
        return f"10.43.{self._service_ip // 250}.{self._service_ip % 250 + 1}"


def owner_reference(kind: str, meta: JSON, api_version: str) -> JSON:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def container_spec(name: str, image: str, cpu: str = "100m", memory: str = "128Mi") -> JSON:
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "volumeMounts": [
            {"name": "kube-api-access", "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
        ],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod_template(labels: JSON, containers: list[JSON]) -> JSON:
    return {
        "metadata": {"labels": labels},
        "spec": {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
    }


def node_object(b: ClusterBuilder, index: int, control_plane: bool) -> JSON:
    name = f"node-{index:04d}"
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "k3s",
        "topology.kubernetes.io/zone": f"zone-{index % 3}",
    }
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = "true"
        labels["node-role.kubernetes.io/master"] = "true"
    meta = b.meta(
        "node", name, labels=labels, annotations={"k3s.io/node-args": '["server"]', "node.alpha.kubernetes.io/ttl": "0"}
    )
    internal = f"192.168.{index // 250}.{index % 250 + 10}"
    ready = index % 97 != 96  # one node in ~a hundred is NotReady, as in any real fleet
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "podCIDR": f"10.42.{index}.0/24",
            "podCIDRs": [f"10.42.{index}.0/24"],
            "providerID": f"k3s://{name}",
            **(
                {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
                if control_plane
                else {}
            ),
        },
        "status": {
            "capacity": {"cpu": "8", "memory": "32803404Ki", "pods": "110", "ephemeral-storage": "102626232Ki"},
            "allocatable": {"cpu": "8", "memory": "32701004Ki", "pods": "110", "ephemeral-storage": "99833802926"},
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "lastHeartbeatTime": _HEARTBEAT,
                    "lastTransitionTime": CREATED,
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                },
                {
                    "type": "DiskPressure",
                    "status": "False",
                    "lastHeartbeatTime": _HEARTBEAT,
                    "lastTransitionTime": CREATED,
                    "reason": "KubeletHasNoDiskPressure",
                    "message": "kubelet has no disk pressure",
                },
                {
                    "type": "PIDPressure",
                    "status": "False",
                    "lastHeartbeatTime": _HEARTBEAT,
                    "lastTransitionTime": CREATED,
                    "reason": "KubeletHasSufficientPID",
                    "message": "kubelet has sufficient PID available",
                },
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastHeartbeatTime": _HEARTBEAT,
                    "lastTransitionTime": CREATED,
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "kubelet is posting ready status" if ready else "container runtime is down",
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": internal},
                *([{"type": "ExternalIP", "address": f"203.0.113.{index % 250 + 1}"}] if index % 10 == 0 else []),
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": hashlib.md5(f"{b.spec.name}/{name}/machine".encode()).hexdigest(),
                "systemUUID": object_uid(b.spec.name, "smbios", name).upper(),
                "bootID": object_uid(b.spec.name, "boot", name),
                "kernelVersion": "6.8.0-45-generic",
                "osImage": "Ubuntu 24.04.1 LTS",
                "containerRuntimeVersion": "containerd://1.7.21-k3s2",
                "kubeletVersion": "v1.31.1+k3s1",
                "kubeProxyVersion": "v1.31.1+k3s1",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": [
                {
                    "names": [f"docker.io/library/app{i}@{image_digest(f'app{i}')}", f"docker.io/library/app{i}:1.{i}"],
                    "sizeBytes": 20_000_000 + i * 1_000_003,
                }
                for i in range(8)
            ],
        },
    }


def pod_object(
    b: ClusterBuilder,
    name: str,
    namespace: str,
    labels: JSON,
    containers: list[JSON],
    owner: JSON | None,
    node: JSON,
    phase: str = "Running",
) -> JSON:
    extra: JSON = {"generateName": name.rsplit("-", 1)[0] + "-"}
    if owner is not None:
        extra["ownerReferences"] = [owner]
    meta = b.meta("pod", name, namespace, labels=labels, **extra)
    running = phase == "Running"
    statuses = []
    for index, c in enumerate(containers):
        image = c["image"]
        statuses.append(
            {
                "name": c["name"],
                "state": {"running": {"startedAt": CREATED}}
                if running
                else {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": CREATED, "finishedAt": CREATED}
                },
                "lastState": {},
                "ready": running,
                "restartCount": (len(name) + index) % 3,
                "image": image,
                "imageID": f"{image.split(':')[0]}@{image_digest(image)}",
                "containerID": "containerd://" + hashlib.sha256(meta["uid"].encode()).hexdigest(),
                "started": running,
            }
        )
    ip = b.pod_ip()
    node_meta = node["metadata"]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {
            "volumes": [
                {
                    "name": "kube-api-access",
                    "projected": {
                        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}],
                        "defaultMode": 420,
                    },
                }
            ],
            "containers": containers,
            "restartPolicy": "Always" if running else "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": node_meta["name"],
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED},
                {
                    "type": "Ready",
                    "status": "True" if running else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": CREATED,
                },
                {
                    "type": "ContainersReady",
                    "status": "True" if running else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": CREATED,
                },
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": CREATED},
            ],
            "hostIP": node["status"]["addresses"][0]["address"],
            "hostIPs": [{"ip": node["status"]["addresses"][0]["address"]}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": CREATED,
            "containerStatuses": statuses,
            "qosClass": "Burstable",
        },
    }


def namespace_object(b: ClusterBuilder, namespace: str) -> JSON:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": b.meta("namespace", namespace, labels={"kubernetes.io/metadata.name": namespace}),
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def daemonset_status(count: int) -> JSON:
    """A DaemonSet at rest on ``count`` nodes: every pod scheduled, ready and up to date."""
    return {
        "currentNumberScheduled": count,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": count,
        "numberReady": count,
        "observedGeneration": 1,
        "updatedNumberScheduled": count,
        "numberAvailable": count,
    }


def replica_status(replicas: int) -> JSON:
    return {
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "updatedReplicas": replicas,
    }


def _deployment_set(
    b: ClusterBuilder, namespace: str, name: str, replicas: int, nodes: list[JSON], node_cursor: list[int], image: str
) -> None:
    labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace}
    containers = [container_spec(name, image)]
    dep_meta = b.meta(
        "deployment",
        name,
        namespace,
        labels=labels,
        generation=1,
        annotations={
            "deployment.kubernetes.io/revision": "2",
            "kubectl.kubernetes.io/last-applied-configuration": "{" + '"x":1,' * 200 + '"y":2}',
        },
    )
    b.out.add(
        "deployments",
        {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": dep_meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": pod_template(labels, containers),
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                "revisionHistoryLimit": 10,
                "progressDeadlineSeconds": 600,
            },
            "status": {
                **replica_status(replicas),
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "lastUpdateTime": CREATED,
                        "lastTransitionTime": CREATED,
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                    }
                ],
            },
        },
    )
    owner = owner_reference("Deployment", dep_meta, "apps/v1")
    for revision, hash_ in ((1, "5d4f8c7b9"), (2, "7c9b6d5f8")):
        current = revision == 2
        rs_labels = {**labels, "pod-template-hash": hash_}
        rs_meta = b.meta(
            "replicaset",
            f"{name}-{hash_}",
            namespace,
            labels=rs_labels,
            ownerReferences=[owner],
            annotations={"deployment.kubernetes.io/revision": str(revision)},
        )
        count = replicas if current else 0
        b.out.add(
            "replicasets",
            {
                "kind": "ReplicaSet",
                "apiVersion": "apps/v1",
                "metadata": rs_meta,
                "spec": {
                    "replicas": count,
                    "selector": {"matchLabels": {"app": name, "pod-template-hash": hash_}},
                    "template": pod_template(rs_labels, containers),
                },
                "status": replica_status(count) if count else {"replicas": 0, "observedGeneration": 1},
            },
        )
        if current:
            rs_owner = owner_reference("ReplicaSet", rs_meta, "apps/v1")
            for i in range(count):
                node = nodes[node_cursor[0] % len(nodes)]
                node_cursor[0] += 1
                suffix = hashlib.sha1(f"{name}/{i}".encode()).hexdigest()[:5]
                b.out.add(
                    "pods", pod_object(b, f"{name}-{hash_}-{suffix}", namespace, rs_labels, containers, rs_owner, node)
                )


def service_object(
    b: ClusterBuilder,
    namespace: str,
    name: str,
    selector: JSON | None,
    service_type: str = "ClusterIP",
    headless: bool = False,
) -> JSON:
    ip = "None" if headless else b.service_ip()
    spec: JSON = {
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
        "clusterIP": ip,
        "clusterIPs": [ip],
        "type": service_type,
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    }
    if selector is not None:
        spec["selector"] = selector
    status: JSON = {"loadBalancer": {}}
    if service_type == "LoadBalancer":
        spec["ports"][0]["nodePort"] = 30000 + b._service_ip % 2000
        spec["externalTrafficPolicy"] = "Cluster"
        status = {"loadBalancer": {"ingress": [{"ip": f"198.51.100.{b._service_ip % 250 + 1}", "ipMode": "VIP"}]}}
    return b.out.add(
        "services",
        {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": b.meta("service", name, namespace, labels={"app": name}),
            "spec": spec,
            "status": status,
        },
    )


def _app_namespace(
    b: ClusterBuilder,
    namespace: str,
    deployments: int,
    replicas: int,
    nodes: list[JSON],
    cursor: list[int],
    extra: int = 0,
) -> None:
    b.out.add("namespaces", namespace_object(b, namespace))
    web_services = []
    for d in range(deployments):
        name = f"web-{d}"
        _deployment_set(
            b,
            namespace,
            name,
            replicas + (extra if d == 0 else 0),
            nodes,
            cursor,
            f"registry.example.com/{namespace}/{name}:1.{d % 7}",
        )
        web_services.append(
            service_object(b, namespace, name, {"app": name}, "LoadBalancer" if d == 0 else "ClusterIP")
        )
    # A statefulset of three and its headless service.
    labels = {"app": "db"}
    containers = [container_spec("postgres", "docker.io/library/postgres:16.4", "250m", "512Mi")]
    sts_meta = b.meta("statefulset", "db", namespace, labels=labels, generation=1)
    b.out.add(
        "statefulsets",
        {
            "kind": "StatefulSet",
            "apiVersion": "apps/v1",
            "metadata": sts_meta,
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": labels},
                "serviceName": "db",
                "template": pod_template(labels, containers),
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
            },
            "status": {
                **replica_status(3),
                "currentRevision": "db-6b8f7",
                "updateRevision": "db-6b8f7",
                "collisionCount": 0,
            },
        },
    )
    sts_owner = owner_reference("StatefulSet", sts_meta, "apps/v1")
    for i in range(3):
        node = nodes[cursor[0] % len(nodes)]
        cursor[0] += 1
        b.out.add(
            "pods",
            pod_object(
                b,
                f"db-{i}",
                namespace,
                {**labels, "statefulset.kubernetes.io/pod-name": f"db-{i}"},
                containers,
                sts_owner,
                node,
            ),
        )
    service_object(b, namespace, "db", labels, headless=True)
    # A cronjob, the job it spawned, and that job's finished pod.
    job_labels = {"app": "backup"}
    job_containers = [container_spec("backup", "docker.io/library/busybox:1.36")]
    cron_meta = b.meta("cronjob", "backup", namespace, labels=job_labels)
    b.out.add(
        "cronjobs",
        {
            "kind": "CronJob",
            "apiVersion": "batch/v1",
            "metadata": cron_meta,
            "spec": {
                "schedule": "0 3 * * *",
                "concurrencyPolicy": "Forbid",
                "suspend": False,
                "jobTemplate": {"spec": {"template": pod_template(job_labels, job_containers)}},
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
            },
            "status": {"lastScheduleTime": CREATED, "lastSuccessfulTime": CREATED},
        },
    )
    job_meta = b.meta(
        "job",
        "backup-29001234",
        namespace,
        labels=job_labels,
        ownerReferences=[owner_reference("CronJob", cron_meta, "batch/v1")],
    )
    b.out.add(
        "jobs",
        {
            "kind": "Job",
            "apiVersion": "batch/v1",
            "metadata": job_meta,
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "backoffLimit": 6,
                "template": pod_template(job_labels, job_containers),
            },
            "status": {
                "succeeded": 1,
                "startTime": CREATED,
                "completionTime": CREATED,
                "conditions": [
                    {"type": "Complete", "status": "True", "lastProbeTime": CREATED, "lastTransitionTime": CREATED}
                ],
            },
        },
    )
    node = nodes[cursor[0] % len(nodes)]
    cursor[0] += 1
    b.out.add(
        "pods",
        pod_object(
            b,
            "backup-29001234-x7k2p",
            namespace,
            job_labels,
            job_containers,
            owner_reference("Job", job_meta, "batch/v1"),
            node,
            phase="Succeeded",
        ),
    )
    # One ingress routes to every web service of the namespace.
    ingress_meta = b.meta("ingress", "web", namespace, annotations={"cert-manager.io/cluster-issuer": "letsencrypt"})
    host = f"{namespace}.apps.example.com"
    b.out.add(
        "ingresses",
        {
            "kind": "Ingress",
            "apiVersion": "networking.k8s.io/v1",
            "metadata": ingress_meta,
            "spec": {
                "ingressClassName": "traefik",
                "tls": [{"hosts": [host], "secretName": f"{namespace}-tls"}],
                "rules": [
                    {
                        "host": host,
                        "http": {
                            "paths": [
                                {
                                    "path": f"/{svc['metadata']['name']}",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": svc["metadata"]["name"], "port": {"number": 80}}},
                                }
                                for svc in web_services
                            ]
                        },
                    }
                ],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.250"}]}},
        },
    )


def _kube_system(b: ClusterBuilder, nodes: list[JSON], cursor: list[int]) -> None:
    for namespace in ("kube-system", "default"):
        b.out.add("namespaces", namespace_object(b, namespace))
    _deployment_set(b, "kube-system", "coredns", 2, nodes, cursor, "rancher/mirrored-coredns-coredns:1.11.3")
    service_object(b, "kube-system", "kube-dns", {"k8s-app": "kube-dns"})
    service_object(b, "default", "kubernetes", None)
    labels = {"k8s-app": "kube-proxy"}
    containers = [container_spec("kube-proxy", "registry.k8s.io/kube-proxy:v1.31.1", "50m", "64Mi")]
    ds_meta = b.meta("daemonset", "kube-proxy", "kube-system", labels=labels, generation=1)
    count = len(nodes)
    b.out.add(
        "daemonsets",
        {
            "kind": "DaemonSet",
            "apiVersion": "apps/v1",
            "metadata": ds_meta,
            "spec": {
                "selector": {"matchLabels": labels},
                "template": pod_template(labels, containers),
                "updateStrategy": {"type": "RollingUpdate"},
            },
            "status": daemonset_status(count),
        },
    )
    owner = owner_reference("DaemonSet", ds_meta, "apps/v1")
    for node in nodes:
        b.out.add(
            "pods",
            pod_object(b, f"kube-proxy-{node['metadata']['name']}", "kube-system", labels, containers, owner, node),
        )


def _minimal_objects(b: ClusterBuilder) -> None:
    """One object of every namespaced kind with only what the API requires: no status, labels or owners."""
    ns = "minimal"
    b.out.add(
        "namespaces",
        {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {"name": ns, "uid": object_uid(b.spec.name, "namespace", "", ns)},
        },
    )
    b.out.add(
        "nodes",
        {
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": "bare-node", "uid": object_uid(b.spec.name, "node", "", "bare-node")},
        },
    )
    for resource, (prefix, kind, _namespaced) in RESOURCES.items():
        if resource in ("namespaces", "nodes"):
            continue
        name = f"bare-{kind.lower()}"
        b.out.add(
            resource,
            {
                "kind": kind,
                "apiVersion": prefix.split("/", 2)[-1] if prefix != "/api/v1" else "v1",
                "metadata": {"name": name, "namespace": ns, "uid": object_uid(b.spec.name, kind.lower(), ns, name)},
            },
        )


def generate_cluster(spec: ClusterSpec) -> ClusterObjects:
    b = ClusterBuilder(spec)
    nodes = [
        b.out.add("nodes", node_object(b, i, control_plane=i < min(3, max(1, spec.nodes // 3))))
        for i in range(spec.nodes)
    ]
    cursor = [0]
    _kube_system(b, nodes, cursor)
    namespaces = spec.namespaces if spec.namespaces is not None else max(1, spec.pods // 300)
    # Each app namespace runs 3 statefulset pods and 1 job pod; deployments take the rest.
    budget = max(0, spec.pods - b.out.count("pods") - 4 * namespaces)
    replicas = max(1, spec.replicas_per_deployment)
    deployments_total = max(namespaces, budget // replicas)
    # The first deployment takes the remainder, so that the total is what was asked for.
    extra = max(0, budget - deployments_total * replicas)
    for n in range(namespaces):
        share = deployments_total // namespaces + (1 if n < deployments_total % namespaces else 0)
        _app_namespace(b, f"app-{n:03d}", share, replicas, nodes, cursor, extra if n == 0 else 0)
    if spec.minimal_objects:
        _minimal_objects(b)
    for items in b.out.items.values():
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return b.out
