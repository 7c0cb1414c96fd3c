"""Kubernetes tools: list pods, pod logs, rollout restart, scale, delete pod, delete namespace.

Declarations only at import time; each implementation builds the source's
authenticated ApiClient (``connectors.kubernetes.api``) and imports the SDK when it
runs. Objects are resolved in the inventory by uid; the API is addressed by the
object's current namespace and name, and deletes carry a uid precondition so that
a new object that took the old name is never deleted by mistake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from connectors.kubernetes.config import TYPE_NAME
from inventory.errors import SourceError
from inventory.policy.classes import ToolClass
from inventory.policy.live import LiveLookup
from inventory.policy.targets import Target
from inventory.policy.tools import Escalation, ToolArgs, ToolContext, ToolResult, spec_factory
from inventory.records import Ref, Snapshot

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class ListPodsArgs(ToolArgs):
    namespace: str | None = Field(default=None, pattern=_DNS_LABEL, description="Only this namespace (else all).")
    label_selector: str | None = Field(default=None, max_length=1000, description="e.g. app=web")


class PodLogsArgs(ToolArgs):
    container: str | None = Field(default=None, description="Container of the pod (else its only one).")
    tail: int = Field(default=100, ge=1, le=10_000)


class ScaleArgs(ToolArgs):
    replicas: int = Field(ge=0, le=10_000, description="Desired replicas; 0 removes all capacity.")


class DeletePodArgs(ToolArgs):
    grace_period: int | None = Field(default=None, ge=0, le=3600, description="Seconds; 0 with force kills at once.")
    force: bool = Field(default=False, description="Grace period 0: no graceful shutdown.")


class DeleteNamespaceArgs(ToolArgs):
    namespace: str = Field(pattern=_DNS_LABEL, description="The namespace to delete, with everything in it.")


@contextmanager
def _api(ctx: ToolContext) -> Iterator[Any]:
    from connectors.kubernetes.api import KubernetesApi

    api = KubernetesApi(ctx.target.source, ctx.source_config)
    try:
        yield api.client  # the authenticated kubernetes.client.ApiClient of the source
    finally:
        api.close()


def _call(ctx: ToolContext, what: str, action: Callable[[Any], Any]) -> Any:
    """One API call; an ApiException becomes a SourceError naming the source and the object."""
    from kubernetes.client.exceptions import ApiException

    resource = (
        f"{ctx.target.kind} {ctx.target.namespace}/{ctx.target.name}"
        if ctx.target.namespace
        else f"{ctx.target.kind} {ctx.target.name}"
    )
    with _api(ctx) as client:
        try:
            return action(client)
        except ApiException as exc:
            reason = f"HTTP {exc.status} {exc.reason or ''}".strip()
            raise SourceError(ctx.target.source, resource, f"{what} failed: {reason}") from exc
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise SourceError(ctx.target.source, resource, f"{what} failed: {type(exc).__name__}: {first}") from exc


def _namespace(ctx: ToolContext) -> str:
    """Pods and deployments are namespaced: a target without a namespace did not come from a Kubernetes sync."""
    if ctx.target.namespace is None:
        raise SourceError(ctx.target.source, f"{ctx.target.kind} {ctx.target.name}", "the target has no namespace")
    return ctx.target.namespace


def _uid_precondition(uid: str) -> Any:
    from kubernetes.client import V1DeleteOptions, V1Preconditions

    return V1DeleteOptions(preconditions=V1Preconditions(uid=uid))


def list_pods(ctx: ToolContext) -> ToolResult:
    args: ListPodsArgs = ctx.args  # type: ignore[assignment]

    def action(client: Any) -> Any:
        from kubernetes.client import CoreV1Api

        core = CoreV1Api(client)
        kwargs: dict[str, Any] = {"label_selector": args.label_selector} if args.label_selector else {}
        if args.namespace:
            return core.list_namespaced_pod(args.namespace, **kwargs)
        return core.list_pod_for_all_namespaces(**kwargs)

    pods = _call(ctx, "list pods", action)
    rows = [
        {
            "namespace": p.metadata.namespace,
            "name": p.metadata.name,
            "uid": p.metadata.uid,
            "phase": p.status.phase if p.status else None,
            "node": p.spec.node_name if p.spec else None,
        }
        for p in pods.items
    ]
    return ToolResult(f"{len(rows)} pods", rows)


def pod_logs(ctx: ToolContext) -> ToolResult:
    args: PodLogsArgs = ctx.args  # type: ignore[assignment]

    def action(client: Any) -> Any:
        from kubernetes.client import CoreV1Api

        kwargs: dict[str, Any] = {"tail_lines": args.tail}
        if args.container:
            kwargs["container"] = args.container
        return CoreV1Api(client).read_namespaced_pod_log(ctx.target.name, _namespace(ctx), **kwargs)

    text = _call(ctx, "read logs", action)
    return ToolResult(f"{len(str(text).splitlines())} lines", text)


def restart_deployment(ctx: ToolContext) -> ToolResult:
    # What `kubectl rollout restart` does: a new template annotation makes the controller roll every pod.
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}

    def action(client: Any) -> Any:
        from kubernetes.client import AppsV1Api

        return AppsV1Api(client).patch_namespaced_deployment(ctx.target.name, _namespace(ctx), body)

    _call(ctx, "rollout restart", action)
    return ToolResult(f"restarted deployment {ctx.target.namespace}/{ctx.target.name}", details={"restarted_at": stamp})


def scale_deployment(ctx: ToolContext) -> ToolResult:
    args: ScaleArgs = ctx.args  # type: ignore[assignment]

    def action(client: Any) -> Any:
        from kubernetes.client import AppsV1Api

        return AppsV1Api(client).patch_namespaced_deployment_scale(
            ctx.target.name, _namespace(ctx), {"spec": {"replicas": args.replicas}}
        )

    _call(ctx, "scale", action)
    before = ctx.target.attributes.get("replicas")
    return ToolResult(
        f"scaled deployment {ctx.target.namespace}/{ctx.target.name} to {args.replicas}",
        details={"replicas_before": before, "replicas": args.replicas},
    )


def delete_pod(ctx: ToolContext) -> ToolResult:
    args: DeletePodArgs = ctx.args  # type: ignore[assignment]
    grace = 0 if args.force else args.grace_period

    def action(client: Any) -> Any:
        from kubernetes.client import CoreV1Api

        options = _uid_precondition(ctx.target.external_id)
        if grace is not None:
            options.grace_period_seconds = grace
        return CoreV1Api(client).delete_namespaced_pod(ctx.target.name, _namespace(ctx), body=options)

    _call(ctx, "delete pod", action)
    return ToolResult(
        f"deleted pod {ctx.target.namespace}/{ctx.target.name}",
        details={"uid": ctx.target.external_id, "grace_period": grace},
    )


def delete_namespace(ctx: ToolContext) -> ToolResult:
    args: DeleteNamespaceArgs = ctx.args  # type: ignore[assignment]

    def action(client: Any) -> Any:
        from kubernetes.client import CoreV1Api

        return CoreV1Api(client).delete_namespace(args.namespace)

    _call(ctx, "delete namespace", action)
    return ToolResult(f"deleted namespace {args.namespace}", details={"namespace": args.namespace})


def describe_object(target: Target, config: Any) -> Target | None:
    """The object of the target's kind, namespace and name now (one GET); None if there is none."""
    from connectors.kubernetes.api import API_PATHS, KubernetesApi, ListFailed

    plural = f"{target.kind}s"
    resource = f"{target.kind} {target.namespace}/{target.name}" if target.namespace else f"{target.kind} {target.name}"
    if plural not in API_PATHS:
        raise SourceError(target.source, resource, f"objects of kind {target.kind} cannot be re-read")
    prefix, namespaced = API_PATHS[plural]
    where = f"/namespaces/{target.namespace}" if namespaced and target.namespace else ""
    api = KubernetesApi(target.source, config)
    try:
        found = api.get(f"{prefix}{where}/{plural}/{target.name}", resource)
    except ListFailed as exc:
        if exc.status == 404:
            return None
        raise SourceError(target.source, resource, f"re-reading it failed: {exc.reason}") from exc
    finally:
        api.close()
    meta = found.get("metadata") or {}
    return replace(
        target,
        external_id=str(meta.get("uid") or ""),
        name=str(meta.get("name") or target.name),
        namespace=meta.get("namespace"),
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
    )


