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
cluster. Lists are paginated and read as raw JSON; each list that completes is
a scope read (what it no longer holds is removed), a list that fails removes
nothing of its kind and names the resource, and a list the credentials may not
read is skipped and said once (see ``_Collector``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from connectors.kubernetes.api import (
    API_KINDS,
    SCOPES,
    KubernetesApi,
    ListFailed,
    cyclic_gc_paused,
    default_kubeconfig_paths,
    qualified,
)
from connectors.kubernetes.causes import ALL_PARTS, Owners, Writer, cause_of, controller_reference, owner_of, writers
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
from inventory.connector import Connector, KindVocabulary, SourceConfig, StarterSource, StatusVocabulary
from inventory.cutoff import Cutoff
from inventory.errors import ConfigError, SourceError
from inventory.records import ObjectKey, Ref, Scope, Service, Snapshot
from inventory.yaml_text import load_yaml

if TYPE_CHECKING:
    from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)

_GLOB = re.compile(r"[*?\[]")
# Controllers listed after pods, in this order; replicasets are kept only as the link pod -> deployment.
_SCOPES = SCOPES
_CONTROLLERS = (
    ("replicasets", "replicaset"),
    ("deployments", "deployment"),
    ("statefulsets", "statefulset"),
    ("daemonsets", "daemonset"),
    ("jobs", "job"),
    ("cronjobs", "cronjob"),
)


class KubernetesConnector(Connector):
    type_name = TYPE_NAME
    config_model = KubernetesConfig
    sdk_modules = ("kubernetes.client", "kubernetes.client.exceptions", "kubernetes.config", "urllib3")
    # A node is one runtime on a machine: losing it takes its pods, not the VM or the other runtimes on it.
    runtime = True
    config: KubernetesConfig
    # watch(): a list of each kind, then a watch of it from the list's resourceVersion (connectors/kubernetes/watch.py).
    streams: ClassVar[bool] = True
    # Pod phases, node readiness, controller states and the container reasons pods report.
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary(
        running={"running", "ready", "succeeded", "complete"},
        stopped={"suspended", "terminated"},
        failed={"failed", "unknown", "crashloopbackoff", "imagepullbackoff", "errimagepull", "oomkilled"},
    )
    # kubectl's short names and plurals beside the stored (singular, lower-case) kind.
    kinds: ClassVar[KindVocabulary] = KindVocabulary(
        ("pod", "po", "pods"),
        ("node", "no", "nodes"),
        ("deployment", "deploy", "deployments"),
        ("statefulset", "sts", "statefulsets"),
        ("daemonset", "ds", "daemonsets"),
        ("replicaset", "rs", "replicasets"),
        ("job", "jobs"),
        ("cronjob", "cj", "cronjobs"),
        ("service", "svc", "services"),
        ("ingress", "ing", "ingresses"),
    )

    @classmethod
    def tools(cls) -> Sequence[ToolSpec]:
        from connectors.kubernetes.tools import TOOLS

        return TOOLS

    @classmethod
    def starter_sources(cls) -> list[StarterSource]:
        """Every context of the kubeconfig kubectl would read; none when there is no kubeconfig."""
        try:
            every = cls.config_model.model_validate({"type": TYPE_NAME, "name": "init", "context": "*"})
            contexts = [str(getattr(source, "context", "")) for source in cls.expand(every)]
        except ConfigError as exc:
            log.info("no Kubernetes source offered: %s", exc)
            return []
        return [StarterSource(context, {"context": context}, f"kubeconfig context {context!r}") for context in contexts]

    @classmethod
    def expand(cls, config: SourceConfig) -> list[SourceConfig]:
        """A list of contexts, or "*" for every context of the kubeconfig, is one source per context.

        "*" takes one context per cluster: contexts that reach the same API server with the same
        CA (an admin and a read-only user of one cluster, say) would be two sources claiming one
        cluster identity, so the first is kept and the others are named in a warning.
        """
        assert isinstance(config, KubernetesConfig)
        if config.kubeconfig is not None and not config.kubeconfig.is_file():
            # Said when the config is loaded (exit 2), not as an unreadable source on every sync.
            raise ConfigError(f"source {config.name!r}: cannot read kubeconfig {config.kubeconfig}: no such file")
        if config.kubeconfig is None and not config.server and not config.in_cluster:
            if not any(path.is_file() for path in default_kubeconfig_paths()):
                raise ConfigError(
                    f"source {config.name!r}: cannot read kubeconfig {_kubeconfig_label(None)}: no such file "
                    "(give kubeconfig:, server: with a token, or in_cluster: true)"
                )
        if config.context == ALL_CONTEXTS:
            entries = _kubeconfig_entries(config.kubeconfig)
            if not entries:
                raise ConfigError(
                    f'source {config.name!r}: context "*" found no contexts in {_kubeconfig_label(config.kubeconfig)}'
                )
            contexts = _one_context_per_cluster(config.name, entries)
        elif isinstance(config.context, list):
            contexts = config.context
        else:
            return [config]
        return [
            config.model_copy(update={"name": f"{config.name}:{context}", "context": context}) for context in contexts
        ]

    def collect(self) -> Snapshot:
        api = KubernetesApi(self.source_name, self.config, self.cutoff)
        try:
            with cyclic_gc_paused():
                return _Collector(self.source_name, self.config, api).run()
        finally:
            api.close()

    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:
        from connectors.kubernetes.watch import Watcher

        # The first lists can take a minute on a large cluster: ``stop`` abandons them (no further page is asked).
        cutoff = Cutoff()
        done = threading.Event()

        def relay() -> None:
            while not done.is_set():
                if stop.wait(0.5):
                    cutoff.abandon()
                    return

        threading.Thread(target=relay, name="k8s-watch-stop", daemon=True).start()
        api = KubernetesApi(self.source_name, self.config, cutoff)
        try:
            collector = _Collector(self.source_name, self.config, api, keep_raw=True)
            yield from Watcher(self.source_name, api, collector, stop).run()
        finally:
            done.set()
            api.close()


