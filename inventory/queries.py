"""Read-side library API behind `hosts`, `workloads`, `services` and `changes`.

Every function returns plain rows whose keys are the documented, stable JSON
output of the CLI (see README, "JSON output"). Filters are applied in SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, aliased

from inventory import machines
from inventory.errors import Ambiguous, NotFound, UsageError
from inventory.machines import HostFacts
from inventory.outcome import SyncStatus
from inventory.schema import OBJECT_MODELS, SCHEMA, ObjectType
from inventory.storage.models import Change, HostRow, ServiceMember, ServiceRow, Source, SyncRun, WorkloadRow


@dataclass(frozen=True)
class ObjectFilter:
    source: str | None = None
    kind: str | None = None
    status: str | None = None
    name: str | None = None  # shell-style glob: * and ?
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str | None = None
    host: str | None = None  # workloads only: host name or id
    include_removed: bool = False
    limit: int | None = None
    offset: int = 0  # rows to skip (the server's page cursors)


def glob_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def parse_labels(pairs: Sequence[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label takes KEY=VALUE, got {pair!r}")
        labels[key] = value
    return labels


def _apply_common(stmt: Select[Any], model: Any, flt: ObjectFilter) -> Select[Any]:
    if flt.source:
        stmt = stmt.where(Source.name == flt.source)
    if flt.kind:
        stmt = stmt.where(model.kind == flt.kind)
    if flt.status:
        stmt = stmt.where(func.lower(model.status) == flt.status.lower())
    if flt.name:
        stmt = stmt.where(model.name.ilike(glob_to_like(flt.name), escape="\\"))
    for key, value in flt.labels.items():
        stmt = stmt.where(model.labels[key].as_string() == value)
    if flt.namespace and hasattr(model, "namespace"):
        stmt = stmt.where(model.namespace == flt.namespace)
    if not flt.include_removed:
        stmt = stmt.where(model.removed_at.is_(None))
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    if flt.offset:
        stmt = stmt.offset(flt.offset)
    return stmt


def object_row(object_type: ObjectType, row: Any, source: str, **computed: Any) -> dict[str, Any]:
    """A row as the documented JSON output: the object type's output keys, from the row and the computed values."""
    values = {"source": source, **computed}
    return {key: values[key] if key in values else getattr(row, key) for key in object_type.output_keys}


def _live_workloads_per_host() -> Any:
    return (
        select(func.count(WorkloadRow.id))
        .where(WorkloadRow.host_id == HostRow.id, WorkloadRow.removed_at.is_(None))
        .correlate(HostRow)
        .scalar_subquery()
    )


def _live_members_per_service() -> Any:
    return (
        select(func.count(ServiceMember.workload_id))
        .join(WorkloadRow, WorkloadRow.id == ServiceMember.workload_id)
        .where(ServiceMember.service_id == ServiceRow.id, WorkloadRow.removed_at.is_(None))
        .correlate(ServiceRow)
        .scalar_subquery()
    )


