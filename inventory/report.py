"""`inventory report`: what is there, what changed, and what looks wrong, from the database alone.

Statuses differ between sources (Kubernetes ``Running``, Proxmox ``stopped``,
Docker ``exited``); each connector declares which of its words mean running,
stopped or failed, and the report sorts a workload by the declarations of all
installed connectors together, compared lower-cased.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, not_, select
from sqlalchemy.orm import Session

from inventory.connector import installed_status_vocabulary
from inventory.machine_links import describe_ambiguous, live_host_facts
from inventory.machines import ambiguous_uuids
from inventory.queries import list_sources
from inventory.query_params import ACTIONS
from inventory.render import EMPTY_CELL, format_time
from inventory.storage.models import (
    OBJECT_MODELS,
    Change,
    HostRow,
    MachineLink,
    ServiceMember,
    ServiceRow,
    Source,
    WorkloadRow,
)
from inventory.timeutil import utcnow


def classify_status(status: str | None) -> str:
    """running | stopped | failed | inert | other, as the installed connectors declare their words."""
    return installed_status_vocabulary().classify(status)


def build_report(session: Session, *, since: datetime, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    names = dict(session.execute(select(Source.id, Source.name)).all())
    return {
        "generated_at": now,
        "since": since,
        "sources": _sources(session, names, now),
        "changes": _changes(session, names, since),
        "problem_workloads": _problem_workloads(session, names),
        "hosts_without_workloads": _idle_hosts(session, names),
        **_services_down(session, names),
        "ambiguous_machine_uuids": _ambiguous_uuids(session),
    }


def build_overview(session: Session, *, since: datetime, now: datetime | None = None) -> dict[str, Any]:
    """The report's first sections, what the web's home page shows: each source's health, the changes since
    ``since`` and what is down (without the per-kind counts and the machine checks it does not show)."""
    now = now or utcnow()
    names = dict(session.execute(select(Source.id, Source.name)).all())
    return {
        "generated_at": now,
        "since": since,
        "sources": _sources(session, names, now, with_kinds=False),
        "changes": _changes(session, names, since),
        "problem_workloads": _problem_workloads(session, names),
        **_services_down(session, names),
    }


def _sources(
    session: Session, names: dict[int, str], now: datetime, *, with_kinds: bool = True
) -> list[dict[str, Any]]:
    if not with_kinds:
        return [_source_health(src, now) for src in list_sources(session)]
    by_source: dict[str, dict[str, dict[str, dict[str, int]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    totals: dict[tuple[int, str], int] = defaultdict(int)
    for object_type, model in OBJECT_MODELS.items():
        stmt = (
            select(model.source_id, model.kind, model.status, func.count())
            .where(model.removed_at.is_(None))
            .group_by(model.source_id, model.kind, model.status)
        )
        for source_id, kind, status, count in session.execute(stmt):
            statuses = by_source[names[source_id]][object_type][kind]
            key = status or EMPTY_CELL
            statuses[key] = statuses.get(key, 0) + count
            totals[(source_id, object_type)] += count
    return [
        {
            **_source_health(src, now),
            # {object type: {kind: {status: count}}}
            "kinds": {t: {k: dict(s) for k, s in kinds.items()} for t, kinds in by_source[src["name"]].items()},
        }
        for src in list_sources(session, object_counts=totals)
    ]


def _source_health(src: dict[str, Any], now: datetime) -> dict[str, Any]:
    last_ok = src["last_success_at"]
    return {
        "name": src["name"],
        "type": src["type"],
        "hosts": src["hosts"],
        "workloads": src["workloads"],
        "services": src["services"],
        "last_status": src["last_status"],
        "last_success_at": last_ok,
        "age_seconds": round((now - last_ok).total_seconds()) if last_ok else None,
        "last_error": src["last_error"],
        "warnings": src["warnings"],
    }


def _changes(session: Session, names: dict[int, str], since: datetime) -> list[dict[str, Any]]:
    stmt = (
        select(Change.source_id, Change.action, func.count())
        .where(Change.at >= since)
        .group_by(Change.source_id, Change.action)
    )
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ACTIONS, 0))
    for source_id, action, count in session.execute(stmt):
        counts[names[source_id]][action] = count
    return [{"source": name, **actions, "total": sum(actions.values())} for name, actions in sorted(counts.items())]


def _problem_workloads(session: Session, names: dict[int, str]) -> list[dict[str, Any]]:
    vocabulary = installed_status_vocabulary()
    wanted = sorted(vocabulary.stopped | vocabulary.failed)
    stmt = (
        select(
            WorkloadRow.id,
            WorkloadRow.source_id,
            WorkloadRow.kind,
            WorkloadRow.namespace,
            WorkloadRow.name,
            WorkloadRow.status,
            HostRow.name,
        )
        .outerjoin(HostRow, HostRow.id == WorkloadRow.host_id)
        .where(
            WorkloadRow.removed_at.is_(None),
            func.lower(WorkloadRow.status).in_(wanted),
            # A template never runs: "stopped" is what it is, not a problem.
            not_(func.coalesce(WorkloadRow.attributes["template"].as_boolean(), False)),
        )
        .order_by(WorkloadRow.source_id, WorkloadRow.namespace, WorkloadRow.name)
    )
    return [
        {
            "id": wid,
            "source": names[sid],
            "kind": kind,
            "namespace": ns,
            "name": name,
            "status": status,
            "state": classify_status(status),
            "host": host,
        }
        for wid, sid, kind, ns, name, status, host in session.execute(stmt)
    ]


def _idle_hosts(session: Session, names: dict[int, str]) -> list[dict[str, Any]]:
    """Live hosts that run no live workload, unless the same machine (the stored machine links) does under
    another source: a Proxmox VM that is a Kubernetes node runs pods, under the node's record."""
    live_workload = (
        select(WorkloadRow.id).where(WorkloadRow.host_id == HostRow.id, WorkloadRow.removed_at.is_(None)).exists()
    )
    hosts = session.execute(
        select(HostRow, live_workload).where(HostRow.removed_at.is_(None)).order_by(HostRow.source_id, HostRow.name)
    ).all()
    busy = {host.id for host, runs_workloads in hosts if runs_workloads}
    links = session.execute(select(MachineLink.host_id, MachineLink.other_id))
    covered = {host_id for host_id, other_id in links if other_id in busy}
    return [
        {"id": host.id, "source": names[host.source_id], "kind": host.kind, "name": host.name, "status": host.status}
        for host, _ in hosts
        if host.id not in busy and host.id not in covered and classify_status(host.status) != "inert"
    ]