class _Collector:
    """One collection run: the lists in dependency order, the scopes each completed, what each failure withholds.

    Each list that completes is a scope read (``Snapshot.read``): a kind read in every namespace
    the source covers is one source-wide scope, so the objects of a namespace no longer
    configured (or newly excluded) are removed; a kind read in some namespaces only is a scope
    per namespace read. A list the credentials may not read (HTTP 403 on its first page) is
    skipped and said once (``Snapshot.warn``): a namespace-scoped account is a fact, not a
    failure. Any other failure is a scope that should have been read (``Snapshot.fail``).
    """

    def __init__(
        self, source_name: str, config: KubernetesConfig, api: KubernetesApi, *, keep_raw: bool = False
    ) -> None:
        self.source_name = source_name
        self.config = config
        self.api = api
        self.snapshot = Snapshot()
        # Who wrote each object read (its managedFields) and its controller, for the causes of the changes
        # reconcile will find; controllers by uid for the owner chains.
        self.writers: dict[ObjectKey, tuple[tuple[Writer, ...], dict[str, Any] | None]] = {}
        self.owners = Owners()
        # For a watch, which carries on from this list: every replicaset (also those not kept), and the
        # raw services and ingresses (their members are computed again as pods change).
        self.keep_raw = keep_raw
        self.replicasets: list[Any] = []
        self.raw: dict[str, list[dict[str, Any]]] = {"services": [], "ingresses": []}
        self.annotations = AnnotationFilter(config.annotation_allowlist)
        self.exact_namespaces = (
            config.namespaces if config.namespaces and not any(_GLOB.search(n) for n in config.namespaces) else None
        )
        # Resources with a list that failed, and the (resource, namespace) lists these credentials may not read.
        self.failed: set[str] = set()
        self.forbidden: list[tuple[str, str | None]] = []
        # Who the API server says the credentials are (RBAC's 403 names them), for the advice on what to grant.
        self.account: str | None = None
        self.identity_refused = False  # may not get namespace kube-system

    def wanted(self, namespace: str | None) -> bool:
        if namespace is None:
            return True
        if (
            self.config.namespaces
            and self.exact_namespaces is None
            and not any(fnmatchcase(namespace, p) for p in self.config.namespaces)
        ):
            return False
        return not any(fnmatchcase(namespace, p) for p in self.config.exclude_namespaces)

    def read(self, resource: str, convert: Callable[[dict[str, Any]], Any]) -> list[Any]:
        """Every wanted object of a resource, converted; on failure, what was read before it (and a note)."""
        results: list[Any] = []

        object_type, kind = _SCOPES[resource]
        api_kind = API_KINDS[resource]
        keep_raw = self.keep_raw and resource in self.raw
        raw = self.raw.get(resource)

        def consume(items: list[dict[str, Any]]) -> None:
            for obj in items:
                meta = obj.get("metadata") or {}
                if self.wanted(meta.get("namespace")):
                    results.append(convert(obj))
                    self.note(object_type, kind, api_kind, obj)
                    if keep_raw and raw is not None:
                        meta.pop("managedFields", None)  # read above; the largest part of an object
                        raw.append(obj)

        namespaced = resource != "nodes"
        namespaces: list[str | None] = list(self.exact_namespaces) if namespaced and self.exact_namespaces else [None]
        read: list[str | None] = []
        for namespace in namespaces:
            label = resource if namespace is None else f"{resource} in namespace {namespace}"
            start = len(results)

            def reset(start: int = start) -> None:
                del results[start:]

            try:
                self.api.list_all(resource, namespace, consume, reset)
            except ListFailed as exc:
                if exc.status == 403 and len(results) == start:
                    self.forbidden.append((resource, namespace))
                    self.account = self.account or _account(exc.reason)
                    log.info("source %r: %s: %s", self.source_name, label, exc.reason)
                else:
                    self.fail(label, exc.reason, resource)
                continue
            except (KeyError, TypeError, AttributeError) as exc:  # an object without uid or name
                self.fail(label, f"unexpected object shape: {type(exc).__name__}: {exc}", resource)
                continue
            read.append(namespace)
        if read == namespaces:
            self.snapshot.read(Scope(object_type, kind))
        else:
            for namespace in read:
                self.snapshot.read(Scope(object_type, kind, namespace))
        return results

    def note(self, object_type: str, kind: str, api_kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        reference = controller_reference(meta)
        self.writers[(object_type, kind, meta["uid"])] = (writers(meta), dict(reference) if reference else None)
        if kind in ("replicaset", "deployment", "statefulset", "daemonset", "job", "cronjob"):
            self.owners.note(meta["uid"], owner_of(api_kind, obj))

    def attribute(self) -> None:
        """The last writer of every object read, marked inferred: a full sync does not see which change
        happened since the last one, only who wrote the object last (kept only where reconcile finds a change)."""
        snapshot = self.snapshot
        groups: list[tuple[str, Sequence[Any]]] = [
            ("host", snapshot.hosts),
            ("workload", snapshot.workloads),
            ("service", snapshot.services),
        ]
        for object_type, records in groups:
            for record in records:
                found = self.writers.get((object_type, record.kind, record.external_id))
                if found is None:
                    continue
                found_writers, reference = found
                detail = self.owners.detail({"ownerReferences": [reference]}) if reference else {}
                cause = cause_of(found_writers, ALL_PARTS, detail, stated=False)
                if cause is not None:
                    snapshot.attribute(object_type, record, cause)
        self.writers.clear()

    def unreadable(self, resource: str) -> set[str | None]:
        """The namespaces whose ``resource`` was not read whole (None: cluster-wide, i.e. all of them)."""
        gaps = {namespace for r, namespace in self.forbidden if r == resource}
        if resource in self.failed:
            gaps.add(None)
        return gaps

    def fail(self, label: str, reason: str, resource: str) -> None:
        self.failed.add(resource)
        # Said once, by whoever shows the run's outcome (the FAILED line, the loop's log line).
        log.debug("source %r: %s: %s", self.source_name, label, reason)
        self.snapshot.fail(label, reason)

    def run(self) -> Snapshot:
        snapshot = self.snapshot
        snapshot.identity = self.cluster_identity()

        nodes = self.read("nodes", lambda obj: node_host(obj, self.annotations))
        snapshot.hosts.extend(nodes)
        node_refs = {h.name: Ref("node", h.external_id) for h in nodes}
        # Without the node list a pod's node cannot be linked: its stored link is kept (unread),
        # whether the nodes failed or are forbidden, and the pod itself is still brought up to date.
        node_links_unread = bool(self.unreadable("nodes"))

        pod_index = PodIndex()
        owners: set[str] = set()
        pods = self.read(
            "pods", lambda obj: pod_workload(obj, node_refs, self.annotations, node_links_unread=node_links_unread)
        )
        for pod in pods:
            pod_index.add(pod)
            if pod.parent is not None:
                owners.add(pod.parent.external_id)
        snapshot.workloads.extend(pods)

        for resource, kind in _CONTROLLERS:
            records = self.read(resource, partial(controller_workload, kind, annotations=self.annotations))
            if kind == "replicaset":
                if self.keep_raw:
                    self.replicasets = records
                # Old revisions (scaled to zero, no pods) are not inventory: keep the live links only.
                records = [
                    r
                    for r in records
                    if r.attributes["replicas"] or r.attributes["ready_replicas"] or r.external_id in owners
                ]
            snapshot.workloads.extend(records)

        self.read_services(pod_index)
        self.say_what_was_skipped()
        self.attribute()
        return snapshot

    def read_services(self, pod_index: PodIndex) -> None:
        if "pods" in self.failed:
            # Members are computed from the pod list: from part of it they would be wrong.
            reason = "not updated: their member pods could not all be read"
            self.snapshot.fail("services", reason)
            self.snapshot.fail("ingresses", reason)
            return
        # Pods these credentials may not list: the services there keep their stored members.
        members_unread = self.unreadable("pods")
        services = self.read("services", lambda obj: service_record(obj, pod_index, self.annotations, members_unread))
        self.snapshot.services.extend(services)
        if "services" in self.failed:
            self.snapshot.fail("ingresses", "not updated: the services they route to could not all be read")
            return
        members_unread |= self.unreadable("services")
        by_name: dict[tuple[str, str], Service] = {(s.namespace or "", s.name): s for s in services}
        self.snapshot.services.extend(
            self.read("ingresses", lambda obj: ingress_record(obj, by_name, self.annotations, members_unread))
        )

    def say_what_was_skipped(self) -> None:
        """One warning for every list these credentials may not read, however many there were."""
        if not self.forbidden:
            return
        by_namespace: dict[str | None, list[str]] = {}
        for resource, namespace in self.forbidden:
            by_namespace.setdefault(namespace, []).append(resource)
        parts = [
            ", ".join(resources) + ("" if namespace is None else f" in namespace {namespace}")
            for namespace, resources in by_namespace.items()
        ]
        reason = f"skipped, forbidden for {self.api.where} (HTTP 403): " + "; ".join(parts)
        cluster_wide = by_namespace.get(None, [])
        pods_read = any(scope.kind == "pod" for scope in self.snapshot.scopes or ())
        if "nodes" in cluster_wide and pods_read:
            # Node links are read from the node list: stored links stay, a pod never linked gets none.
            reason += " (pods keep their last known node links; pods never linked have none)"
        if any(resource != "nodes" for resource in cluster_wide):
            reason += "; give namespaces: to read the namespaces it may"
        scopes = [Scope(*_SCOPES[resource], namespace) for resource, namespace in self.forbidden]
        # A warning while anything else was read (logged by the runner, once per process); the run's
        # error, with what to grant, when nothing was (the run is then forbidden, not fresh).
        self.snapshot.forbid(
            scopes,
            "permissions",
            reason,
            grant=_grant(self.api.where, self.account, self.forbidden, self.identity_refused),
        )

    def cluster_identity(self) -> str | None:
        """The uid of kube-system: stable across context renames. The first call, so it also proves access."""
        try:
            namespace = self.api.get("/api/v1/namespaces/kube-system", "namespace kube-system")
        except ListFailed as exc:
            if exc.status in (403, 404):  # a namespace-scoped account: a fact, said once by the runner
                self.identity_refused = exc.status == 403
                self.account = self.account or _account(exc.reason)
                self.snapshot.warn(
                    "namespace kube-system",
                    f"{exc.reason}; the cluster has no identity (a source renamed in the config starts afresh)",
                )
                return None
            raise SourceError(self.source_name, "namespace kube-system", exc.reason) from exc
        return (namespace.get("metadata") or {}).get("uid")


def _grant(
    where: str, account: str | None, forbidden: Sequence[tuple[str, str | None]], identity_refused: bool = False
) -> str:
    """What to grant so that the account may read what was forbidden, as kubectl commands to start from."""
    resources = list(dict.fromkeys(_qualified(resource) for resource, _namespace in forbidden))
    granted = [*resources, "namespaces"] if identity_refused else resources  # kube-system: the cluster's identity
    namespaces = list(dict.fromkeys(namespace for _resource, namespace in forbidden if namespace is not None))
    everywhere = any(namespace is None for _resource, namespace in forbidden)
    scope = "in any namespace" if everywhere else "in namespace " + ", ".join(namespaces)
    who = f"the account {account}" if account else f"the account of {where}"
    subject = "--user=ACCOUNT"
    if account and account.startswith("system:serviceaccount:"):
        subject = "--serviceaccount=" + account.removeprefix("system:serviceaccount:")
    elif account:
        subject = f"--user={account}"
    return (
        f"{who} may not list {', '.join(resources)} {scope} (HTTP 403): grant it get, list and watch on them "
        "(watch: to follow changes as they happen), e.g. "
        f"kubectl create clusterrole inventory-read --verb=get,list,watch --resource={','.join(granted)} && "
        f"kubectl create clusterrolebinding inventory-read --clusterrole=inventory-read {subject} "
        "(deploy/kubernetes/cronjob.yaml has the whole ClusterRole)"
    )


_ACCOUNT = re.compile(r'User "([^"]+)" cannot')


def _account(reason: str) -> str | None:
    """The user or service account RBAC's 403 message names (``User "system:serviceaccount:ns:sa" cannot list ...``)."""
    match = _ACCOUNT.search(reason)
    return match.group(1) if match else None


_qualified = qualified


def kubeconfig_contexts(path: Path | None) -> list[str]:
    """The context names of a kubeconfig (or of every file in $KUBECONFIG), without importing the SDK."""
    return [context.name for context in _kubeconfig_entries(path)]


@dataclass(frozen=True)
class _ContextEntry:
    name: str
    # What the context reaches: the API server URL and the CA that vouches for it.
    cluster: tuple[str, str] | None


def _kubeconfig_entries(path: Path | None) -> list[_ContextEntry]:
    """Each context of a kubeconfig (or of every file in $KUBECONFIG, kubectl's first-wins merge) and its cluster."""
    entries: dict[str, _ContextEntry] = {}
    for file in [path] if path else default_kubeconfig_paths():
        try:
            document = load_yaml(file.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            if path is None and len(default_kubeconfig_paths()) > 1:
                continue  # kubectl skips missing files of a $KUBECONFIG list
            raise ConfigError(f"cannot read kubeconfig {file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"kubeconfig {file} is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            continue
        clusters = {
            c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or () if isinstance(c, dict)
        }
        for context in document.get("contexts") or ():
            name = context.get("name") if isinstance(context, dict) else None
            if not name or name in entries:
                continue
            cluster = clusters.get((context.get("context") or {}).get("cluster"))
            server = str(cluster.get("server") or "").rstrip("/") if isinstance(cluster, dict) else ""
            ca = (
                str(cluster.get("certificate-authority-data") or cluster.get("certificate-authority") or "")
                if isinstance(cluster, dict)
                else ""
            )
            entries[name] = _ContextEntry(name, (server, ca) if server else None)
    return list(entries.values())


def _one_context_per_cluster(source_name: str, entries: list[_ContextEntry]) -> list[str]:
    """The first context of each cluster; the others are said once in a warning."""
    kept: dict[tuple[str, str] | str, str] = {}
    merged: list[str] = []
    for entry in entries:
        key = entry.cluster or entry.name  # a context without a server stands alone
        if key in kept:
            merged.append(f"{entry.name!r} (same cluster as {kept[key]!r})")
        else:
            kept[key] = entry.name
    if merged:
        log.warning(
            'source %r: context "*" reads each cluster once; skipped %s, '
            "which reach a cluster another context already reads",
            source_name,
            ", ".join(merged),
        )
    return list(kept.values())


def _kubeconfig_label(path: Path | None) -> str:
    return str(path) if path else ", ".join(str(p) for p in default_kubeconfig_paths())
