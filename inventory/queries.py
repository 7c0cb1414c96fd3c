"""Read-side library API behind `hosts`, `workloads`, `services` and `changes`.

Every function returns plain rows whose keys are the documented, stable JSON
output of the CLI (see README, "JSON output"). Filters are applied in SQL.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from inventory.errors import Ambiguous, NotFound, UsageError
from inventory.machines import RULE_ORDER, MatchRule
from inventory.object_ids import bare_id, objects_with_id, parse_typed_id, refuse_shared_id
from inventory.outcome import SyncStatus
from inventory.schema import OBJECT_MODELS, OBJECT_TYPES, SCHEMA, ObjectType
from inventory.storage.models import (
    Change,
    HostRow,
    MachineLink,
    ServiceMember,
    ServiceRow,
    Source,
    SyncRun,
    WorkloadRow,
)

if TYPE_CHECKING:
    from inventory.connector import KindVocabulary


@dataclass(frozen=True)
class LabelRequirement:
    """One term of a kubectl-style label selector."""

    key: str
    operator: str  # one of SELECTOR_OPERATORS
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!exists":
            return f"!{self.key}"
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({','.join(self.values)})"
        return f"{self.key}{self.operator}{self.values[0]}"


SELECTOR_OPERATORS = ("=", "!=", "in", "notin", "exists", "!exists")
_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_VALUE = r"[A-Za-z0-9._-]*"
_EQUALITY = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _selector_terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses: ``a in (x,y),b`` is two terms."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return terms


def parse_selector(selector: str) -> list[LabelRequirement]:
    """A kubectl label selector: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``;
    terms separated by commas all hold."""
    found = []
    for term in _selector_terms(selector):
        if match := _EQUALITY.match(term):
            key, operator, value = match.groups()
            found.append(LabelRequirement(key, "!=" if operator == "!=" else "=", (value,)))
        elif match := _SET.match(term):
            key, operator, listed = match.groups()
            values = tuple(v.strip() for v in listed.split(","))
            if not all(re.fullmatch(_VALUE, v) for v in values):
                raise UsageError(f"invalid label selector {selector!r}: bad value in {term.strip()!r}")
            found.append(LabelRequirement(key, operator, values))
        elif match := _EXISTS.match(term):
            negated, key = match.groups()
            found.append(LabelRequirement(key, "!exists" if negated else "exists"))
        else:
            raise UsageError(
                f"invalid label selector {selector!r}: cannot read {term.strip()!r} "
                "(use key=value, key!=value, 'key in (a,b)', 'key notin (a,b)', key or !key)"
            )
    return found


def parse_labels(selectors: Sequence[str]) -> tuple[LabelRequirement, ...]:
    """Every ``--label`` selector; all their terms must hold."""
    return tuple(requirement for selector in selectors for requirement in parse_selector(selector))


def _label_condition(model: Any, requirement: LabelRequirement) -> Any:
    # Label values are strings, so "the key is present" is "its value as a string is not NULL" on both engines.
    value = model.labels[requirement.key].as_string()
    operator, values = requirement.operator, requirement.values
    if operator == "=":
        return value == values[0]
    if operator == "in":
        return value.in_(values)
    if operator == "exists":
        return value.is_not(None)
    if operator == "!exists":
        return value.is_(None)
    # kubectl: != and notin also match objects without the key.
    return or_(value.is_(None), value != values[0] if operator == "!=" else value.not_in(values))


@dataclass(frozen=True)
class ObjectFilter:
    source: str | None = None
    kind: str | None = None  # any word of the kind vocabulary, case-insensitive: deploy, sts, vm, qemu, ...
    status: str | None = None
    name: str | None = None  # shell-style glob: * and ?
    # Selector terms (parse_labels), or a mapping of labels that must equal their values.
    labels: Sequence[LabelRequirement] | Mapping[str, str] = ()
    namespace: str | None = None  # a name or a glob
    host: str | None = None  # workloads only: host name or id
    include_removed: bool = False
    limit: int | None = None
    offset: int = 0  # rows to skip (the server's page cursors)

    def label_requirements(self) -> Sequence[LabelRequirement]:
        if isinstance(self.labels, Mapping):
            return [LabelRequirement(key, "=", (value,)) for key, value in self.labels.items()]
        return self.labels


def glob_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _glob_condition(column: Any, pattern: str) -> Any:
    if "*" in pattern or "?" in pattern:
        return column.ilike(glob_to_like(pattern), escape="\\")
    return column == pattern


@functools.cache
def kind_vocabulary() -> KindVocabulary:
    """The kind words every installed connector declares (inventory.connector.KindVocabulary)."""
    from inventory.connector import ConnectorRegistry

    return ConnectorRegistry.discover().kind_vocabulary()


def known_source(session: Session, source: str) -> str:
    """``source`` if the database has it; else a usage error naming the sources there are."""
    names = list(session.execute(select(Source.name).order_by(Source.name)).scalars())
    if source not in names:
        raise UsageError(f"unknown source {source!r} (sources: {', '.join(names) or 'none synced yet'})")
    return source


def kind_words(session: Session, model: Any, kind: str) -> frozenset[str]:
    """The stored spellings ``kind`` stands for; a word neither declared nor stored is a usage error."""
    vocabulary = kind_vocabulary()
    words = vocabulary.equivalents(kind)
    if words & vocabulary.words():
        return words
    stored = sorted(set(session.execute(select(func.lower(model.kind)).distinct()).scalars()))
    if not words & set(stored):
        what = "changes" if model is Change else f"{model.__tablename__}"
        raise UsageError(f"unknown kind {kind!r} for {what} (kinds: {', '.join(stored) or 'none synced yet'})")
    return words


def _apply_filter(session: Session, stmt: Select[Any], model: Any, flt: ObjectFilter) -> Select[Any]:
    """The WHERE clauses of a filter (the statement must join Source)."""
    if flt.source:
        stmt = stmt.where(Source.name == known_source(session, flt.source))
    if flt.kind:
        stmt = stmt.where(func.lower(model.kind).in_(sorted(kind_words(session, model, flt.kind))))
    if flt.status:
        stmt = stmt.where(func.lower(model.status) == flt.status.lower())
    if flt.name:
        stmt = stmt.where(model.name.ilike(glob_to_like(flt.name), escape="\\"))
    for requirement in flt.label_requirements():
        stmt = stmt.where(_label_condition(model, requirement))
    if flt.namespace and hasattr(model, "namespace"):
        stmt = stmt.where(_glob_condition(model.namespace, flt.namespace))
    if not flt.include_removed:
        stmt = stmt.where(model.removed_at.is_(None))
    return stmt


def _page(session: Session, model: Any, flt: ObjectFilter, sort: Sequence[Any], *where: Any) -> tuple[Any, list[Any]]:
    """One page of ids, sorted by (source name, *sort, id), and the ORDER BY that keeps that order outside.

    Sorting whole rows (JSON labels and attributes included) is what made a 1,000-row page slow:
    here the database sorts narrow tuples, and the caller joins the full rows of this page alone
    (sorting them again costs a page, not the table).
    """
    source_name = Source.name.label("source_name")
    stmt = select(model.id, source_name, *sort).join(Source, Source.id == model.source_id).where(*where)
    stmt = _apply_filter(session, stmt, model, flt).order_by(source_name, *sort, model.id)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    if flt.offset:
        stmt = stmt.offset(flt.offset)
    page = stmt.subquery()
    return page, [page.c.source_name, *(page.c[column.key] for column in sort), page.c.id]


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


def _machine_of_host() -> Any:
    """The machine a host is one view of (its lowest host id), or NULL for a host no other source sees."""
    stmt = select(func.min(MachineLink.machine_id)).where(MachineLink.host_id == HostRow.id)
    return stmt.correlate(HostRow).scalar_subquery()


def list_hosts(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    page, order = _page(session, HostRow, flt, (HostRow.name,))
    stmt = select(HostRow, page.c.source_name, _live_workloads_per_host(), _machine_of_host()).join(
        page, page.c.id == HostRow.id
    )
    return [
        object_row(SCHEMA["host"], h, src, workloads=n, machine=m)
        for h, src, n, m in session.execute(stmt.order_by(*order))
    ]


def list_workloads(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    on_hosts = []
    if flt.host:
        on_hosts.append(WorkloadRow.host_id.in_([h.id for h in _match(session, "host", flt.host, many=True)]))
    page, order = _page(session, WorkloadRow, flt, (WorkloadRow.namespace, WorkloadRow.name), *on_hosts)
    host = aliased(HostRow)
    stmt = (
        select(WorkloadRow, page.c.source_name, host.name)
        .join(page, page.c.id == WorkloadRow.id)
        .outerjoin(host, host.id == WorkloadRow.host_id)
    )
    rows = session.execute(stmt.order_by(*order))
    return [object_row(SCHEMA["workload"], w, src, host=hname) for w, src, hname in rows]


def list_services(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    page, order = _page(session, ServiceRow, flt, (ServiceRow.namespace, ServiceRow.name))
    stmt = select(ServiceRow, page.c.source_name, _live_members_per_service()).join(page, page.c.id == ServiceRow.id)
    return [object_row(SCHEMA["service"], s, src, members=n) for s, src, n in session.execute(stmt.order_by(*order))]


# Docker's short ids: 12 hex digits (or any longer prefix) of the 64-digit id.
_SHORT_ID = re.compile(r"[0-9a-f]{12,63}")


def _match(
    session: Session,
    object_type: str,
    ident: str,
    *,
    source: str | None = None,
    many: bool = False,
    shared_ids_ambiguous: bool = False,
) -> list[Any]:
    """Objects named by id, ``TYPE/ID``, ``source/kind/external_id``, ``namespace/name``, ``TYPE/NAME``,
    name, external id or a Docker short id (live ones first); ``source`` narrows to one source.
    ``shared_ids_ambiguous``: a bare number that is also the id of a live object of another type is
    ambiguous (the CLI, where one reads ids off several lists; a URL says its type)."""
    model = OBJECT_MODELS[object_type]
    base = select(model, Source.name).join(Source, Source.id == model.source_id)
    if source:
        base = base.where(Source.name == known_source(session, source))
    attempts = []
    typed = parse_typed_id(ident)
    if typed is not None:
        typed_type, typed_id = typed
        if typed_type != object_type:
            raise UsageError(f"{ident!r} is a {typed_type} id, not a {object_type} one")
        attempts.append(base.where(model.id == typed_id))
    number = bare_id(ident)
    if number is not None:
        if shared_ids_ambiguous:
            found = objects_with_id(session, number, OBJECT_TYPES)
            if any(t == object_type for t, _row, _src in found):
                refuse_shared_id(ident, found)
        attempts.append(base.where(model.id == number))
    # A source name may itself hold "/" (EKS context ARNs): the longest known name that prefixes it wins.
    for name in sorted(session.execute(select(Source.name)).scalars(), key=len, reverse=True):
        kind, sep, external_id = ident.removeprefix(f"{name}/").partition("/")
        if ident.startswith(f"{name}/") and sep:
            kinds = sorted(kind_vocabulary().equivalents(kind))
            attempts.append(
                base.where(Source.name == name, func.lower(model.kind).in_(kinds), model.external_id == external_id)
            )
    namespace, sep, name = ident.partition("/")
    if sep and hasattr(model, "namespace"):
        attempts.append(base.where(model.namespace == namespace, model.name == name))
    if sep and namespace == object_type:  # `-o name` prints host/NAME: it names the object back
        attempts.append(base.where(model.name == name))
    attempts.append(base.where(or_(model.name == ident, model.external_id == ident)))
    if _SHORT_ID.fullmatch(ident):
        attempts.append(base.where(model.external_id.like(f"{ident}%")))
    candidates: list[Any] = []
    for stmt in attempts:
        candidates = list(session.execute(stmt))
        if candidates:
            break
    live = [c for c in candidates if c[0].removed_at is None]
    candidates = live or candidates
    if not candidates:
        raise NotFound(f"no {object_type} named {ident!r}" + (f" in source {source!r}" if source else ""))
    if len(candidates) > 1 and not many:
        listed = "; ".join(
            f"id {row.id}: source {src}, kind {row.kind}"
            + (f", namespace {row.namespace}" if getattr(row, "namespace", None) else "")
            + f", external id {row.external_id}"
            for row, src in candidates[:10]
        )
        hint = "--source, namespace/name, " if hasattr(model, "namespace") else "--source, "
        raise Ambiguous(
            f"{len(candidates)} {object_type}s are named {ident!r} ({listed}); name one by id, {hint}"
            "or source/kind/external_id"
        )
    return [row for row, _src in candidates]


def _source_name(session: Session, source_id: int) -> str:
    return session.execute(select(Source.name).where(Source.id == source_id)).scalar_one()


def recent_changes(session: Session, object_type: str, object_id: int, limit: int = 10) -> list[dict[str, Any]]:
    stmt = (
        select(Change)
        .where(Change.object_type == object_type, Change.object_id == object_id)
        .order_by(Change.at.desc(), Change.id.desc())
        .limit(limit)
    )
    changes = list(session.execute(stmt).scalars())
    moves = member_moves(session, [(c.source_id, c.diff) for c in changes])
    return [{"at": c.at, "action": c.action, "diff": c.diff, **moved} for c, moved in zip(changes, moves, strict=True)]


MEMBERS_FIELD = "members"


def member_moves(session: Session, changes: Sequence[tuple[int, Any]]) -> list[dict[str, list[str]]]:
    """For each (source id, diff) of a change: the members that joined and left a service, by name.

    A service's members are stored in its diffs as references (``pod:<uid>``) that no one can read;
    each is looked up among the workloads of its source, removed ones included (a pod that left is
    usually gone). A reference no workload holds stays as it is. Changes without a members diff get {}.
    """
    wanted: set[tuple[int, str, str]] = set()
    moves: list[tuple[int, list[str], list[str]] | None] = []
    for source_id, diff in changes:
        values = (diff or {}).get(MEMBERS_FIELD)
        if not (isinstance(values, list) and len(values) == 2):
            moves.append(None)
            continue
        old, new = (set(v or ()) for v in values)
        joined, left = sorted(new - old), sorted(old - new)
        moves.append((source_id, joined, left))
        wanted.update((source_id, *ref.partition(":")[::2]) for ref in (*joined, *left))
    names: dict[tuple[int, str, str], str] = {}
    # Per (source, kind): lookups on the (source_id, kind, external_id) index; external ids alone have none,
    # and scanning the workloads (removed ones included) grew with the table.
    by_kind: dict[tuple[int, str], list[str]] = defaultdict(list)
    for source_id, kind, external_id in sorted(wanted):
        by_kind[(source_id, kind)].append(external_id)
    for (source_id, kind), external_ids in by_kind.items():
        for start in range(0, len(external_ids), 500):  # bounded IN lists
            stmt = select(WorkloadRow.external_id, WorkloadRow.name).where(
                WorkloadRow.source_id == source_id,
                WorkloadRow.kind == kind,
                WorkloadRow.external_id.in_(external_ids[start : start + 500]),
            )
            for external_id, name in session.execute(stmt):
                names[(source_id, kind, external_id)] = name

    def named(source_id: int, refs: list[str]) -> list[str]:
        return sorted(names.get((source_id, *ref.partition(":")[::2]), ref) for ref in refs)

    return [
        {"members_joined": named(m[0], m[1]), "members_left": named(m[0], m[2])} if m is not None else {} for m in moves
    ]


def _brief(row: Any, source: str | None = None) -> dict[str, Any]:
    brief = {"id": row.id, "kind": row.kind, "name": row.name, "status": row.status}
    if source is not None:
        brief["source"] = source
    if row.removed_at is not None:
        brief["removed_at"] = row.removed_at
    return brief


def show_object(
    session: Session,
    object_type: str,
    ident: str,
    *,
    source: str | None = None,
    include_removed: bool = False,
    shared_ids_ambiguous: bool = False,
) -> dict[str, Any]:
    """One object with its links; a host's workloads are its live ones (and, with ``include_removed``,
    the removed ones apart under ``removed_workloads``)."""
    (obj,) = _match(session, object_type, ident, source=source, shared_ids_ambiguous=shared_ids_ambiguous)
    source = _source_name(session, obj.source_id)
    if object_type == "host":
        workloads = list(
            session.execute(
                select(WorkloadRow).where(WorkloadRow.host_id == obj.id).order_by(WorkloadRow.name)
            ).scalars()
        )
        backing = session.get(WorkloadRow, obj.backing_workload_id) if obj.backing_workload_id else None
        machine = session.execute(select(_machine_of_host()).where(HostRow.id == obj.id)).scalar()
        live = [w for w in workloads if w.removed_at is None]
        doc = object_row(SCHEMA["host"], obj, source, workloads=len(live), machine=machine)
        doc["workloads"] = [_brief(w) for w in live]
        if include_removed:
            doc["removed_workloads"] = [_brief(w) for w in workloads if w.removed_at is not None]
        doc["backing_workload"] = _brief(backing) if backing else None
        doc["same_machine"] = same_machine(session, obj)
        doc["machine_uuid_shared_with"] = shared_machine_uuid(session, obj)
    elif object_type == "workload":
        host = session.get(HostRow, obj.host_id) if obj.host_id else None
        parent = session.get(WorkloadRow, obj.parent_id) if obj.parent_id else None
        doc = object_row(SCHEMA["workload"], obj, source, host=host.name if host else None)
        doc["host"] = _brief(host) if host else None
        doc["parent"] = _brief(parent) if parent else None
        doc["children"] = [
            _brief(c)
            for c in session.execute(
                select(WorkloadRow).where(WorkloadRow.parent_id == obj.id).order_by(WorkloadRow.name)
            ).scalars()
        ]
        doc["services"] = [
            _brief(s)
            for s in session.execute(
                select(ServiceRow)
                .join(ServiceMember, ServiceMember.service_id == ServiceRow.id)
                .where(ServiceMember.workload_id == obj.id)
            ).scalars()
        ]
    else:
        members = list(
            session.execute(
                select(WorkloadRow)
                .join(ServiceMember, ServiceMember.workload_id == WorkloadRow.id)
                .where(ServiceMember.service_id == obj.id)
                .order_by(WorkloadRow.name)
            ).scalars()
        )
        doc = object_row(SCHEMA["service"], obj, source, members=sum(1 for m in members if m.removed_at is None))
        doc["members"] = [_brief(m) for m in members]
    doc["changes"] = recent_changes(session, object_type, obj.id)
    return doc


def same_machine(session: Session, host: HostRow) -> list[dict[str, Any]]:
    """The hosts of other sources that are this machine, as the last sync linked them (inventory.machine_links),
    strongest evidence first.

    A Proxmox VM that is also a Kubernetes node and a Docker host is one machine seen three
    times; the rows stay per source (each source owns its rows), the link is stored beside them.
    """
    stmt = (
        select(HostRow, Source.name, MachineLink.rule)
        .join(MachineLink, MachineLink.other_id == HostRow.id)
        .join(Source, Source.id == HostRow.source_id)
        .where(MachineLink.host_id == host.id)
    )
    found = [
        (RULE_ORDER[MatchRule(rule)], source, other.id, {**_brief(other, source), "matched_by": rule})
        for other, source, rule in session.execute(stmt)
    ]
    return [row for *_, row in sorted(found, key=lambda f: f[:3])]


def shared_machine_uuid(session: Session, host: HostRow) -> list[dict[str, Any]]:
    """The other live hosts of this host's source with its machine uuid: while there are any, the uuid links nothing."""
    if not host.machine_uuid or host.removed_at is not None:
        return []
    stmt = select(HostRow).where(
        HostRow.source_id == host.source_id,
        HostRow.id != host.id,
        HostRow.removed_at.is_(None),
        func.lower(HostRow.machine_uuid) == host.machine_uuid.lower(),
    )
    return [_brief(other) for other in session.execute(stmt.order_by(HostRow.name, HostRow.id)).scalars()]


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
    # Changes keep no namespace of their own: the object's row has it (rows are kept when objects go away).
    workload, service = aliased(WorkloadRow), aliased(ServiceRow)
    namespace = func.coalesce(workload.namespace, service.namespace)
    stmt = (
        select(Change, Source.name, namespace)
        .join(Source, Source.id == Change.source_id)
        .outerjoin(workload, and_(Change.object_type == "workload", workload.id == Change.object_id))
        .outerjoin(service, and_(Change.object_type == "service", service.id == Change.object_id))
        .where(Change.at >= since)
    )
    if until is not None:
        stmt = stmt.where(Change.at < until)
    if source:
        stmt = stmt.where(Source.name == known_source(session, source))
    if kind:
        stmt = stmt.where(func.lower(Change.kind).in_(sorted(kind_words(session, Change, kind))))
    if object_type:
        stmt = stmt.where(Change.object_type == object_type)
    if action:
        stmt = stmt.where(Change.action == action)
    stmt = stmt.order_by(Change.at, Change.id)
    if limit:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    found = list(session.execute(stmt))
    moves = member_moves(session, [(c.source_id, c.diff) for c, _src, _ns in found])
    return [
        {
            "id": c.id,
            "at": c.at,
            "source": src,
            "action": c.action,
            "object_type": c.object_type,
            "object_id": c.object_id,
            "kind": c.kind,
            "namespace": ns,
            "external_id": c.external_id,
            "name": c.name,
            "diff": c.diff,
            "fields": ",".join(c.diff) if c.diff else "",
            "members_joined": moved.get("members_joined"),
            "members_left": moved.get("members_left"),
        }
        for (c, src, ns), moved in zip(found, moves, strict=True)
    ]


def list_sources(session: Session) -> list[dict[str, Any]]:
    """Every source with its latest run (its status, error and warnings) and its live object counts."""
    latest = select(SyncRun.source_id, func.max(SyncRun.id).label("run_id")).group_by(SyncRun.source_id).subquery()
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
                "warnings": run_warnings(src.name, run.warnings if run else None),
            }
        )
    return rows


def run_warnings(source: str, stored: str | None) -> list[str]:
    """A run's warnings (``sync_runs.warnings``, one a line) without the "source 'x': " each line starts with."""
    prefix = f"source {source!r}: "
    return [line.removeprefix(prefix) for line in (stored or "").splitlines() if line.strip()]


def object_names(session: Session, object_type: str, prefix: str, limit: int = 200) -> list[str]:
    """The distinct names of live objects of a type that start with ``prefix`` (shell completion)."""
    model = OBJECT_MODELS[object_type]
    stmt = (
        select(model.name)
        .where(model.removed_at.is_(None), model.name.like(glob_to_like(prefix) + "%", escape="\\"))
        .distinct()
        .order_by(model.name)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())
