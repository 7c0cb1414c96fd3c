"""A Kubernetes cluster with the kind counts and object sizes of a real one, for the benchmark.

The small cluster of ``objects`` is what the tests need; a real cluster of 500
nodes and 15,000 pods has far more controllers and heavier objects, and a benchmark that lists
the small shape measures a different workload. This one builds, per 15,000 pods (and scaled
with ``ClusterSpec.pods`` and ``nodes``):

- 5 DaemonSets with a pod on every node, CoreDNS;
- ~650 tenant namespaces, each with one Ingress, one CronJob and the two Jobs (and their
  finished pods) it keeps, two StatefulSets (1 and 3 replicas, headless Services, volume
  claims), and two or three Deployments with a Service each: ~1,300 StatefulSets, ~1,300
  Jobs, ~650 CronJobs, ~650 Ingresses, ~1,650 Deployments;
- four ReplicaSets per Deployment (revisionHistoryLimit keeps the old ones): ~6,600, three in
  four scaled to zero.

Every object carries ``managedFields`` as an API server writes them (one entry per field
manager, FieldsV1 mirroring the fields that manager set); objects applied with kubectl carry
``kubectl.kubernetes.io/last-applied-configuration``; pods carry probes, env, security
contexts, projected service-account volumes, tolerations and container statuses (``pod_json_bytes``
says how heavy: about 5.3 KB of JSON each).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from connectors.kubernetes.fake.objects import (
    CREATED,
    JSON,
    ClusterBuilder,
    ClusterObjects,
    ClusterSpec,
    daemonset_status,
    image_digest,
    namespace_object,
    node_object,
    owner_reference,
    pod_object,
    pod_template,
    replica_status,
    service_object,
)

# Per 15,000 pods.
_TENANTS_PER_15K = 650
_DEPLOYMENTS_PER_15K = 1650
_REVISIONS_KEPT = 4  # ReplicaSets per Deployment: the current one and three old ones at zero
_STATEFULSET_REPLICAS = (1, 3)
_JOBS_PER_CRONJOB = 2
_DAEMONSETS = (
    ("kube-proxy", "registry.k8s.io/kube-proxy:v1.31.1"),
    ("node-exporter", "quay.io/prometheus/node-exporter:v1.8.2"),
    ("fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:3.1.9"),
    ("csi-node", "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.12.0"),
    ("calico-node", "docker.io/calico/node:v3.28.2"),
)
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_APPLIED_KINDS = {"deployments", "statefulsets", "daemonsets", "cronjobs", "services", "ingresses"}
_STATUS_MANAGER = {"pods": "kubelet", "nodes": "k3s", "ingresses": "traefik"}
_SPEC_MANAGER = {
    "pods": "kube-controller-manager",
    "replicasets": "kube-controller-manager",
    "jobs": "kube-controller-manager",
    "nodes": "k3s",
    "namespaces": "kubectl-create",
}
_API_VERSION = {
    "replicasets": "apps/v1",
    "deployments": "apps/v1",
    "statefulsets": "apps/v1",
    "daemonsets": "apps/v1",
    "jobs": "batch/v1",
    "cronjobs": "batch/v1",
    "ingresses": "networking.k8s.io/v1",
}
# Lists the API declares atomic (listType=atomic): their owner holds them whole.
_ATOMIC_LISTS = {"containerStatuses", "initContainerStatuses", "tolerations", "accessModes", "hostIPs"}
_SERVICE_ACCOUNT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]


def fields_v1(value: Any, top: bool = False) -> Any:
    """The FieldsV1 set of a value: maps as ``f:<key>`` (``.`` when the map itself was set, below the top),
    lists of objects by their merge key, the rest (and lists the API declares atomic) owned whole."""
    if isinstance(value, dict):
        if not value:
            return {}
        inner = {f"f:{key}": {} if key in _ATOMIC_LISTS else fields_v1(item) for key, item in value.items()}
        return inner if top else {".": {}, **inner}
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        out: JSON = {}
        for item in value:
            key = _merge_key(item)
            if key is None:
                return {}  # an atomic list: owned whole
            out[f"k:{json.dumps(key, separators=(',', ':'))}"] = {} if "uid" in key else fields_v1(item)
        return out
    return {}


def _merge_key(item: JSON) -> JSON | None:
    for fields in (
        ("uid",),
        ("containerPort", "protocol"),
        ("port", "protocol"),
        ("mountPath",),
        ("name",),
        ("type",),
        ("ip",),
    ):
        if all(f in item for f in fields):
            return {f: item[f] for f in fields}
    return None


def _managed_fields(resource: str, obj: JSON) -> list[JSON]:
    """What an API server keeps for this object: its spec's manager and its status's, each with the fields it set."""
    meta = obj["metadata"]
    owned_meta = {
        k: meta[k] for k in ("labels", "annotations", "ownerReferences", "generateName", "finalizers") if k in meta
    }
    if resource in _APPLIED_KINDS:
        annotations = owned_meta.get("annotations", {})
        owned_meta["annotations"] = {
            k: v for k, v in annotations.items() if not k.startswith("deployment.kubernetes.io/")
        }
    spec_part = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion", "metadata", "status")}
    if resource == "pods":
        spec_part["spec"] = _created_pod_spec(spec_part["spec"])
    api_version = obj.get("apiVersion", "v1")
    entries: list[JSON] = [
        {
            "manager": _SPEC_MANAGER.get(resource, "kubectl-client-side-apply"),
            "operation": "Update",
            "apiVersion": api_version,
            "time": CREATED,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": fields_v1(owned_meta, top=True),
                **{f"f:{k}": fields_v1(v, top=True) for k, v in spec_part.items()},
            },
        }
    ]
    if obj.get("status"):
        entries.append(
            {
                "manager": _STATUS_MANAGER.get(resource, "kube-controller-manager"),
                "operation": "Update",
                "apiVersion": api_version,
                "time": CREATED,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": fields_v1(obj["status"], top=True)},
                "subresource": "status",
            }
        )
    return entries


def _created_pod_spec(spec: JSON) -> JSON:
    """The part of a pod's spec its controller wrote: the scheduler binds the node, and admission adds
    the service-account volume, tolerations and priority, none of which the controller's entry owns."""
    kept = {k: v for k, v in spec.items() if k not in ("nodeName", "tolerations", "priority", "preemptionPolicy")}
    kept["volumes"] = [v for v in spec.get("volumes", []) if not v["name"].startswith("kube-api-access-")]
    kept["containers"] = [
        {**c, "volumeMounts": [m for m in c.get("volumeMounts", []) if not m["name"].startswith("kube-api-access-")]}
        for c in spec["containers"]
    ]
    return kept