def _ambiguous_uuids(session: Session) -> list[dict[str, Any]]:
    """Machine uuids that several live hosts of one source share (kind nodes, cloned VMs): they link nothing."""
    return describe_ambiguous(session, ambiguous_uuids(live_host_facts(session)))


# Services whose source declares their members (Compose, swarm, pools, static) carry no "selector" attribute.
_DECLARED_MEMBERS: Any = object()


def _services_down(session: Session, names: dict[int, str]) -> dict[str, list[dict[str, Any]]]:
    """Services none of whose members run, and apart, services whose label selector picks no pod.

    A Kubernetes Service routes to the endpoints of its selector. Without a selector (``default/kubernetes``,
    ExternalName, hand-made Endpoints) its members are not pods the inventory could know, so it is not judged;
    a selector that picks no pod here may still have endpoints, so it is listed as that, not as down.
    """
    # Judged in the database: a service with a running live member is fine, and most are, so only the others
    # (and their members' statuses) come back; reading every member of every service grew with the cluster.
    running_words = sorted(installed_status_vocabulary().running)
    live_member = (
        select(ServiceMember.service_id, WorkloadRow.status)
        .join(WorkloadRow, WorkloadRow.id == ServiceMember.workload_id)
        .where(WorkloadRow.removed_at.is_(None))
        .subquery()
    )
    runs = func.lower(func.trim(func.coalesce(live_member.c.status, ""))).in_(running_words)
    judged = (
        select(live_member.c.service_id, func.max(case((runs, 1), else_=0)).label("running"))
        .group_by(live_member.c.service_id)
        .subquery()
    )
    not_running = (
        select(ServiceRow)
        .outerjoin(judged, judged.c.service_id == ServiceRow.id)
        .where(ServiceRow.removed_at.is_(None), func.coalesce(judged.c.running, 0) == 0)
        .order_by(ServiceRow.source_id, ServiceRow.namespace, ServiceRow.name)
    )
    services = list(session.execute(not_running).scalars())
    members: dict[int, list[str | None]] = defaultdict(list)
    service_ids = [service.id for service in services]
    for start in range(0, len(service_ids), 500):  # bounded IN lists
        of_these = select(live_member.c.service_id, live_member.c.status).where(
            live_member.c.service_id.in_(service_ids[start : start + 500])
        )
        for service_id, status in session.execute(of_these):
            members[service_id].append(status)
    down, selecting_nothing = [], []
    for service in services:
        statuses = members.get(service.id, [])
        row = {
            "id": service.id,
            "source": names[service.source_id],
            "kind": service.kind,
            "namespace": service.namespace,
            "name": service.name,
            "members": len(statuses),
            "member_statuses": sorted({s or EMPTY_CELL for s in statuses}),
        }
        selector = (service.attributes or {}).get("selector", _DECLARED_MEMBERS)
        if selector is _DECLARED_MEMBERS or statuses:
            down.append(row)
        elif selector:
            selecting_nothing.append({**row, "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))})
    return {"services_without_running_members": down, "services_selecting_no_pods": selecting_nothing}


# Rendering: markdown here (it is a report format, not a table format); table and JSON via inventory.render.


def _md_table(rows: Iterable[dict[str, Any]], columns: tuple[str, ...]) -> list[str]:
    rows = list(rows)
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(row.get(c)) for c in columns) + " |")
    return [*lines, ""]


