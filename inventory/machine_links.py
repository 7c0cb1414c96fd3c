"""The stored machine links: recomputed from the live hosts after each source's write, read by every view.

The whole graph is recomputed each time, in bulk: one query reads what the rule needs of
every live host, ``inventory.machines.link_machines`` links them, and only the hosts whose
links differ from the stored ones are rewritten (one DELETE, one INSERT). A host that
changed, appeared or went away in any source is thereby relinked, and a stable graph costs
no write at all. Measured with benchmarks/bench_machines.py (see the README).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, text

from inventory.connector import installed_registry
from inventory.machines import (
    RULE_ORDER,
    AmbiguousUuid,
    HostFacts,
    MachineGraph,
    MatchRule,
    link_machines,
)
from inventory.storage.database import as_connection
from inventory.storage.store import _chunks
from inventory.storage.tables import hosts, machine_links, sources

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from inventory.records import Snapshot

log = logging.getLogger(__name__)

# Two writers of one PostgreSQL database relink one after the other (SQLite has one writer at a time anyway).
_PG_RELINK_LOCK = int.from_bytes(
    hashlib.blake2b(b"inventory-machine-links", digest_size=8).digest(), "big", signed=True
)

# The host columns the rule reads; of the attributes (a Kubernetes node's are large) only the keys
# the connectors' ``provider_id`` read are extracted, in SQL.
_FACT_COLUMNS = (
    hosts.c.id,
    hosts.c.source_id,
    hosts.c.name,
    hosts.c.hostname,
    hosts.c.machine_uuid,
    hosts.c.mac_addresses,
    hosts.c.addresses,
    sources.c.type,
)


def live_host_facts(session: Connection | Session) -> list[HostFacts]:
    """What the same-machine rule reads of every live host (provider ids as each source's connector reads them)."""
    registry = installed_registry()
    # Only the connectors of the sources stored here: loading every installed one cost a static sync ~35 ms.
    keys = registry.provider_keys(session.execute(select(sources.c.type).distinct()).scalars())
    columns = (*_FACT_COLUMNS, *(hosts.c.attributes[key].as_string().label(f"attr_{key}") for key in keys))
    stmt = select(*columns).join(sources, sources.c.id == hosts.c.source_id).where(hosts.c.removed_at.is_(None))
    return [
        HostFacts(
            row.id,
            row.source_id,
            row.name,
            row.hostname,
            row.machine_uuid,
            tuple(row.mac_addresses or ()),
            tuple(row.addresses or ()),
            registry.provider_id(row.type, {key: getattr(row, f"attr_{key}") for key in keys}),
        )
        for row in session.execute(stmt)
    ]


def relink_machines(session: Connection | Session) -> MachineGraph:
    """Bring the machine_links table in line with the live hosts, in the caller's transaction."""
    if as_connection(session).dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_RELINK_LOCK})
    graph = link_machines(live_host_facts(session))
    machine_of = graph.machine_of()
    wanted: dict[int, set[tuple[int, str, int]]] = defaultdict(set)
    for match in graph.matches:
        machine_id = machine_of[match.host_id]
        wanted[match.host_id].add((match.other_id, str(match.rule), machine_id))
        wanted[match.other_id].add((match.host_id, str(match.rule), machine_id))
    stored: dict[int, set[tuple[int, str, int]]] = defaultdict(set)
    links = select(machine_links.c.host_id, machine_links.c.other_id, machine_links.c.rule, machine_links.c.machine_id)
    for link in session.execute(links):
        stored[link.host_id].add((link.other_id, link.rule, link.machine_id))
    changed = sorted(host for host in wanted.keys() | stored.keys() if wanted.get(host) != stored.get(host))
    if changed:
        for chunk in _chunks(changed):
            session.execute(delete(machine_links).where(machine_links.c.host_id.in_(chunk)))
        rows = [
            {"host_id": host_id, "other_id": other_id, "rule": rule, "machine_id": machine_id}
            for host_id in changed
            for other_id, rule, machine_id in sorted(wanted.get(host_id, ()))
        ]
        if rows:
            session.execute(insert(machine_links), rows)
    return graph


def describe_ambiguous(session: Connection | Session, found: Sequence[AmbiguousUuid]) -> list[dict[str, Any]]:
    """Ambiguous uuids with their source's and hosts' names: the report's rows and the sync's warnings."""
    if not found:
        return []
    ids = sorted({host_id for a in found for host_id in a.host_ids})
    names = dict(session.execute(select(hosts.c.id, hosts.c.name).where(hosts.c.id.in_(ids))).all())
    source_names = dict(session.execute(select(sources.c.id, sources.c.name)).all())
    return [
        {
            "source": source_names.get(a.source_id),
            "machine_uuid": a.uuid,
            "hosts": [names.get(i, str(i)) for i in a.host_ids],
        }
        for a in found
    ]


def relink_after_write(session: Connection | Session, source_id: int) -> MachineGraph:
    """Relink after a source's write, and warn of the uuids that this source's hosts share."""
    graph = relink_machines(session)
    for row in describe_ambiguous(session, [a for a in graph.ambiguous if a.source_id == source_id]):
        log.warning(
            "source %r: machine uuid %s is shared by %d hosts (%s), so it links none of them to another source",
            row["source"],
            row["machine_uuid"],
            len(row["hosts"]),
            ", ".join(row["hosts"]),
        )
    return graph


def relink_after_delta(session: Connection | Session, source_id: int, snapshot: Snapshot, changed: int) -> None:
    """Relink after a delta (a watch's, a tool call's re-read) only where it changed something and touched a host:
    links are between hosts, and a delta of workloads alone leaves them as they were."""
    if changed and (snapshot.hosts or any(key[0] == "host" for key in snapshot.deleted)):
        relink_after_write(session, source_id)


def stored_machines(session: Connection | Session) -> list[dict[str, Any]]:
    """Every machine more than one source sees: its id, the strongest rule that linked it, its uuid, its hosts."""
    stmt = (
        select(
            machine_links.c.machine_id,
            machine_links.c.rule,
            hosts.c.id,
            hosts.c.kind,
            hosts.c.name,
            hosts.c.machine_uuid,
            sources.c.name.label("source"),
        )
        .join(hosts, hosts.c.id == machine_links.c.host_id)
        .join(sources, sources.c.id == hosts.c.source_id)
    )
    rules: dict[int, set[MatchRule]] = defaultdict(set)
    seen: dict[int, dict[int, Any]] = defaultdict(dict)
    for host in session.execute(stmt):
        rules[host.machine_id].add(MatchRule(host.rule))
        seen[host.machine_id][host.id] = host
    found = []
    for machine_id, seen_hosts in seen.items():
        ordered = sorted(seen_hosts.values(), key=lambda h: (h.source, h.kind, h.name))
        found.append(
            {
                "machine": machine_id,
                "matched_by": str(min(rules[machine_id], key=RULE_ORDER.__getitem__)),
                "machine_uuid": next((host.machine_uuid for host in ordered if host.machine_uuid), None),
                "seen_as": " = ".join(f"{host.source}/{host.kind} {host.name}" for host in ordered),
            }
        )
    return sorted(found, key=lambda m: m["seen_as"])