def read_object(target: Target, config: Any) -> Snapshot:
    """The target as a sync records it now, for the closed loop after a call: one GET of the object by namespace
    and name, mapped by the code ``collect`` and the watch use (a pod's node by one GET of its node). The target's
    uid gone from that name (deleted, or replaced by a new object: its record comes along) is deleted."""
    from connectors.kubernetes.api import API_PATHS, KubernetesApi, ListFailed
    from connectors.kubernetes.config import KubernetesConfig
    from connectors.kubernetes.records import CONTROLLER_KINDS, AnnotationFilter, controller_workload, pod_workload

    plural = f"{target.kind}s"
    resource = f"{target.kind} {target.namespace}/{target.name}" if target.namespace else f"{target.kind} {target.name}"
    if (
        target.object_type != "workload"
        or plural not in API_PATHS
        or (target.kind != "pod" and target.kind not in CONTROLLER_KINDS.values())
    ):
        raise SourceError(target.source, resource, f"objects of kind {target.kind} cannot be re-read")
    assert isinstance(config, KubernetesConfig)
    prefix, _namespaced = API_PATHS[plural]
    where = f"/namespaces/{target.namespace}" if target.namespace else ""
    annotations = AnnotationFilter(config.annotation_allowlist)
    snapshot = Snapshot.changes()
    api = KubernetesApi(target.source, config)
    try:
        try:
            found = api.get(f"{prefix}{where}/{plural}/{target.name}", resource)
        except ListFailed as exc:
            if exc.status != 404:
                raise SourceError(target.source, resource, f"re-reading it failed: {exc.reason}") from exc
            found = None
        if found is not None and target.kind == "pod":
            node_name = (found.get("spec") or {}).get("nodeName")
            node_refs, unread = {}, False
            if node_name:
                try:
                    node = api.get(f"/api/v1/nodes/{node_name}", f"node {node_name}")
                    node_refs = {node_name: Ref("node", str(node["metadata"]["uid"]))}
                except (ListFailed, KeyError, TypeError):
                    unread = True  # the pod's node link keeps its stored value
            snapshot.workloads.append(pod_workload(found, node_refs, annotations, node_links_unread=unread))
        elif found is not None:
            snapshot.workloads.append(controller_workload(target.kind, found, annotations))
    finally:
        api.close()
    if not any(w.external_id == target.external_id for w in snapshot.workloads):
        snapshot.delete("workload", target.kind, target.external_id)
    return snapshot


