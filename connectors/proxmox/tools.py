"""Proxmox VE tools: start, shutdown, stop, reboot, snapshot, rollback and delete a guest (VM or LXC).

Declarations only at import time; implementations log in through
``connectors.proxmox.api.ProxmoxClient`` (proxmoxer) when they run. A guest is
resolved in the inventory by its id; the API is addressed by the node and vmid
recorded with it (``attributes.node``, ``attributes.vmid``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from pydantic import Field

from connectors.proxmox.config import TYPE_NAME
from inventory.errors import SourceError, UsageError
from inventory.policy.classes import ToolClass
from inventory.policy.live import LiveLookup
from inventory.policy.targets import Target
from inventory.policy.tools import ToolArgs, ToolContext, ToolResult, spec_factory
from inventory.records import Snapshot

# Workload kinds of guests as the Proxmox connector records them (the API's own type names).
GUEST_KINDS = ("qemu", "lxc")
_SNAPSHOT_NAME = r"^[A-Za-z][A-Za-z0-9_-]{1,39}$"


class ShutdownArgs(ToolArgs):
    timeout: int | None = Field(default=None, ge=1, le=3600, description="Seconds to wait for the guest OS.")


class SnapshotArgs(ToolArgs):
    name: str = Field(pattern=_SNAPSHOT_NAME, description="Snapshot name.")
    description: str | None = Field(default=None, max_length=1000)
    vmstate: bool = Field(default=False, description="VMs: include the RAM state.")


class RollbackArgs(ToolArgs):
    name: str = Field(pattern=_SNAPSHOT_NAME, description="Snapshot to roll back to.")


class DeleteArgs(ToolArgs):
    purge: bool = Field(default=False, description="Also remove it from backup jobs, HA and replication.")


def _guest_path(ctx: ToolContext) -> str:
    node, vmid = ctx.target.attributes.get("node"), ctx.target.attributes.get("vmid")
    if not node or vmid is None:
        raise UsageError(
            f"{ctx.target.ref} carries no node/vmid in the inventory; sync source {ctx.target.source!r} first"
        )
    return f"nodes/{node}/{ctx.target.kind}/{vmid}"


def _call(ctx: ToolContext, what: str, method: Literal["post", "delete"], path: str, **params: Any) -> Any:
    """One POST/DELETE; an API refusal becomes a SourceError naming the source and the guest."""
    from connectors.proxmox.api import ApiCallFailed, open_client

    resource = f"guest {ctx.target.name} ({ctx.target.external_id})"
    client = open_client(ctx.source_config)
    try:
        send = client.post if method == "post" else client.delete
        return send(resource, path, **params)
    except ApiCallFailed as exc:
        raise SourceError(ctx.target.source, resource, f"{what} failed: {exc.message}") from exc
    finally:
        client.close()


def _status_action(action: str) -> Callable[[ToolContext], ToolResult]:
    def run(ctx: ToolContext) -> ToolResult:
        params: dict[str, Any] = {}
        timeout = getattr(ctx.args, "timeout", None)
        if timeout is not None:
            params["timeout"] = timeout
        task = _call(ctx, action, "post", f"{_guest_path(ctx)}/status/{action}", **params)
        return ToolResult(f"{action} {ctx.target.name}: task {task}", details={"task": task})

    run.__name__ = action
    return run


start = _status_action("start")
shutdown = _status_action("shutdown")
stop = _status_action("stop")
reboot = _status_action("reboot")


def snapshot(ctx: ToolContext) -> ToolResult:
    args: SnapshotArgs = ctx.args  # type: ignore[assignment]
    params: dict[str, Any] = {"snapname": args.name}
    if args.description:
        params["description"] = args.description
    if args.vmstate and ctx.target.kind == "qemu":
        params["vmstate"] = 1
    task = _call(ctx, "snapshot", "post", f"{_guest_path(ctx)}/snapshot", **params)
    return ToolResult(
        f"snapshot {args.name} of {ctx.target.name}: task {task}", details={"task": task, "snapshot": args.name}
    )


def rollback(ctx: ToolContext) -> ToolResult:
    args: RollbackArgs = ctx.args  # type: ignore[assignment]
    task = _call(ctx, "rollback", "post", f"{_guest_path(ctx)}/snapshot/{args.name}/rollback")
    return ToolResult(
        f"rolled {ctx.target.name} back to {args.name}: task {task}", details={"task": task, "snapshot": args.name}
    )


def delete(ctx: ToolContext) -> ToolResult:
    args: DeleteArgs = ctx.args  # type: ignore[assignment]
    params = {"purge": 1} if args.purge else {}
    task = _call(ctx, "delete", "delete", _guest_path(ctx), **params)
    return ToolResult(f"deleted {ctx.target.name}: task {task}", details={"task": task})


def describe_guest(target: Target, config: Any) -> Target | None:
    """The guest holding the target's vmid now (wherever it runs), mapped as a sync maps it; None if none does."""
    from connectors.proxmox.api import ApiCallFailed, open_client
    from connectors.proxmox.records import guest_records

    vmid = target.attributes.get("vmid")
    resource = f"guest {target.name} ({target.external_id})"
    if vmid is None:
        raise SourceError(target.source, resource, "the inventory holds no vmid for it; sync the source first")
    client = open_client(config)
    try:
        guests = client.get_list(resource, "cluster/resources", type="vm")
        entry = next((g for g in guests if str(g.get("vmid")) == str(vmid)), None)
        if entry is None:
            return None
        guest_config = client.get_dict(resource, f"nodes/{entry['node']}/{entry['type']}/{vmid}/config")
    except ApiCallFailed as exc:
        raise SourceError(target.source, resource, f"re-reading the guest failed: {exc.message}") from exc
    finally:
        client.close()
    cluster = str(target.attributes.get("cluster") or target.external_id.rpartition("/")[0])
    workload, host = guest_records(cluster, entry, guest_config, ())
    return replace(
        target,
        kind=workload.kind,
        external_id=workload.external_id,
        name=workload.name,
        labels=dict(workload.labels),
        attributes=dict(workload.attributes),
        machine_uuid=host.machine_uuid if host else None,
    )


