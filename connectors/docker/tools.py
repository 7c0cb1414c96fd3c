"""Docker tools: list, logs, start, stop, restart, remove containers, prune stopped ones.

Declarations only at import time; each implementation imports the Docker SDK
(through ``connectors.docker.api.open_client``) when it runs. A container is
named by its inventory target (``workload:<source>/container/<id>`` or a name);
the engine is always addressed by the container's id, never by its name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import Field

from connectors.docker.config import TYPE_NAME
from inventory.errors import SourceError
from inventory.policy.classes import ToolClass
from inventory.policy.live import LiveLookup
from inventory.policy.targets import Target
from inventory.policy.tools import Escalation, ToolArgs, ToolContext, ToolResult, spec_factory
from inventory.records import Ref, Snapshot

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

CONTAINER = ("container",)


class ListArgs(ToolArgs):
    all: bool = Field(default=True, description="Also stopped containers.")


class LogsArgs(ToolArgs):
    tail: int = Field(default=100, ge=1, le=10_000, description="Lines from the end.")


class StopArgs(ToolArgs):
    timeout: int = Field(default=10, ge=0, le=600, description="Seconds before the engine kills the container.")


class RemoveArgs(ToolArgs):
    force: bool = Field(default=False, description="Kill a running container first.")
    volumes: bool = Field(default=False, description="Also remove its anonymous volumes.")


@contextmanager
def _client(ctx: ToolContext) -> Iterator[APIClient]:
    from connectors.docker.api import open_client

    client = open_client(ctx.source_config)
    try:
        yield client
    finally:
        client.close()


def _call(ctx: ToolContext, what: str, action: Callable[[APIClient], Any]) -> Any:
    """Run one engine call; an engine error becomes a SourceError naming the source and the container."""
    from connectors.docker.api import describe_error

    with _client(ctx) as client:
        try:
            return action(client)
        except Exception as exc:
            resource = (
                f"container {ctx.target.name} ({ctx.target.external_id[:12]})"
                if ctx.target.object_type == "workload"
                else f"engine {ctx.source_config.url}"
            )
            raise SourceError(
                ctx.target.source, resource, f"{what} failed: {describe_error(exc, ctx.source_config)}"
            ) from exc


def list_containers(ctx: ToolContext) -> ToolResult:
    args: ListArgs = ctx.args  # type: ignore[assignment]
    listed = _call(ctx, "list", lambda c: c.containers(all=args.all))
    rows = [
        {
            "id": item["Id"],
            "name": (item.get("Names") or ["?"])[0].lstrip("/"),
            "image": item.get("Image"),
            "state": item.get("State"),
            "status": item.get("Status"),
        }
        for item in listed
    ]
    return ToolResult(f"{len(rows)} containers", rows)


def logs(ctx: ToolContext) -> ToolResult:
    args: LogsArgs = ctx.args  # type: ignore[assignment]
    raw = _call(ctx, "logs", lambda c: c.logs(ctx.target.external_id, stdout=True, stderr=True, tail=args.tail))
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return ToolResult(f"{len(text.splitlines())} lines", text)


def start(ctx: ToolContext) -> ToolResult:
    _call(ctx, "start", lambda c: c.start(ctx.target.external_id))
    return ToolResult(f"started {ctx.target.name}", details={"container": ctx.target.external_id})


def stop(ctx: ToolContext) -> ToolResult:
    args: StopArgs = ctx.args  # type: ignore[assignment]
    _call(ctx, "stop", lambda c: c.stop(ctx.target.external_id, timeout=args.timeout))
    return ToolResult(f"stopped {ctx.target.name}", details={"container": ctx.target.external_id})


def restart(ctx: ToolContext) -> ToolResult:
    args: StopArgs = ctx.args  # type: ignore[assignment]
    _call(ctx, "restart", lambda c: c.restart(ctx.target.external_id, timeout=args.timeout))
    return ToolResult(f"restarted {ctx.target.name}", details={"container": ctx.target.external_id})


def remove(ctx: ToolContext) -> ToolResult:
    args: RemoveArgs = ctx.args  # type: ignore[assignment]
    _call(ctx, "remove", lambda c: c.remove_container(ctx.target.external_id, v=args.volumes, force=args.force))
    return ToolResult(f"removed {ctx.target.name}", details={"container": ctx.target.external_id})


def prune(ctx: ToolContext) -> ToolResult:
    answer = _call(ctx, "prune", lambda c: c.prune_containers())
    deleted = list(answer.get("ContainersDeleted") or [])
    return ToolResult(
        f"pruned {len(deleted)} stopped containers",
        deleted,
        details={"deleted": deleted, "space_reclaimed": answer.get("SpaceReclaimed")},
    )


def describe_container(target: Target, config: Any) -> Target | None:
    """The container of the target's id now (one inspect), mapped as a sync maps it; None if it is gone."""
    from docker.errors import NotFound

    from connectors.docker.api import describe_error, open_client
    from connectors.docker.records import container_workload
    from inventory.records import Ref

    client = open_client(config)
    try:
        detail = client.inspect_container(target.external_id)
    except NotFound:
        return None
    except Exception as exc:
        resource = f"container {target.name} ({target.external_id[:12]})"
        reason = describe_error(exc, config)
        raise SourceError(target.source, resource, f"re-reading it failed: {reason}") from exc
    finally:
        client.close()
    settings = detail.get("Config") or {}
    listed = {
        "Id": detail["Id"],
        "Names": [detail.get("Name") or ""],
        "Labels": settings.get("Labels") or {},
        "Image": settings.get("Image"),
        "State": (detail.get("State") or {}).get("Status"),
    }
    workload = container_workload(listed, detail, Ref("engine", target.source))
    return replace(
        target,
        external_id=workload.external_id,
        name=workload.name,
        namespace=workload.namespace,
        labels=dict(workload.labels),
    )