def list_hosts(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    stmt = select(HostRow, Source.name, _live_workloads_per_host()).join(Source, Source.id == HostRow.source_id)
    stmt = _apply_common(stmt, HostRow, flt).order_by(Source.name, HostRow.name, HostRow.id)
    return [object_row(SCHEMA["host"], h, src, workloads=n) for h, src, n in session.execute(stmt)]


def list_workloads(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    host = aliased(HostRow)
    # Typed loosely: the filters below are shared with the one-entity queries.
    stmt = cast(
        "Select[Any]",
        select(WorkloadRow, Source.name, host.name)
        .join(Source, Source.id == WorkloadRow.source_id)
        .outerjoin(host, host.id == WorkloadRow.host_id),
    )
    if flt.host:
        host_ids = [h.id for h in _match(session, "host", flt.host, many=True)]
        stmt = stmt.where(WorkloadRow.host_id.in_(host_ids))
    stmt = _apply_common(stmt, WorkloadRow, flt).order_by(Source.name, WorkloadRow.namespace, WorkloadRow.name, WorkloadRow.id)
    return [object_row(SCHEMA["workload"], w, src, host=hname) for w, src, hname in session.execute(stmt)]


def list_services(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    stmt = select(ServiceRow, Source.name, _live_members_per_service()).join(Source, Source.id == ServiceRow.source_id)
    stmt = _apply_common(stmt, ServiceRow, flt).order_by(Source.name, ServiceRow.namespace, ServiceRow.name, ServiceRow.id)
    return [object_row(SCHEMA["service"], s, src, members=n) for s, src, n in session.execute(stmt)]


def _match(session: Session, object_type: str, ident: str, *, many: bool = False) -> list[Any]:
    """Objects named by id, by ``source/kind/external_id``, or by name (live ones first)."""
    model = OBJECT_MODELS[object_type]
    # Beyond a 64-bit integer no id can match (and SQLite would raise OverflowError): treat it as a name.
    if ident.isdigit() and int(ident) < 2**63:
        found = session.get(model, int(ident))
        if found is not None:
            return [found]
    parts = ident.split("/", 2)
    if len(parts) == 3:
        stmt = select(model).join(Source, Source.id == model.source_id).where(
            Source.name == parts[0], model.kind == parts[1], model.external_id == parts[2]
        )
        found_rows = list(session.execute(stmt).scalars())
        if found_rows:
            return found_rows
    candidates = list(session.execute(select(model).where(or_(model.name == ident, model.external_id == ident))).scalars())
    live = [c for c in candidates if c.removed_at is None]
    candidates = live or candidates
    if not candidates:
        raise NotFound(f"no {object_type} named {ident!r}")
    if len(candidates) > 1 and not many:
        sources = dict(session.execute(select(Source.id, Source.name)).all())
        listed = ", ".join(f"{c.id} ({sources.get(c.source_id)}/{c.kind}/{c.external_id})" for c in candidates[:10])
        raise Ambiguous(f"{len(candidates)} {object_type}s are named {ident!r}: {listed}; name one by id or source/kind/external_id")
    return candidates


def _source_name(session: Session, source_id: int) -> str:
    return session.execute(select(Source.name).where(Source.id == source_id)).scalar_one()


def recent_changes(session: Session, object_type: str, object_id: int, limit: int = 10) -> list[dict[str, Any]]:
    stmt = (
        select(Change)
        .where(Change.object_type == object_type, Change.object_id == object_id)
        .order_by(Change.at.desc(), Change.id.desc())
        .limit(limit)
    )
    return [{"at": c.at, "action": c.action, "diff": c.diff} for c in session.execute(stmt).scalars()]


def _brief(row: Any, source: str | None = None) -> dict[str, Any]:
    brief = {"id": row.id, "kind": row.kind, "name": row.name, "status": row.status}
    if source is not None:
        brief["source"] = source
    if row.removed_at is not None:
        brief["removed_at"] = row.removed_at
    return brief


def show_object(session: Session, object_type: str, ident: str) -> dict[str, Any]:
    (obj,) = _match(session, object_type, ident)
    source = _source_name(session, obj.source_id)
    if object_type == "host":
        workloads = list(
            session.execute(select(WorkloadRow).where(WorkloadRow.host_id == obj.id).order_by(WorkloadRow.name)).scalars()
        )
        backing = session.get(WorkloadRow, obj.backing_workload_id) if obj.backing_workload_id else None
        doc = object_row(SCHEMA["host"], obj, source, workloads=sum(1 for w in workloads if w.removed_at is None))
        doc["workloads"] = [_brief(w) for w in workloads]
        doc["backing_workload"] = _brief(backing) if backing else None
        doc["same_machine"] = same_machine(session, obj)
    elif object_type == "workload":
        host = session.get(HostRow, obj.host_id) if obj.host_id else None
        parent = session.get(WorkloadRow, obj.parent_id) if obj.parent_id else None
        doc = object_row(SCHEMA["workload"], obj, source, host=host.name if host else None)
        doc["host"] = _brief(host) if host else None
        doc["parent"] = _brief(parent) if parent else None
        doc["children"] = [_brief(c) for c in session.execute(select(WorkloadRow).where(WorkloadRow.parent_id == obj.id).order_by(WorkloadRow.name)).scalars()]
        doc["services"] = [
            _brief(s)
            for s in session.execute(
                select(ServiceRow).join(ServiceMember, ServiceMember.service_id == ServiceRow.id).where(ServiceMember.workload_id == obj.id)
            ).scalars()
        ]
    else:
        members = list(
            session.execute(
                select(WorkloadRow).join(ServiceMember, ServiceMember.workload_id == WorkloadRow.id).where(ServiceMember.service_id == obj.id).order_by(WorkloadRow.name)
            ).scalars()
        )
        doc = object_row(SCHEMA["service"], obj, source, members=sum(1 for m in members if m.removed_at is None))
        doc["members"] = [_brief(m) for m in members]
    doc["changes"] = recent_changes(session, object_type, obj.id)
    return doc


def host_facts(host: HostRow) -> HostFacts:
    """What the same-machine rule reads of a host row."""
    macs = tuple(host.mac_addresses or ())
    return HostFacts(host.id, host.source_id, host.name, host.hostname, host.machine_uuid, macs)


def same_machine(session: Session, host: HostRow) -> list[dict[str, Any]]:
    """Live hosts of other sources that are this machine (inventory.machines), strongest evidence first.

    A Proxmox VM that is also a Kubernetes node and a Docker host is one machine seen three
    times; the rows stay per source (each source owns its rows), the link is made here.
    """
    stmt = select(HostRow, Source.name).join(Source, Source.id == HostRow.source_id).where(
        HostRow.source_id != host.source_id, HostRow.removed_at.is_(None)
    )
    others = {other.id: (other, source) for other, source in session.execute(stmt)}
    found = []
    for match in machines.same_machine(host_facts(host), (host_facts(other) for other, _ in others.values())):
        other, source = others[match.other_id]
        row = {**_brief(other, source), "matched_by": str(match.rule)}
        found.append((machines.RULE_ORDER[match.rule], source, other.id, row))
    return [row for *_, row in sorted(found, key=lambda f: f[:3])]


def list_changes(
    session: Session,
    *,
    since: datetime,
    until: datetime | None = None,
    source: str | None = None,
    kind: str | None = None,
    object_type: str | None = None,
    action: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    stmt = select(Change, Source.name).join(Source, Source.id == Change.source_id).where(Change.at >= since)
    if until is not None:
        stmt = stmt.where(Change.at < until)
    if source:
        stmt = stmt.where(Source.name == source)
    if kind:
        stmt = stmt.where(Change.kind == kind)
    if object_type:
        stmt = stmt.where(Change.object_type == object_type)
    if action:
        stmt = stmt.where(Change.action == action)
    stmt = stmt.order_by(Change.at, Change.id)
    if limit:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return [
        {
            "id": c.id,
            "at": c.at,
            "source": src,
            "action": c.action,
            "object_type": c.object_type,
            "object_id": c.object_id,
            "kind": c.kind,
            "external_id": c.external_id,
            "name": c.name,
            "diff": c.diff,
            "fields": ",".join(c.diff) if c.diff else "",
        }
        for c, src in session.execute(stmt)
    ]


def list_sources(session: Session) -> list[dict[str, Any]]:
    """Every source with its latest run and its live object counts."""
    latest = (
        select(SyncRun.source_id, func.max(SyncRun.id).label("run_id")).group_by(SyncRun.source_id).subquery()
    )
    last_ok = (
        select(SyncRun.source_id, func.max(SyncRun.finished_at).label("at"))
        .where(SyncRun.status == SyncStatus.SUCCESS)
        .group_by(SyncRun.source_id)
        .subquery()
    )
    stmt = (
        select(Source, SyncRun, last_ok.c.at)
        .outerjoin(latest, latest.c.source_id == Source.id)
        .outerjoin(SyncRun, SyncRun.id == latest.c.run_id)
        .outerjoin(last_ok, last_ok.c.source_id == Source.id)
        .order_by(Source.name)
    )
    counts: dict[tuple[int, str], int] = {}
    for object_type, model in OBJECT_MODELS.items():
        for source_id, n in session.execute(
            select(model.source_id, func.count()).where(model.removed_at.is_(None)).group_by(model.source_id)
        ):
            counts[(source_id, object_type)] = n
    rows = []
    for src, run, last_success in session.execute(stmt):
        rows.append(
            {
                "name": src.name,
                "type": src.type,
                "identity": src.identity,
                "hosts": counts.get((src.id, "host"), 0),
                "workloads": counts.get((src.id, "workload"), 0),
                "services": counts.get((src.id, "service"), 0),
                "last_status": run.status if run else None,
                "last_run_at": run.finished_at or run.started_at if run else None,
                "last_success_at": last_success,
                "last_error": run.error if run else None,
            }
        )
    return rows