def read_guest(target: Target, config: Any) -> Snapshot:
    """The guest as a sync records it now, for the closed loop after a call (``guests.read_guest``: the cluster
    list, the guest's status/current, its config and addresses, read by the code collect() uses)."""
    from connectors.proxmox.api import ApiCallFailed, open_client
    from connectors.proxmox.guests import read_guest as read_one_guest

    vmid = target.attributes.get("vmid")
    resource = f"guest {target.name} ({target.external_id})"
    if vmid is None:
        raise SourceError(target.source, resource, "the inventory holds no vmid for it; sync the source first")
    cluster = str(target.attributes.get("cluster") or target.external_id.rpartition("/")[0])
    client = open_client(config)
    try:
        return read_one_guest(client, config, cluster, target.kind, int(vmid))
    except ApiCallFailed as exc:
        raise SourceError(target.source, resource, f"re-reading the guest failed: {exc.message}") from exc
    finally:
        client.close()


def guest_identity(target: Target) -> dict[str, str]:
    """A vmid can be given to another guest: the SMBIOS uuid says which guest holds it (else the name)."""
    identity = {"kind": target.kind, "vmid": str(target.attributes.get("vmid"))}
    if target.machine_uuid:
        identity["uuid"] = target.machine_uuid
    else:
        identity["name"] = target.name
    return identity


LIVE = LiveLookup(describe_guest, guest_identity, read_guest)


_spec = spec_factory(TYPE_NAME, target_kinds=GUEST_KINDS, live=LIVE)


TOOLS = [
    _spec("start", "Start a guest.", ToolClass.SAFE_MUTATE, start, idempotent=True),
    _spec(
        "shutdown",
        "Ask the guest OS to shut down (ACPI / init).",
        ToolClass.SAFE_MUTATE,
        shutdown,
        args_model=ShutdownArgs,
        idempotent=True,
    ),
    _spec(
        "stop",
        "Stop a guest at once, without the guest OS (like pulling the plug).",
        ToolClass.SAFE_MUTATE,
        stop,
        idempotent=True,
    ),
    _spec("reboot", "Reboot a guest through its OS.", ToolClass.SAFE_MUTATE, reboot),
    _spec("snapshot", "Take a snapshot of a guest.", ToolClass.SAFE_MUTATE, snapshot, args_model=SnapshotArgs),
    _spec(
        "rollback",
        "Roll a guest back to a snapshot: everything since is lost.",
        ToolClass.DESTRUCTIVE,
        rollback,
        args_model=RollbackArgs,
    ),
    _spec("delete", "Delete a guest and its disks.", ToolClass.DESTRUCTIVE, delete, args_model=DeleteArgs),
]