def _last_applied(obj: JSON) -> str:
    """What ``kubectl apply`` stores: the applied document, keys sorted, on one line."""
    meta = obj["metadata"]
    applied_meta = {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k != _LAST_APPLIED and not k.startswith("deployment.kubernetes.io/")
    }
    if annotations:
        applied_meta["annotations"] = annotations
    document = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": applied_meta,
        "spec": obj.get("spec", {}),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n"


def _app_container(
    name: str,
    image: str,
    cpu: str,
    memory: str,
    volume_mounts: list[JSON],
    serving: bool = True,
    env: list[JSON] | None = None,
) -> JSON:
    """A container as a chart declares it; one that serves (not a batch job) has a port and a readiness probe."""
    probe = {
        "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    serves: JSON = (
        {"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}], "readinessProbe": probe}
        if serving
        else {}
    )
    return {
        "name": name,
        "image": image,
        **serves,
        **({"env": env} if env else {}),
        "resources": {"limits": {"memory": memory}, "requests": {"cpu": cpu, "memory": memory}},
        "volumeMounts": volume_mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _template(labels: JSON, containers: list[JSON], volumes: list[JSON]) -> JSON:
    template = pod_template(labels, containers)
    template["spec"].update(
        volumes=volumes,
        terminationGracePeriodSeconds=30,
        serviceAccountName="default",
        securityContext={},
        schedulerName="default-scheduler",
    )
    return template


class _Cluster:
    """Builds one realistic cluster; nodes take pods round-robin."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.b = ClusterBuilder(spec)
        self.out = self.b.out
        control_planes = min(3, max(1, spec.nodes // 3))
        self.nodes = [self.out.add("nodes", self._node(i, i < control_planes)) for i in range(spec.nodes)]
        self._cursor = 0

    def _node(self, index: int, control_plane: bool) -> JSON:
        node = node_object(self.b, index, control_plane)
        # A real node lists every image it pulled: dozens.
        node["status"]["images"] = [
            {
                "names": [
                    f"registry.example.com/team-{i}/app@{image_digest(f'{index}/{i}')}",
                    f"registry.example.com/team-{i}/app:1.{i}",
                ],
                "sizeBytes": 20_000_000 + i * 1_000_003,
            }
            for i in range(40)
        ]
        return node

    def namespace(self, name: str) -> None:
        self.out.add("namespaces", namespace_object(self.b, name))

    def pod(
        self, name: str, namespace: str, template: JSON, owner: JSON, node: JSON | None = None, phase: str = "Running"
    ) -> JSON:
        if node is None:
            node = self.nodes[self._cursor % len(self.nodes)]
            self._cursor += 1
        template_spec = template["spec"]
        containers = copy.deepcopy(template_spec["containers"])
        suffix = hashlib.sha1(f"{namespace}/{name}".encode()).hexdigest()[:5]
        access = f"kube-api-access-{suffix}"
        for container in containers:
            container["volumeMounts"] = [
                *container.get("volumeMounts", []),
                {"name": access, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
            ]
        pod = pod_object(self.b, name, namespace, dict(template["metadata"]["labels"]), containers, owner, node, phase)
        spec = pod["spec"]
        spec["volumes"] = [
            *copy.deepcopy(template_spec.get("volumes", [])),
            {
                "name": access,
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            },
        ]
        spec["securityContext"] = copy.deepcopy(template_spec.get("securityContext", {}))
        spec["tolerations"] = copy.deepcopy(_SERVICE_ACCOUNT_TOLERATIONS)
        return self.out.add("pods", pod)

    def deployment(self, namespace: str, name: str, replicas: int, image: str) -> JSON:
        labels = {
            "app": name,
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": namespace,
            "app.kubernetes.io/managed-by": "kubectl",
        }
        mounts = [{"name": "config", "mountPath": "/etc/app"}]
        volumes = [{"name": "config", "configMap": {"name": f"{name}-config", "defaultMode": 420}}]
        template = _template(
            {"app": name, "app.kubernetes.io/name": name},
            [_app_container(name, image, "100m", "256Mi", mounts)],
            volumes,
        )
        meta = self.b.meta(
            "deployment",
            name,
            namespace,
            labels=labels,
            generation=_REVISIONS_KEPT,
            annotations={"deployment.kubernetes.io/revision": str(_REVISIONS_KEPT)},
        )
        deployment = self.out.add(
            "deployments",
            {
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "metadata": meta,
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": template,
                    "strategy": {
                        "type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                    },
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600,
                },
                "status": {
                    **replica_status(replicas),
                    "observedGeneration": _REVISIONS_KEPT,
                    "conditions": [
                        {
                            "type": "Available",
                            "status": "True",
                            "lastUpdateTime": CREATED,
                            "lastTransitionTime": CREATED,
                            "reason": "MinimumReplicasAvailable",
                            "message": "Deployment has minimum availability.",
                        },
                        {
                            "type": "Progressing",
                            "status": "True",
                            "lastUpdateTime": CREATED,
                            "lastTransitionTime": CREATED,
                            "reason": "NewReplicaSetAvailable",
                            "message": f'ReplicaSet "{name}" has successfully progressed.',
                        },
                    ],
                },
            },
        )
        owner = owner_reference("Deployment", meta, "apps/v1")
        for revision in range(1, _REVISIONS_KEPT + 1):
            current = revision == _REVISIONS_KEPT
            hash_ = hashlib.sha1(f"{namespace}/{name}/{revision}".encode()).hexdigest()[:10]
            rs_template = copy.deepcopy(template)
            rs_template["metadata"]["labels"]["pod-template-hash"] = hash_
            rs_template["spec"]["containers"][0]["image"] = f"{image.rsplit(':', 1)[0]}:1.{revision}"
            annotations = {
                "deployment.kubernetes.io/desired-replicas": str(replicas),
                "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                "deployment.kubernetes.io/revision": str(revision),
            }
            rs_meta = self.b.meta(
                "replicaset",
                f"{name}-{hash_}",
                namespace,
                labels=dict(rs_template["metadata"]["labels"]),
                ownerReferences=[owner],
                annotations=annotations,
                generation=1,
            )
            count = replicas if current else 0
            self.out.add(
                "replicasets",
                {
                    "kind": "ReplicaSet",
                    "apiVersion": "apps/v1",
                    "metadata": rs_meta,
                    "spec": {
                        "replicas": count,
                        "selector": {"matchLabels": {"app": name, "pod-template-hash": hash_}},
                        "template": rs_template,
                    },
                    "status": replica_status(count) if count else {"replicas": 0, "observedGeneration": 1},
                },
            )
            if current:
                rs_owner = owner_reference("ReplicaSet", rs_meta, "apps/v1")
                for i in range(count):
                    suffix = hashlib.sha1(f"{namespace}/{name}/{i}".encode()).hexdigest()[:5]
                    self.pod(f"{name}-{hash_}-{suffix}", namespace, rs_template, rs_owner)
        return deployment

    def statefulset(self, namespace: str, name: str, replicas: int) -> None:
        labels = {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/component": "database"}
        env = [
            {
                "name": "POSTGRES_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": f"{name}-credentials", "key": "password"}},
            }
        ]
        container = _app_container(
            "postgres",
            "docker.io/library/postgres:16.4",
            "250m",
            "1Gi",
            [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            env=env,
        )
        template = _template(labels, [container], [])
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "20Gi"}},
                "storageClassName": "longhorn",
                "volumeMode": "Filesystem",
            },
            "status": {"phase": "Pending"},
        }
        meta = self.b.meta("statefulset", name, namespace, labels=labels, generation=1)
        revision = f"{name}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"
        self.out.add(
            "statefulsets",
            {
                "kind": "StatefulSet",
                "apiVersion": "apps/v1",
                "metadata": meta,
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "serviceName": name,
                    "template": template,
                    "volumeClaimTemplates": [claim],
                    "podManagementPolicy": "OrderedReady",
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                    "revisionHistoryLimit": 10,
                    "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                },
                "status": {
                    **replica_status(replicas),
                    "currentReplicas": replicas,
                    "currentRevision": revision,
                    "updateRevision": revision,
                    "collisionCount": 0,
                },
            },
        )
        owner = owner_reference("StatefulSet", meta, "apps/v1")
        for i in range(replicas):
            pod_template_ = copy.deepcopy(template)
            pod_template_["metadata"]["labels"].update(
                {
                    "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                    "controller-revision-hash": revision,
                    "apps.kubernetes.io/pod-index": str(i),
                }
            )
            pod_template_["spec"]["volumes"].insert(
                0, {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}-{i}"}}
            )
            pod = self.pod(f"{name}-{i}", namespace, pod_template_, owner)
            pod["spec"].update(hostname=f"{name}-{i}", subdomain=name)
        service_object(self.b, namespace, name, labels, headless=True)

    def cronjob(self, namespace: str, name: str, jobs: int) -> None:
        labels = {"app": name}
        container = _app_container(
            name,
            "registry.example.com/ops/backup:2.3",
            "50m",
            "128Mi",
            [{"name": "tmp", "mountPath": "/tmp"}],
            serving=False,
        )
        job_template = _template(labels, [container], [{"name": "tmp", "emptyDir": {}}])
        job_template["spec"]["restartPolicy"] = "OnFailure"
        meta = self.b.meta("cronjob", name, namespace, labels=labels)
        self.out.add(
            "cronjobs",
            {
                "kind": "CronJob",
                "apiVersion": "batch/v1",
                "metadata": meta,
                "spec": {
                    "schedule": "17 3 * * *",
                    "concurrencyPolicy": "Forbid",
                    "suspend": False,
                    "jobTemplate": {
                        "metadata": {"creationTimestamp": None},
                        "spec": {"backoffLimit": 2, "template": job_template},
                    },
                    "successfulJobsHistoryLimit": jobs,
                    "failedJobsHistoryLimit": 1,
                },
                "status": {"lastScheduleTime": CREATED, "lastSuccessfulTime": CREATED},
            },
        )
        cron_owner = owner_reference("CronJob", meta, "batch/v1")
        for run in range(jobs):
            job_name = f"{name}-{29_001_234 + run * 1440}"
            job_meta = self.b.meta(
                "job",
                job_name,
                namespace,
                labels=labels,
                ownerReferences=[cron_owner],
                generation=1,
                annotations={"batch.kubernetes.io/job-tracking": ""},
            )
            uid_labels = {
                "batch.kubernetes.io/controller-uid": job_meta["uid"],
                "batch.kubernetes.io/job-name": job_name,
                "controller-uid": job_meta["uid"],
                "job-name": job_name,
            }
            template = copy.deepcopy(job_template)
            template["metadata"]["labels"].update(uid_labels)
            conditions = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "lastProbeTime": CREATED,
                    "lastTransitionTime": CREATED,
                },
                {"type": "Complete", "status": "True", "lastProbeTime": CREATED, "lastTransitionTime": CREATED},
            ]
            self.out.add(
                "jobs",
                {
                    "kind": "Job",
                    "apiVersion": "batch/v1",
                    "metadata": job_meta,
                    "spec": {
                        "parallelism": 1,
                        "completions": 1,
                        "backoffLimit": 2,
                        "completionMode": "NonIndexed",
                        "suspend": False,
                        "podReplacementPolicy": "TerminatingOrFailed",
                        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": job_meta["uid"]}},
                        "manualSelector": False,
                        "template": template,
                    },
                    "status": {
                        "conditions": conditions,
                        "startTime": CREATED,
                        "completionTime": CREATED,
                        "succeeded": 1,
                        "terminating": 0,
                        "ready": 0,
                        "uncountedTerminatedPods": {},
                    },
                },
            )
            self.pod(
                f"{job_name}-{hashlib.sha1(job_name.encode()).hexdigest()[:5]}",
                namespace,
                template,
                owner_reference("Job", job_meta, "batch/v1"),
                phase="Succeeded",
            )

    def ingress(self, namespace: str, services: list[JSON]) -> None:
        host = f"{namespace}.apps.example.com"
        annotations = {
            "cert-manager.io/cluster-issuer": "letsencrypt",
            "traefik.ingress.kubernetes.io/router.entrypoints": "websecure",
        }
        meta = self.b.meta(
            "ingress",
            "web",
            namespace,
            labels={"app.kubernetes.io/part-of": namespace},
            annotations=annotations,
            generation=1,
        )
        paths = [
            {
                "path": f"/{s['metadata']['name']}",
                "pathType": "Prefix",
                "backend": {"service": {"name": s["metadata"]["name"], "port": {"number": 80}}},
            }
            for s in services
        ]
        spec = {
            "ingressClassName": "traefik",
            "tls": [{"hosts": [host], "secretName": f"{namespace}-tls"}],
            "rules": [{"host": host, "http": {"paths": paths}}],
        }
        self.out.add(
            "ingresses",
            {
                "kind": "Ingress",
                "apiVersion": "networking.k8s.io/v1",
                "metadata": meta,
                "spec": spec,
                "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.250"}]}},
            },
        )

    def daemonset(self, name: str, image: str) -> None:
        labels = {"k8s-app": name}
        container = _app_container(
            name,
            image,
            "50m",
            "64Mi",
            [{"name": "host-var-log", "mountPath": "/var/log", "readOnly": True}],
            serving=False,
        )
        template = _template(
            labels, [container], [{"name": "host-var-log", "hostPath": {"path": "/var/log", "type": ""}}]
        )
        template["spec"]["priorityClassName"] = "system-node-critical"
        meta = self.b.meta(
            "daemonset",
            name,
            "kube-system",
            labels=labels,
            generation=1,
            annotations={"deprecated.daemonset.template.generation": "1"},
        )
        count = len(self.nodes)
        self.out.add(
            "daemonsets",
            {
                "kind": "DaemonSet",
                "apiVersion": "apps/v1",
                "metadata": meta,
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": template,
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                    "revisionHistoryLimit": 10,
                },
                "status": daemonset_status(count),
            },
        )
        owner = owner_reference("DaemonSet", meta, "apps/v1")
        for node in self.nodes:
            node_name = node["metadata"]["name"]
            pod = self.pod(
                f"{name}-{hashlib.sha1(f'{name}/{node_name}'.encode()).hexdigest()[:5]}",
                "kube-system",
                template,
                owner,
                node,
            )
            pod["spec"]["tolerations"] = [{"operator": "Exists"}, *pod["spec"]["tolerations"]]

    def finish(self) -> ClusterObjects:
        """managedFields on every object, last-applied on what kubectl applied; API order."""
        for resource, items in self.out.items.items():
            for obj in items:
                meta = obj["metadata"]
                if resource in _APPLIED_KINDS:
                    meta.setdefault("annotations", {})[_LAST_APPLIED] = _last_applied(obj)
                meta["managedFields"] = _managed_fields(resource, obj)
            items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return self.out


def generate_realistic_cluster(spec: ClusterSpec) -> ClusterObjects:
    """A cluster of ``spec.nodes`` nodes and about ``spec.pods`` pods with a real cluster's kinds and weights."""
    cluster = _Cluster(spec)
    for namespace in ("kube-system", "default"):
        cluster.namespace(namespace)
    for name, image in _DAEMONSETS:
        cluster.daemonset(name, image)
    cluster.deployment("kube-system", "coredns", 2, "rancher/mirrored-coredns-coredns:1.11.3")
    service_object(cluster.b, "kube-system", "kube-dns", {"app": "coredns"})
    service_object(cluster.b, "default", "kubernetes", None)

    tenants = max(1, round(spec.pods * _TENANTS_PER_15K / 15_000))
    deployments = max(tenants, round(spec.pods * _DEPLOYMENTS_PER_15K / 15_000))
    fixed_pods = tenants * (sum(_STATEFULSET_REPLICAS) + _JOBS_PER_CRONJOB)
    budget = max(deployments, spec.pods - cluster.out.count("pods") - fixed_pods)
    made = 0
    for t in range(tenants):
        namespace = f"team-{t:03d}"
        cluster.namespace(namespace)
        services = []
        for _ in range(deployments // tenants + (1 if t < deployments % tenants else 0)):
            name = f"svc-{made}"
            replicas = budget // deployments + (1 if made < budget % deployments else 0)
            cluster.deployment(
                namespace, name, replicas, f"registry.example.com/{namespace}/{name}:1.{_REVISIONS_KEPT}"
            )
            services.append(
                service_object(
                    cluster.b, namespace, name, {"app": name}, "LoadBalancer" if made % 50 == 0 else "ClusterIP"
                )
            )
            made += 1
        for index, replicas in enumerate(_STATEFULSET_REPLICAS):
            cluster.statefulset(namespace, f"db-{index}", replicas)
        cluster.cronjob(namespace, "backup", _JOBS_PER_CRONJOB)
        cluster.ingress(namespace, services)
    return cluster.finish()


def pod_json_bytes(objects: ClusterObjects) -> float:
    """Mean size of a pod as the API server serializes it, in bytes (the benchmark prints it)."""
    pods = objects.items["pods"]
    return sum(len(json.dumps(p, separators=(",", ":"))) for p in pods) / max(1, len(pods))
