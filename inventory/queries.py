"""Read-side library API behind `hosts`, `workloads`, `services` and `changes`.

Every function returns plain rows whose keys are the documented, stable JSON
output of the CLI (see README, "JSON output"). Filters are applied in SQL.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from inventory.cause import describe as describe_cause
from inventory.errors import Ambiguous, NotFound, UsageError
from inventory.machines import RULE_ORDER, MatchRule
from inventory.object_ids import bare_id, objects_with_id, parse_typed_id, refuse_shared_id
from inventory.outcome import SyncStatus
from inventory.schema import OBJECT_TYPES, SCHEMA, ObjectType
from inventory.storage.models import (
    OBJECT_MODELS,
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
    # Sort keys before the default order (source, [namespace,] name, id); see parse_sort.
    sort: Sequence[SortKey] = ()
    # Keyset paging: the order keys of the last row of the previous page (order_keys); rows after it.
    after: Sequence[Any] | None = None

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
        what = "changes" if model is Change else model.__table__.description
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


@dataclass(frozen=True)
class SortKey:
    """One key of a ``sort=``: an output field, ascending unless ``descending``."""

    field: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.field}" if self.descending else self.field


def parse_sort(text: str | None, sortable: Sequence[str]) -> tuple[SortKey, ...]:
    """``-name,status``: fields among ``sortable``, ``-`` for descending; anything else is a usage error."""
    keys: list[SortKey] = []
    for word in (w.strip() for w in (text or "").split(",")):
        if not word:
            continue
        name = word.removeprefix("-")
        if name not in sortable:
            raise UsageError(f"cannot sort by {name!r} (sortable: {', '.join(sortable)})")
        if any(k.field == name for k in keys):
            raise UsageError(f"sort names {name!r} twice")
        keys.append(SortKey(name, word.startswith("-")))
    return tuple(keys)


# The default order of each list, after any sort= keys; the row id last makes every order total.
DEFAULT_ORDER = {
    "host": ("source", "name"),
    "workload": ("source", "namespace", "name"),
    "service": ("source", "namespace", "name"),
    "change": ("at",),
}


def order_fields(row_type: str, sort: Sequence[SortKey]) -> tuple[SortKey, ...]:
    """The whole order of a list: the asked keys, then the default ones not asked for, then the id.

    The id runs the way of the key before it: changes newest first (``-at``) come newest first within one
    sync's time as well, which is also the order of the (at, id) index that serves them.
    """
    asked = {k.field for k in sort}
    keys = [*sort, *(SortKey(f) for f in DEFAULT_ORDER[row_type] if f not in asked)]
    if "id" not in asked:
        keys.append(SortKey("id", keys[-1].descending if keys else False))
    return tuple(keys)


def order_keys(row: Mapping[str, Any], order: Sequence[SortKey]) -> list[Any]:
    """The values of a listed row's order keys: the position a next page starts after."""
    return [row[k.field] for k in order]


def _keyset(keys: Sequence[tuple[Any, bool, bool]], position: Sequence[Any] | None) -> tuple[list[Any], Any]:
    """ORDER BY terms over ``keys`` (expression, descending, nullable), and the condition "after ``position``".

    Empty values sort last whatever the direction, on both engines (SQLite would put NULL first):
    a nullable key orders by ``expr IS NULL`` before the expression itself. The condition is the
    lexicographic "greater than" spelled out (a OR (a= AND b) ...), which both engines read the same.
    """
    order_by: list[Any] = []
    for expression, descending, nullable in keys:
        if nullable:
            order_by.append(expression.is_(None))
        order_by.append(expression.desc() if descending else expression)
    if position is None:
        return order_by, None
    if len(position) != len(keys):
        raise UsageError("the cursor belongs to a list in another order; start again without it")
    after: list[Any] = []
    equal: list[Any] = []
    for (expression, descending, nullable), value in zip(keys, position, strict=True):
        if value is None:
            # Nothing comes after an empty value but other empty values: only "equal" continues.
            equal.append(expression.is_(None))
            continue
        beyond = expression < value if descending else expression > value
        if nullable:
            beyond = or_(expression.is_(None), beyond)
        after.append(and_(*equal, beyond))
        equal.append(expression == value)
    return order_by, or_(*after) if after else false()