def object_identity(target: Target) -> dict[str, str]:
    """A name is reused when an object is replaced; its uid never is."""
    return {"uid": target.external_id}


LIVE = LiveLookup(describe_object, object_identity, read_object)


_spec = spec_factory(TYPE_NAME, live=LIVE)


TOOLS = [
    _spec(
        "list_pods",
        "List pods (of one namespace, or all).",
        ToolClass.READ_ONLY,
        list_pods,
        args_model=ListPodsArgs,
        target_type="source",
        idempotent=True,
    ),
    _spec(
        "pod_logs",
        "The last lines of a pod's log.",
        ToolClass.READ_ONLY,
        pod_logs,
        args_model=PodLogsArgs,
        target_kinds=("pod",),
        idempotent=True,
    ),
    _spec(
        "restart_deployment",
        "Rollout restart: replace every pod of a deployment, one by one.",
        ToolClass.SAFE_MUTATE,
        restart_deployment,
        target_kinds=("deployment",),
    ),
    _spec(
        "scale_deployment",
        "Set a deployment's replica count.",
        ToolClass.SAFE_MUTATE,
        scale_deployment,
        args_model=ScaleArgs,
        target_kinds=("deployment",),
        idempotent=True,
        escalations=(
            Escalation(
                ToolClass.DESTRUCTIVE, "scaling to 0 replicas removes all capacity", lambda a, _t: a.replicas == 0
            ),
        ),
    ),
    _spec(
        "delete_pod",
        "Delete a pod (its controller, if any, makes a new one).",
        ToolClass.SAFE_MUTATE,
        delete_pod,
        args_model=DeletePodArgs,
        target_kinds=("pod",),
        # What force=true sends (the engine raises force to DESTRUCTIVE); the same request must be the same class.
        escalations=(
            Escalation(
                ToolClass.DESTRUCTIVE,
                "grace_period=0 kills the pod at once, as force=true does",
                lambda a, _t: a.grace_period == 0,
            ),
        ),
    ),
    _spec(
        "delete_namespace",
        "Delete a namespace and everything in it.",
        ToolClass.DESTRUCTIVE,
        delete_namespace,
        args_model=DeleteNamespaceArgs,
        target_type="source",
    ),
]
