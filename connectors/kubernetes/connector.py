"""Kubernetes clusters: nodes, workloads, Services and Ingresses, one source per cluster (context).

    sources:
      - type: kubernetes
        name: homelab-k3s
        context: k3s                 # default: the kubeconfig's current context
      - type: kubernetes
        name: fleet
        context: "*"                 # or a list: one source per context, named fleet:<context>
      - type: kubernetes
        name: remote
        server: https://10.0.0.5:6443
        token_file: /run/secrets/k8s-token
        ca_file: ca.crt

Identity is object uids; the cluster's identity is the uid of its
``kube-system`` namespace, so that renaming a context does not duplicate a
cluster. Lists are paginated and read as raw JSON; a list that fails leaves
the snapshot incomplete (nothing is removed) and names the resource.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from connectors.kubernetes.api import KubernetesApi, ListFailed, cyclic_gc_paused, default_kubeconfig_paths
from connectors.kubernetes.config import ALL_CONTEXTS, TYPE_NAME, KubernetesConfig
from connectors.kubernetes.records import (
    AnnotationFilter,
    PodIndex,
    controller_workload,
    ingress_record,
    node_host,
    pod_workload,
    service_record,
)
from inventory.connector import Connector, KindVocabulary, SourceConfig, StatusVocabulary
from inventory.errors import ConfigError, SourceError
from inventory.records import Ref, Service, Snapshot, Workload

if TYPE_CHECKING:
    from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)

_GLOB = re.compile(r"[*?\[]")
# Controllers listed after pods, in this order; replicasets are kept only as the link pod -> deployment.
_CONTROLLERS = (("replicasets", "replicaset"), ("deployments", "deployment"), ("statefulsets", "statefulset"), ("daemonsets", "daemonset"), ("jobs", "job"), ("cronjobs", "cronjob"))


class KubernetesConnector(Connector):
    type_name = TYPE_NAME
    config_model = KubernetesConfig
    config: KubernetesConfig
    # Pod phases, node readiness, controller states and the container reasons pods report.
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary(
        running={"running", "ready", "succeeded", "complete"},
        stopped={"suspended", "terminated"},
        failed={"failed", "unknown", "crashloopbackoff", "imagepullbackoff", "errimagepull", "oomkilled"},
    )
    # kubectl's short names and plurals beside the stored (singular, lower-case) kind.
    kinds: ClassVar[KindVocabulary] = KindVocabulary(
        ("pod", "po", "pods"), ("node", "no", "nodes"), ("deployment", "deploy", "deployments"),
        ("statefulset", "sts", "statefulsets"), ("daemonset", "ds", "daemonsets"), ("replicaset", "rs", "replicasets"),
        ("job", "jobs"), ("cronjob", "cj", "cronjobs"), ("service", "svc", "services"), ("ingress", "ing", "ingresses"),
    )

    @classmethod
    def tools(cls) -> Sequence[ToolSpec]:
        from connectors.kubernetes.tools import TOOLS

        return TOOLS

    @classmethod
    def expand(cls, config: SourceConfig) -> list[SourceConfig]:
        """A list of contexts, or "*" for every context of the kubeconfig, is one source per context."""
        assert isinstance(config, KubernetesConfig)
        if config.context == ALL_CONTEXTS:
            contexts = kubeconfig_contexts(config.kubeconfig)
            if not contexts:
                raise ConfigError(f"source {config.name!r}: context \"*\" found no contexts in {_kubeconfig_label(config.kubeconfig)}")
        elif isinstance(config.context, list):
            contexts = config.context
        else:
            return [config]
        return [config.model_copy(update={"name": f"{config.name}:{context}", "context": context}) for context in contexts]

    def collect(self) -> Snapshot:
        api = KubernetesApi(self.source_name, self.config)
        try:
            with cyclic_gc_paused():
                return _Collector(self.source_name, self.config, api).run()
        finally:
            api.close()


class _Collector:
    """One collection run: the lists in dependency order, and what each failure withholds."""

    def __init__(self, source_name: str, config: KubernetesConfig, api: KubernetesApi) -> None:
        self.source_name = source_name
        self.config = config
        self.api = api
        self.snapshot = Snapshot()
        self.annotations = AnnotationFilter(config.annotation_allowlist)
        self.exact_namespaces = config.namespaces if config.namespaces and not any(_GLOB.search(n) for n in config.namespaces) else None
        self.failed: set[str] = set()
        # Resources these credentials may not list at all (HTTP 403), as opposed to failed reads.
        self.forbidden: set[str] = set()

    def wanted(self, namespace: str | None) -> bool:
        if namespace is None:
            return True
        if self.config.namespaces and self.exact_namespaces is None and not any(fnmatchcase(namespace, p) for p in self.config.namespaces):
            return False
        return not any(fnmatchcase(namespace, p) for p in self.config.exclude_namespaces)

    def read(self, resource: str, convert: Callable[[dict[str, Any]], Any]) -> list[Any]:
        """Every wanted object of a resource, converted; on failure, what was read before it (and a note)."""
        results: list[Any] = []

        def consume(items: list[dict[str, Any]]) -> None:
            for obj in items:
                if self.wanted((obj.get("metadata") or {}).get("namespace")):
                    results.append(convert(obj))

        namespaced = resource != "nodes"
        scopes: list[str | None] = list(self.exact_namespaces) if namespaced and self.exact_namespaces else [None]
        for scope in scopes:
            label = resource if scope is None else f"{resource} in namespace {scope}"
            start = len(results)

            def reset(start: int = start) -> None:
                del results[start:]

            try:
                self.api.list_all(resource, scope, consume, reset)
            except ListFailed as exc:
                self.fail(label, exc.reason, resource)
                if exc.status == 403:
                    self.forbidden.add(resource)
            except (KeyError, TypeError, AttributeError) as exc:  # an object without uid or name
                self.fail(label, f"unexpected object shape: {type(exc).__name__}: {exc}", resource)
        return results

    def fail(self, label: str, reason: str, resource: str) -> None:
        self.failed.add(resource)
        log.warning("source %r: %s: %s", self.source_name, label, reason)
        self.snapshot.fail(label, reason)

    def run(self) -> Snapshot:
        snapshot = self.snapshot
        snapshot.identity = self.cluster_identity()

        nodes = self.read("nodes", lambda obj: node_host(obj, self.annotations))
        snapshot.hosts.extend(nodes)
        node_refs = {h.name: Ref("node", h.external_id) for h in nodes}
        # Nodes that failed to read may hold the pods' nodes; nodes that are forbidden (a
        # namespace-scoped account) never will: then pods land without a host link rather
        # than never landing at all.
        nodes_complete = "nodes" not in self.failed or "nodes" in self.forbidden

        pod_index = PodIndex()
        pods_withheld = 0
        owners: set[str] = set()

        def convert_pod(obj: dict[str, Any]) -> Workload | None:
            nonlocal pods_withheld
            pod = pod_workload(obj, node_refs, self.annotations)
            node_name = pod.attributes.get("node")
            if node_name and pod.host is None and not nodes_complete:
                # Its node may be among those that were not read: an update without the
                # link would be wrong, so the stored pod stays as it was.
                pods_withheld += 1
                return None
            return pod

        pods = [p for p in self.read("pods", convert_pod) if p is not None]
        for pod in pods:
            pod_index.add(pod)
            if pod.parent is not None:
                owners.add(pod.parent.external_id)
        if pods_withheld:
            self.fail("pods", f"{pods_withheld} pods not updated: their nodes could not be read", "pods")
        snapshot.workloads.extend(pods)

        for resource, kind in _CONTROLLERS:
            records = self.read(resource, partial(controller_workload, kind, annotations=self.annotations))
            if kind == "replicaset":
                # Old revisions (scaled to zero, no pods) are not inventory: keep the live links only.
                records = [r for r in records if r.attributes["replicas"] or r.attributes["ready_replicas"] or r.external_id in owners]
            snapshot.workloads.extend(records)

        self.read_services(pod_index)
        return snapshot

    def read_services(self, pod_index: PodIndex) -> None:
        if "pods" in self.failed:
            # Members are computed from the pod list: from part of it they would be wrong.
            reason = "not updated: their member pods could not all be read"
            self.snapshot.fail("services", reason)
            self.snapshot.fail("ingresses", reason)
            return
        services = self.read("services", lambda obj: service_record(obj, pod_index, self.annotations))
        self.snapshot.services.extend(services)
        if "services" in self.failed:
            self.snapshot.fail("ingresses", "not updated: the services they route to could not all be read")
            return
        by_name: dict[tuple[str, str], Service] = {(s.namespace or "", s.name): s for s in services}
        self.snapshot.services.extend(self.read("ingresses", lambda obj: ingress_record(obj, by_name, self.annotations)))

    def cluster_identity(self) -> str | None:
        """The uid of kube-system: stable across context renames. The first call, so it also proves access."""
        try:
            namespace = self.api.get("/api/v1/namespaces/kube-system", "namespace kube-system")
        except ListFailed as exc:
            if exc.status in (403, 404):
                log.warning("source %r: cannot read namespace kube-system (%s); the cluster has no identity", self.source_name, exc.reason)
                return None
            raise SourceError(self.source_name, "namespace kube-system", exc.reason) from exc
        return (namespace.get("metadata") or {}).get("uid")


def kubeconfig_contexts(path: Path | None) -> list[str]:
    """The context names of a kubeconfig (or of every file in $KUBECONFIG), without importing the SDK."""
    names: list[str] = []
    for file in [path] if path else default_kubeconfig_paths():
        try:
            document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            if path is None and len(default_kubeconfig_paths()) > 1:
                continue  # kubectl skips missing files of a $KUBECONFIG list
            raise ConfigError(f"cannot read kubeconfig {file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"kubeconfig {file} is not valid YAML: {exc}") from None
        for context in document.get("contexts") or () if isinstance(document, dict) else ():
            name = context.get("name") if isinstance(context, dict) else None
            if name and name not in names:
                names.append(name)
    return names


def _kubeconfig_label(path: Path | None) -> str:
    return str(path) if path else ", ".join(str(p) for p in default_kubeconfig_paths())
