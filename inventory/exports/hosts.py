"""The live hosts as the exports see them: source, best address, tags, and the guest that backs them.

"Best address" is the one a tool on the operator's network is most likely to reach:

1. an IPv4 address that is not loopback, link-local, multicast or unspecified;
2. an IPv6 address with the same exclusions;
3. none (the caller falls back to the hostname).

Within a rank the source's own order wins: connectors list the primary address first
(Kubernetes InternalIP before ExternalIP, a guest agent's first interface).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from inventory.connector import installed_status_vocabulary
from inventory.storage.models import HostRow, MachineLink, Source, WorkloadRow
from inventory.tags import tags_of


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def best_address(addresses: Iterable[str]) -> str | None:
    """The address to reach a host at, by the ranking in this module's docstring; text that is no IP is skipped."""
    ranked: list[tuple[int, int, str]] = []
    for position, text in enumerate(addresses):
        try:
            ip = ipaddress.ip_interface(text.strip()).ip
        except ValueError:
            continue
        if _usable(ip):
            ranked.append((0 if ip.version == 4 else 1, position, str(ip)))
    return min(ranked)[2] if ranked else None


@dataclass(frozen=True)
class ExportHost:
    id: int
    source: str
    source_type: str
    kind: str
    external_id: str
    name: str
    status: str | None
    hostname: str | None
    machine_uuid: str | None
    addresses: Sequence[str]
    mac_addresses: Sequence[str]
    labels: Mapping[str, str]
    attributes: Mapping[str, Any]
    # Namespace and tags of the guest that backs the host (Proxmox keeps tags on the guest).
    namespace: str | None = None
    tags: Sequence[str] = field(default_factory=list)
    # The machine this host is one face of (inventory.machine_links: its lowest host id); its own id when
    # no other source sees the same machine.
    machine_id: int | None = None

    @property
    def machine(self) -> int:
        return self.machine_id if self.machine_id is not None else self.id

    @property
    def address(self) -> str | None:
        return best_address(self.addresses)


def live_hosts(session: Session, *, sources: Sequence[str] = (), kinds: Sequence[str] = ()) -> list[ExportHost]:
    """Every live host that can run (optionally of some sources or kinds) in one query, by source, name and id."""
    backing = aliased(WorkloadRow)
    machine = (
        select(MachineLink.host_id, func.min(MachineLink.machine_id).label("machine_id"))
        .group_by(MachineLink.host_id)
        .subquery()
    )
    stmt = (
        select(HostRow, Source.name, Source.type, backing.namespace, backing.labels, backing.attributes)
        .add_columns(machine.c.machine_id)
        .join(Source, Source.id == HostRow.source_id)
        .outerjoin(backing, backing.id == HostRow.backing_workload_id)
        .outerjoin(machine, machine.c.host_id == HostRow.id)
        .where(HostRow.removed_at.is_(None))
        .order_by(Source.name, HostRow.name, HostRow.id)
    )
    if sources:
        stmt = stmt.where(Source.name.in_(list(sources)))
    if kinds:
        stmt = stmt.where(HostRow.kind.in_(list(kinds)))
    inert = installed_status_vocabulary().inert
    if inert:  # a host that never runs (a template) is no machine to reach
        stmt = stmt.where(or_(HostRow.status.is_(None), func.lower(HostRow.status).not_in(sorted(inert))))
    hosts = []
    for row, source, source_type, namespace, guest_labels, guest_attributes, machine_id in session.execute(stmt):
        hosts.append(
            ExportHost(
                id=row.id,
                source=source,
                source_type=source_type,
                kind=row.kind,
                external_id=row.external_id,
                name=row.name,
                status=row.status,
                hostname=row.hostname,
                machine_uuid=row.machine_uuid,
                addresses=list(row.addresses or []),
                mac_addresses=list(row.mac_addresses or []),
                labels=dict(row.labels or {}),
                attributes=dict(row.attributes or {}),
                namespace=namespace,
                tags=tags_of(row.attributes, row.labels, guest_attributes, guest_labels),
                machine_id=machine_id,
            )
        )
    return hosts