def _md_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def kind_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source, object type, kind and status: the report's inventory section flattened."""
    rows = []
    for src in report["sources"]:
        for object_type, kinds in sorted(src["kinds"].items()):
            for kind, statuses in sorted(kinds.items()):
                for status, count in sorted(statuses.items()):
                    rows.append(
                        {"source": src["name"], "type": object_type, "kind": kind, "status": status, "count": count}
                    )
    return rows


SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Sources",
        "sources",
        ("name", "type", "hosts", "workloads", "services", "last_status", "last_success_at", "age", "last_error"),
    ),
    ("Objects by kind and status", "kinds", ("source", "type", "kind", "status", "count")),
    ("Changes", "changes", ("source", *ACTIONS, "total")),
    ("Failed and stopped workloads", "problem_workloads", ("source", "kind", "namespace", "name", "status", "host")),
    ("Hosts with no workloads", "hosts_without_workloads", ("source", "kind", "name", "status")),
    (
        "Services with no running members",
        "services_without_running_members",
        ("source", "kind", "namespace", "name", "members", "member_statuses"),
    ),
    (
        "Services whose selector matches no pod",
        "services_selecting_no_pods",
        ("source", "kind", "namespace", "name", "selector"),
    ),
    (
        "Machine uuids shared within one source (linking nothing)",
        "ambiguous_machine_uuids",
        ("source", "machine_uuid", "hosts"),
    ),
    # Only in a report whose config declares logical services (inventory.logical).
    (
        "Logical services",
        "logical_services",
        ("name", "status", "members", "running", "slo", "availability", "observed", "slo_met"),
    ),
)


def section_rows(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    if key == "kinds":
        return kind_rows(report)
    if key == "sources":
        return [{**s, "age": format_age(s["age_seconds"])} for s in report["sources"]]
    return report[key]


def section_count(key: str, rows: list[dict[str, Any]]) -> int:
    """What a section's heading counts: what its table totals (changes, objects), else its rows."""
    if key == "changes":
        return sum(row["total"] for row in rows)
    if key == "kinds":
        return sum(row["count"] for row in rows)
    return len(rows)


def format_age(seconds: float | None) -> str:
    """``42s``, ``5m07s``, ``3h05m``, ``2d4h``; ``never`` for no sync at all."""
    if seconds is None:
        return "never"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def to_markdown(report: dict[str, Any]) -> str:
    since = format_time(report["since"])
    lines = [f"# Inventory report ({format_time(report['generated_at'])})", "", f"Changes since {since}.", ""]
    for title, key, columns in SECTIONS:
        if key not in report and key != "kinds":
            continue
        lines += [f"## {title}", ""]
        lines += _md_table(section_rows(report, key), columns)
    return "\n".join(lines)


def source_status(
    session: Session, configured: Sequence[tuple[str, str]], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """`inventory status`'s rows: per source (the configured ones, as (name, type), first, then those only
    stored) its last successful sync and age, counts, the last run's warnings and error."""
    now = now or utcnow()
    stored = {row["name"]: row for row in list_sources(session)}
    types = dict(configured)
    names = [name for name, _type in configured] + sorted(set(stored) - set(types))
    rows = []
    for name in names:
        row = stored.get(name, {})
        last_ok = row.get("last_success_at")
        age = (now - last_ok).total_seconds() if last_ok else None
        rows.append(
            {
                "source": name,
                "type": row.get("type") or types.get(name),
                "configured": name in types,
                "last_status": row.get("last_status"),
                "last_success_at": last_ok,
                "age_seconds": round(age, 1) if age is not None else None,
                "age": format_age(age),
                "last_error": row.get("last_error"),
                "warnings": row.get("warnings", []),
                # Followed live: its changes are written as they happen, and it stays fresh while it beats.
                "watching_since": row.get("watching_since"),
                "live": f"watching since {_clock(row['watching_since'])}" if row.get("watching_since") else "",
                "drift_repaired": row.get("drift_repaired"),
                "hosts": row.get("hosts", 0),
                "workloads": row.get("workloads", 0),
                "services": row.get("services", 0),
            }
        )
    return rows


def _clock(at: Any) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ")