def _object_key(model: Any, name: str) -> tuple[Any, bool]:
    if name == "source":
        return Source.name, False
    column = getattr(model, name)
    return column, bool(column.property.columns[0].nullable)


def _page(session: Session, model: Any, flt: ObjectFilter, row_type: str, *where: Any) -> tuple[Any, list[Any]]:
    """One page of ids in the list's order (order_fields), and the ORDER BY that keeps that order outside.

    Sorting whole rows (JSON labels and attributes included) is what made a 1,000-row page slow:
    here the database sorts narrow tuples, and the caller joins the full rows of this page alone
    (sorting them again costs a page, not the table). A next page starts after the previous
    page's last row (keyset), not after a count of rows: rows a sync writes meanwhile shift no page,
    and the last page costs what the first does.
    """
    keys = []
    for key in order_fields(row_type, flt.sort):
        expression, nullable = _object_key(model, key.field)
        keys.append((expression, key.descending, nullable))
    labelled = [expression.label(f"k{i}") for i, (expression, _d, _n) in enumerate(keys)]
    stmt = select(model.id.label("row_id"), *labelled).join(Source, Source.id == model.source_id).where(*where)
    stmt = _apply_filter(session, stmt, model, flt)
    order_by, after = _keyset(keys, flt.after)
    if after is not None:
        stmt = stmt.where(after)
    stmt = stmt.order_by(*order_by)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    page = stmt.subquery()
    outer = [(page.c[f"k{i}"], descending, nullable) for i, (_e, descending, nullable) in enumerate(keys)]
    return page, _keyset(outer, None)[0]


def count_objects(session: Session, object_type: str, flt: ObjectFilter = ObjectFilter()) -> int:
    """How many objects the filter holds, whatever the page: one count over the same WHERE."""
    model = OBJECT_MODELS[object_type]
    stmt = select(func.count()).select_from(model)
    if flt.source:  # the only filter on the source's row: without it, the count reads one table
        stmt = stmt.join(Source, Source.id == model.source_id)
    stmt = _apply_filter(session, stmt, model, flt).where(*_host_condition(session, flt))
    return int(session.execute(stmt).scalar_one())


def _host_condition(session: Session, flt: ObjectFilter) -> list[Any]:
    if not flt.host:
        return []
    return [WorkloadRow.host_id.in_([h.id for h in _match(session, "host", flt.host, many=True)])]


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


def _listed(
    session: Session, object_type: str, page: Any, order: list[Any], computed: Mapping[str, Any], *outer: Any
) -> list[dict[str, Any]]:
    """The full rows of a page, as ``object_row`` makes them, selected as plain columns in output order.

    Plain rows, not ORM objects: building a thousand mapped instances cost more than the query itself.
    ``outer``: (target, on) pairs outer-joined for the computed values.
    """
    object_type_ = SCHEMA[object_type]
    model = OBJECT_MODELS[object_type]
    table = object_type_.table
    values = {"source": Source.name, **computed}
    columns = [
        (values[key] if key in values else table.c[key]).label(f"out_{index}")
        for index, key in enumerate(object_type_.output_keys)
    ]
    stmt = select(*columns).join(page, page.c.row_id == model.id).join(Source, Source.id == model.source_id)
    for target, on in outer:
        stmt = stmt.outerjoin(target, on)
    keys = object_type_.output_keys
    return [dict(zip(keys, row, strict=True)) for row in session.execute(stmt.order_by(*order))]


