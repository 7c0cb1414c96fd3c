"""Reading one Proxmox VE guest's details: its config and addresses, mapped by ``guest_records``.

Used by ``collect`` and the poll of ``watch`` (connector.py) for every guest they read, and by the re-read of a
tool call's target (``read_guest``, declared in tools.py), so that all three record a guest the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.proxmox.api import ApiCallFailed, ProxmoxClient
from connectors.proxmox.config import ProxmoxConfig
from connectors.proxmox.records import (
    agent_addresses,
    agent_enabled,
    guest_id,
    guest_records,
    host_kind,
    lxc_addresses,
)
from inventory.errors import SourceError
from inventory.records import Host, Snapshot, Workload

log = logging.getLogger(__name__)

# pveproxy answers 500 with the agent's trouble in the reason phrase ("QEMU guest agent is
# not running", "No QEMU guest agent configured", "... qmp command ... got timeout"): the
# guest is fine, it just cannot tell us its addresses.
AGENT_TROUBLE = ("agent", "qmp", "not running", "timeout")


@dataclass
class GuestResult:
    workload: Workload | None = None
    host: Host | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    # What is a fact, not a failure (no address because the guest agent is not answering).
    warnings: list[tuple[str, str]] = field(default_factory=list)


def add_guest(snapshot: Snapshot, result: GuestResult) -> None:
    for resource_name, reason in result.errors:
        snapshot.fail(resource_name, reason)
    for resource_name, reason in result.warnings:
        snapshot.warn(resource_name, reason)
    if result.workload is not None:
        snapshot.workloads.append(result.workload)
    if result.host is not None:
        snapshot.hosts.append(result.host)


def read_guest_details(
    client: ProxmoxClient, config: ProxmoxConfig, cluster: str, resource: Mapping[str, Any]
) -> GuestResult:
    """A guest of a /cluster/resources row: its config, its addresses when it runs, and its records."""
    kind, vmid, node = str(resource["type"]), int(resource["vmid"]), str(resource["node"])
    label = f"{kind} {vmid} on {node}"
    result = GuestResult()
    guest_config: dict[str, Any] | None
    try:
        guest_config = client.get_dict(f"{label} config", f"nodes/{node}/{kind}/{vmid}/config")
    except ApiCallFailed as exc:
        # The guest is what the cluster list says; what only its config tells keeps its last
        # known value. This includes "does not exist": a guest deleted or migrated since
        # /cluster/resources answered is seen right by the next poll.
        result.errors.append((exc.resource, exc.message))
        guest_config = None
    addresses: list[str] | None = None
    addresses_read = True
    if guest_config is None:
        addresses_read = False
    elif config.addresses and resource.get("status") == "running" and not resource.get("template"):
        addresses, addresses_read, trouble = _addresses(client, kind, node, vmid, guest_config, label)
        if trouble is not None:
            result.errors.append(trouble)
    try:
        result.workload, result.host = guest_records(
            cluster, resource, guest_config, addresses, addresses_read=addresses_read
        )
    except (KeyError, TypeError, ValueError) as exc:
        # An answer of a shape we do not know costs this guest, not the whole cluster.
        log.debug("source %r: cannot map %s", config.name, label, exc_info=True)
        result.errors.append((label, f"unexpected answer: {type(exc).__name__}: {exc}"))
    return result


def _addresses(
    client: ProxmoxClient, kind: str, node: str, vmid: int, config: Mapping[str, Any], label: str
) -> tuple[list[str] | None, bool, tuple[str, str] | None]:
    """(addresses or None when the guest cannot tell, whether they were read, an error to report).

    An agent that does not answer is a hiccup, not a fact: the addresses are unread and keep
    their last known values (never erased), with no error.
    """
    if kind == "qemu" and not agent_enabled(config):
        return None, True, None  # no agent configured: do not even ask; it has no addresses to tell
    path: str
    parse: Callable[[Any], list[str] | None]
    if kind == "qemu":
        path, parse = f"nodes/{node}/qemu/{vmid}/agent/network-get-interfaces", agent_addresses
    else:
        path, parse = f"nodes/{node}/lxc/{vmid}/interfaces", lxc_addresses
    try:
        # No retry: an agent that is down answers the same way a second later.
        found = parse(client.get(f"{label} addresses", path, retry=False))
        return found, found is not None, None
    except ApiCallFailed as exc:
        if exc.status == 501 or (exc.status == 500 and any(word in exc.reason.lower() for word in AGENT_TROUBLE)):
            return None, False, None  # agent off, not installed or unsupported: addresses as last read
        return None, False, (exc.resource, exc.message)


def read_guest(client: ProxmoxClient, config: ProxmoxConfig, cluster: str, kind: str, vmid: int) -> Snapshot:
    """One guest as collect() records it now, as a delta (the closed loop after a tool call): its row of
    /cluster/resources with the status /status/current says (the list's lags pvestatd's 10 s), then its
    config and addresses as a poll reads them; deleted, as workload and host, when no guest holds its vmid.

    Raises ApiCallFailed when a call fails, SourceError when a detail could not be read."""
    snapshot = Snapshot.changes(identity=cluster)
    resources = client.get_list("cluster resources", "cluster/resources")
    row = next((r for r in resources if r.get("type") == kind and str(r.get("vmid")) == str(vmid)), None)
    external_id = guest_id(cluster, vmid)
    if row is None:
        snapshot.delete("workload", kind, external_id)
        snapshot.delete("host", host_kind(kind), external_id)
        return snapshot
    node = str(row.get("node"))
    online = any(r.get("type") == "node" and r.get("node") == node and r.get("status") == "online" for r in resources)
    if not online:  # its node is off: what the cluster list says, the rest as last read (as collect())
        result = GuestResult(*guest_records(cluster, row, None, None, addresses_read=False))
    else:
        current = client.get_dict(f"{kind} {vmid} on {node} status", f"nodes/{node}/{kind}/{vmid}/status/current")
        if current.get("status"):
            row = {**row, "status": current["status"]}
        result = read_guest_details(client, config, cluster, row)
    if result.errors:
        errors = "; ".join(f"{what}: {why}" for what, why in result.errors)
        raise SourceError(config.name, f"guest {external_id}", errors)
    add_guest(snapshot, result)
    return snapshot


__all__ = ["AGENT_TROUBLE", "GuestResult", "add_guest", "read_guest", "read_guest_details"]