def read_container(target: Target, config: Any) -> Snapshot:
    """The container as a sync records it now, for the closed loop after a call: listed by its id and inspected by
    the code ``collect`` and the event watch use (three calls: /info for the engine, the list, one inspect);
    deleted when the engine no longer has it."""
    from connectors.docker.api import describe_error, engine_resource, open_client
    from connectors.docker.reading import read_containers
    from connectors.docker.records import CONTAINER_KIND, HOST_KIND

    resource = f"container {target.name} ({target.external_id[:12]})"
    client = open_client(config)
    try:
        try:
            info = dict(client.info())
        except Exception as exc:
            raise SourceError(target.source, engine_resource(config), describe_error(exc, config)) from exc
        engine_id = str(info.get("ID") or "")
        snapshot = Snapshot.changes(identity=engine_id or None)
        try:
            listed = client.containers(all=True, filters={"id": [target.external_id]})
        except Exception as exc:
            raise SourceError(target.source, resource, f"re-reading it failed: {describe_error(exc, config)}") from exc
        listed = [c for c in listed if c.get("Id") == target.external_id]
        containers = read_containers(client, config, listed, Ref(HOST_KIND, engine_id), snapshot)
    finally:
        client.close()
    if snapshot.errors:  # the inspect failed: what the list said is not the whole container
        raise SourceError(target.source, resource, f"re-reading it failed: {'; '.join(snapshot.errors)}")
    snapshot.workloads.extend(containers.workloads)
    if not containers.workloads:
        snapshot.delete("workload", CONTAINER_KIND, target.external_id)
    return snapshot


def container_identity(target: Target) -> dict[str, str]:
    """A container is recreated under the same name with a new id (compose up): the id is the identity."""
    return {"id": target.external_id}


LIVE = LiveLookup(describe_container, container_identity, read_container)


_spec = spec_factory(TYPE_NAME, target_kinds=CONTAINER, live=LIVE)


TOOLS = [
    _spec(
        "list",
        "List the engine's containers.",
        ToolClass.READ_ONLY,
        list_containers,
        args_model=ListArgs,
        target_type="source",
        target_kinds=(),
        idempotent=True,
    ),
    _spec(
        "logs",
        "The last lines of a container's output.",
        ToolClass.READ_ONLY,
        logs,
        args_model=LogsArgs,
        idempotent=True,
    ),
    _spec("start", "Start a stopped container.", ToolClass.SAFE_MUTATE, start, idempotent=True),
    _spec(
        "stop",
        "Stop a container (SIGTERM, then SIGKILL after the timeout).",
        ToolClass.SAFE_MUTATE,
        stop,
        args_model=StopArgs,
        idempotent=True,
    ),
    _spec("restart", "Restart a container.", ToolClass.SAFE_MUTATE, restart, args_model=StopArgs),
    _spec(
        "remove",
        "Remove a container.",
        ToolClass.DESTRUCTIVE,
        remove,
        args_model=RemoveArgs,
        escalations=(
            Escalation(
                ToolClass.DESTRUCTIVE, "volumes=true also deletes the container's data", lambda a, _t: a.volumes
            ),
        ),
    ),
    _spec(
        "prune",
        "Remove every stopped container of the engine.",
        ToolClass.DESTRUCTIVE,
        prune,
        target_type="source",
        target_kinds=(),
    ),
]