def list_hosts(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    page, order = _page(session, HostRow, flt, "host")
    computed = {"workloads": _live_workloads_per_host(), "machine": _machine_of_host()}
    return _listed(session, "host", page, order, computed)


def list_workloads(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    page, order = _page(session, WorkloadRow, flt, "workload", *_host_condition(session, flt))
    host = aliased(HostRow)
    return _listed(session, "workload", page, order, {"host": host.name}, (host, host.id == WorkloadRow.host_id))


def list_services(session: Session, flt: ObjectFilter = ObjectFilter()) -> list[dict[str, Any]]:
    page, order = _page(session, ServiceRow, flt, "service")
    return _listed(session, "service", page, order, {"members": _live_members_per_service()})


# Docker's short ids: 12 hex digits (or any longer prefix) of the 64-digit id.
_SHORT_ID = re.compile(r"[0-9a-f]{12,63}")


def _match(session: Session, object_type: str, ident: str, **options: Any) -> list[Any]:
    """Objects named by id, ``TYPE/ID``, ``source/kind/external_id``, ``namespace/name``, ``TYPE/NAME``,
    name, external id or a Docker short id (live ones first); ``source`` narrows to one source.
    ``shared_ids_ambiguous``: a bare number that is also the id of a live object of another type is
    ambiguous (the CLI, where one reads ids off several lists; a URL says its type). ``many``: several
    objects may answer."""
    return [row for row, _src in _match_in_source(session, object_type, ident, **options)]


def _match_in_source(
    session: Session,
    object_type: str,
    ident: str,
    *,
    source: str | None = None,
    many: bool = False,
    shared_ids_ambiguous: bool = False,
) -> list[tuple[Any, str]]:
    """``_match``'s objects, each with its source's name."""
    model = OBJECT_MODELS[object_type]
    base = select(model, Source.name).join(Source, Source.id == model.source_id)
    if source:
        base = base.where(Source.name == known_source(session, source))
    candidates: list[Any] = []
    # Tried in order, each built only when the one before found nothing: an id costs one statement.
    for stmt in _match_attempts(session, model, object_type, ident, base, shared_ids_ambiguous):
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
    return [(row, src) for row, src in candidates]


def _match_attempts(
    session: Session, model: Any, object_type: str, ident: str, base: Any, shared_ids_ambiguous: bool
) -> Iterator[Any]:
    """The statements that could name ``ident``, most specific first."""
    typed = parse_typed_id(ident)
    if typed is not None:
        typed_type, typed_id = typed
        if typed_type != object_type:
            raise UsageError(f"{ident!r} is a {typed_type} id, not a {object_type} one")
        yield base.where(model.id == typed_id)
    number = bare_id(ident)
    if number is not None:
        if shared_ids_ambiguous:
            found = objects_with_id(session, number, OBJECT_TYPES)
            if any(t == object_type for t, _row, _src in found):
                refuse_shared_id(ident, found)
        yield base.where(model.id == number)
    # A source name may itself hold "/" (EKS context ARNs): the longest known name that prefixes it wins.
    if "/" in ident:
        for name in sorted(session.execute(select(Source.name)).scalars(), key=len, reverse=True):
            kind, sep, external_id = ident.removeprefix(f"{name}/").partition("/")
            if ident.startswith(f"{name}/") and sep:
                kinds = sorted(kind_vocabulary().equivalents(kind))
                yield base.where(
                    Source.name == name, func.lower(model.kind).in_(kinds), model.external_id == external_id
                )
    namespace, sep, name = ident.partition("/")
    if sep and hasattr(model, "namespace"):
        yield base.where(model.namespace == namespace, model.name == name)
    if sep and namespace == object_type:  # `-o name` prints host/NAME: it names the object back
        yield base.where(model.name == name)
    yield base.where(or_(model.name == ident, model.external_id == ident))
    if _SHORT_ID.fullmatch(ident):
        yield base.where(model.external_id.like(f"{ident}%"))


def recent_changes(session: Session, object_type: str, object_id: int, limit: int = 10) -> list[dict[str, Any]]:
    stmt = (
        select(Change)
        .where(Change.object_type == object_type, Change.object_id == object_id)
        .order_by(Change.at.desc(), Change.id.desc())
        .limit(limit)
    )
    changes = list(session.execute(stmt).scalars())
    moves = member_moves(session, [(c.source_id, c.diff) for c in changes])
    return [
        {"id": c.id, "at": c.at, "action": c.action, "diff": c.diff, "by": describe_cause(c.cause), **moved}
        for c, moved in zip(changes, moves, strict=True)
    ]


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


def _brief_of(model: Any) -> Select[Any]:
    """The columns ``_brief`` reads, alone: a linked object's attributes and labels (kilobytes of JSON a pod)
    are neither fetched nor decoded."""
    return select(model.id, model.kind, model.name, model.status, model.removed_at)


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
    ((obj, source),) = _match_in_source(
        session, object_type, ident, source=source, shared_ids_ambiguous=shared_ids_ambiguous
    )
    if object_type == "host":
        workloads = list(
            session.execute(_brief_of(WorkloadRow).where(WorkloadRow.host_id == obj.id).order_by(WorkloadRow.name))
        )
        backing = (
            session.execute(_brief_of(WorkloadRow).where(WorkloadRow.id == obj.backing_workload_id)).first()
            if obj.backing_workload_id
            else None
        )
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
        host = session.execute(_brief_of(HostRow).where(HostRow.id == obj.host_id)).first() if obj.host_id else None
        parent = (
            session.execute(_brief_of(WorkloadRow).where(WorkloadRow.id == obj.parent_id)).first()
            if obj.parent_id
            else None
        )
        doc = object_row(SCHEMA["workload"], obj, source, host=host.name if host else None)
        doc["host"] = _brief(host) if host else None
        doc["parent"] = _brief(parent) if parent else None
        doc["children"] = [
            _brief(c)
            for c in session.execute(
                _brief_of(WorkloadRow).where(WorkloadRow.parent_id == obj.id).order_by(WorkloadRow.name)
            )
        ]
        doc["services"] = [
            _brief(s)
            for s in session.execute(
                _brief_of(ServiceRow)
                .join(ServiceMember, ServiceMember.service_id == ServiceRow.id)
                .where(ServiceMember.workload_id == obj.id)
            )
        ]
    else:
        members = list(
            session.execute(
                _brief_of(WorkloadRow)
                .join(ServiceMember, ServiceMember.workload_id == WorkloadRow.id)
                .where(ServiceMember.service_id == obj.id)
                .order_by(WorkloadRow.name)
            )
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
        _brief_of(HostRow)
        .add_columns(Source.name.label("source"), MachineLink.rule)
        .join(MachineLink, MachineLink.other_id == HostRow.id)
        .join(Source, Source.id == HostRow.source_id)
        .where(MachineLink.host_id == host.id)
    )
    found = [
        (RULE_ORDER[MatchRule(row.rule)], row.source, row.id, {**_brief(row, row.source), "matched_by": row.rule})
        for row in session.execute(stmt)
    ]
    return [row for *_, row in sorted(found, key=lambda f: f[:3])]


def shared_machine_uuid(session: Session, host: HostRow) -> list[dict[str, Any]]:
    """The other live hosts of this host's source with its machine uuid: while there are any, the uuid links nothing."""
    if not host.machine_uuid or host.removed_at is not None:
        return []
    stmt = _brief_of(HostRow).where(
        HostRow.source_id == host.source_id,
        HostRow.id != host.id,
        HostRow.removed_at.is_(None),
        func.lower(HostRow.machine_uuid) == host.machine_uuid.lower(),
    )
    return [_brief(other) for other in session.execute(stmt.order_by(HostRow.name, HostRow.id))]


# The keys of a listed change in output order: a column of the changes table (None: its type is the
# column's), or a key computed here with its type. A column added to the table is one line here.
CHANGE_OUTPUT: tuple[tuple[str, Any], ...] = (
    ("id", None),
    ("at", None),
    ("source", str),
    ("action", None),
    ("object_type", None),
    ("object_id", None),
    ("kind", None),
    ("namespace", str | None),
    ("external_id", None),
    ("name", None),
    ("diff", None),
    ("fields", str),
    # Who or what made the change (inventory/cause.py's stored shape), and the same in one line.
    ("cause", dict[str, Any] | None),
    ("by", str),
    ("members_joined", list[str] | None),
    ("members_left", list[str] | None),
)
CHANGE_KEYS = tuple(key for key, _type in CHANGE_OUTPUT)


@dataclass(frozen=True)
class ChangeFilter:
    since: datetime
    until: datetime | None = None
    source: str | None = None
    kind: str | None = None
    object_type: str | None = None
    action: str | None = None
    limit: int | None = None
    sort: Sequence[SortKey] = ()
    after: Sequence[Any] | None = None  # keyset paging, as ObjectFilter.after
    # Following the table (inventory/change_feed.py): rows above an id, or these ids; one object's rows.
    after_id: int | None = None
    ids: Sequence[int] | None = None
    object_id: int | None = None
    offset: int = 0  # the web's numbered pages


def _change_key(name: str) -> tuple[Any, bool]:
    if name == "source":
        return Source.name, False
    column = getattr(Change, name)
    return column, bool(column.property.columns[0].nullable)


def _change_where(session: Session, stmt: Select[Any], flt: ChangeFilter) -> Select[Any]:
    stmt = stmt.where(Change.at >= flt.since)
    if flt.until is not None:
        stmt = stmt.where(Change.at < flt.until)
    if flt.source:
        stmt = stmt.where(Source.name == known_source(session, flt.source))
    if flt.kind:
        stmt = stmt.where(func.lower(Change.kind).in_(sorted(kind_words(session, Change, flt.kind))))
    if flt.object_type:
        stmt = stmt.where(Change.object_type == flt.object_type)
    if flt.action:
        stmt = stmt.where(Change.action == flt.action)
    if flt.after_id is not None:
        stmt = stmt.where(Change.id > flt.after_id)
    if flt.ids is not None:
        stmt = stmt.where(Change.id.in_(flt.ids))
    if flt.object_id is not None:
        stmt = stmt.where(Change.object_id == flt.object_id)
    return stmt


def count_changes(session: Session, flt: ChangeFilter) -> int:
    stmt = select(func.count()).select_from(Change)
    if flt.source:  # as count_objects: the source's row only to filter by its name
        stmt = stmt.join(Source, Source.id == Change.source_id)
    return int(session.execute(_change_where(session, stmt, flt)).scalar_one())


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
    after_id: int | None = None,
    ids: Sequence[int] | None = None,
    object_id: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Changes from ``since`` (oldest first, or ``newest_first``); ``after_id``: only rows with a greater id (a
    resumed stream); ``ids``: only these (a feed's new rows); ``object_id``: one object's (with ``object_type``)."""
    sort = (SortKey("at", descending=True), SortKey("id", descending=True)) if newest_first else ()
    flt = ChangeFilter(
        since,
        until,
        source,
        kind,
        object_type,
        action,
        limit,
        sort=sort,
        after_id=after_id,
        ids=ids,
        object_id=object_id,
        offset=offset,
    )
    return changes_page(session, flt)


def changes_page(session: Session, flt: ChangeFilter) -> list[dict[str, Any]]:
    """Changes in the filter's order (oldest first unless sorted), starting after ``flt.after``."""
    # Changes keep no namespace of their own: the object's row has it (rows are kept when objects go away).
    workload, service = aliased(WorkloadRow), aliased(ServiceRow)
    namespace = func.coalesce(workload.namespace, service.namespace)
    stmt: Any = (
        select(Change, Source.name, namespace)
        .join(Source, Source.id == Change.source_id)
        .outerjoin(workload, and_(Change.object_type == "workload", workload.id == Change.object_id))
        .outerjoin(service, and_(Change.object_type == "service", service.id == Change.object_id))
    )
    stmt = _change_where(session, stmt, flt)
    keys = [(*_change_key(k.field), k.descending) for k in order_fields("change", flt.sort)]
    order_by, after = _keyset([(e, d, n) for e, n, d in keys], flt.after)
    if after is not None:
        stmt = stmt.where(after)
    stmt = stmt.order_by(*order_by)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    if flt.offset:
        stmt = stmt.offset(flt.offset)
    found: list[Any] = list(session.execute(stmt))
    moves = member_moves(session, [(c.source_id, c.diff) for c, _src, _ns in found])
    rows = []
    for (c, src, ns), moved in zip(found, moves, strict=True):
        computed = {
            "source": src,
            "namespace": ns,
            "fields": ",".join(c.diff) if c.diff else "",
            "cause": c.cause,
            "by": describe_cause(c.cause),
            "members_joined": moved.get("members_joined"),
            "members_left": moved.get("members_left"),
        }
        rows.append({key: computed[key] if key in computed else getattr(c, key) for key in CHANGE_KEYS})
    return rows


def source_names(session: Session) -> list[str]:
    """Every source's name, sorted (what a filter's choices list)."""
    return list(session.execute(select(Source.name).order_by(Source.name)).scalars())


def list_sources(session: Session, object_counts: Mapping[tuple[int, str], int] | None = None) -> list[dict[str, Any]]:
    """Every source with its latest run (its status, error and warnings) and its live object counts.

    ``object_counts`` ({(source id, object type): live objects}) spares counting again a caller that has.
    """
    latest = select(SyncRun.source_id, func.max(SyncRun.id).label("run_id")).group_by(SyncRun.source_id).subquery()
    # A watch session (inventory/live.py) is fresh as of its last beat (its finished_at).
    last_ok = (
        select(SyncRun.source_id, func.max(SyncRun.finished_at).label("at"))
        .where(SyncRun.status.in_([SyncStatus.SUCCESS, SyncStatus.WATCHING]))
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
    counts = dict(object_counts) if object_counts is not None else _live_counts(session)
    watching = _live_sessions(session)
    rows = []
    for src, run, last_success in session.execute(stmt):
        live = watching.get(src.id)
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
                # Followed live: since when the current watch session runs (None: polled, or its watch died).
                "watching_since": live[0] if live else None,
                # The last periodic full sync of a source followed live: objects its stream had missed.
                "drift_repaired": live[1] if live else None,
            }
        )
    return rows


def _live_counts(session: Session) -> dict[tuple[int, str], int]:
    """{(source id, object type): live objects}."""
    counts: dict[tuple[int, str], int] = {}
    for object_type, model in OBJECT_MODELS.items():
        for source_id, n in session.execute(
            select(model.source_id, func.count()).where(model.removed_at.is_(None)).group_by(model.source_id)
        ):
            counts[(source_id, object_type)] = n
    return counts


def _live_sessions(session: Session) -> dict[int, tuple[datetime, int | None]]:
    """Per source whose watch session beats (inventory/live.py): since when, and the drift its last full sync found."""
    from inventory.observe import WATCH_ALIVE_SECONDS
    from inventory.timeutil import utcnow

    alive_after = utcnow() - timedelta(seconds=WATCH_ALIVE_SECONDS)
    found: dict[int, tuple[datetime, int | None]] = {}
    for run in session.execute(
        select(SyncRun).where(SyncRun.status == SyncStatus.WATCHING, SyncRun.finished_at >= alive_after)
    ).scalars():
        found[run.source_id] = (run.started_at, None)
    if not found:
        return found
    drift = session.execute(
        select(SyncRun.source_id, SyncRun.drift_repaired)
        .where(SyncRun.source_id.in_(list(found)), SyncRun.drift_repaired.is_not(None))
        .order_by(SyncRun.id)
    ).all()
    for source_id, repaired in drift:  # in run order: the last one stays
        found[source_id] = (found[source_id][0], repaired)
    return found


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
