"""Where "what is there now" meets "what we knew": the diff of a snapshot against the store.

Pure logic over records, the object-type table (inventory.schema) and the narrow
``Store`` protocol. It creates new objects, updates changed ones (a content hash
decides: an unchanged object costs no write) and revives ones that come back; it
marks removed a vanished object only where the snapshot read the object's scope
completely (``Snapshot.removes``): missing is not the same as gone. A field a record
could not read (``unread``) keeps its stored value and marks the object's details
stale, without a change. Each created, updated, removed or revived object gets one
change record with the changed fields old -> new.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from inventory.records import NO_FIELDS, Record, Ref, Snapshot, record_hash
from inventory.sanitize import Sanitizer
from inventory.schema import Column, Computed, Link, Members, ObjectType
from inventory.storage.protocol import ChangeRecord, Key, ObjectWrite, SourceState, Store, WritePlan
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass
class ReconcileResult:
    created: int = 0
    updated: int = 0
    revived: int = 0
    removed: int = 0
    unchanged: int = 0
    # Why removals were withheld although the snapshot claimed to be complete.
    withheld: list[str] = field(default_factory=list)
    duplicates: int = 0
    # Objects whose values had to be cleaned to be stored (NUL characters, over-long strings).
    warnings: list[str] = field(default_factory=list)
    unresolved_links: int = 0
    statements: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.revived + self.removed


def _records(snapshot: Snapshot, object_type: str) -> Sequence[Record]:
    by_type: dict[str, Sequence[Record]] = {
        "host": snapshot.hosts,
        "workload": snapshot.workloads,
        "service": snapshot.services,
    }
    return by_type[object_type]


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for every field that differs; labels and attributes key by key."""
    changes: dict[str, list[Any]] = {}
    for name in new.keys() | old.keys():
        before, after = old.get(name), new.get(name)
        if name in ("labels", "attributes") and isinstance(before, Mapping) and isinstance(after, Mapping):
            for key in before.keys() | after.keys():
                if before.get(key) != after.get(key):
                    changes[f"{name}.{key}"] = [before.get(key), after.get(key)]
        elif before != after:
            changes[name] = [before, after]
    return dict(sorted(changes.items()))


class _Resolver:
    """Maps (kind, external_id) to row ids, existing and newly allocated, per object type."""

    def __init__(self, state: SourceState) -> None:
        self.ids: dict[str, dict[Key, int]] = {
            t: {k: o.id for k, o in objects.items()} for t, objects in state.objects.items()
        }
        self.unresolved = 0

    def resolve(self, object_type: str, ref: Ref | None) -> int | None:
        if ref is None:
            return None
        found = self.ids[object_type].get((ref.kind, ref.external_id))
        if found is None:
            self.unresolved += 1
        return found


def reconcile(
    snapshot: Snapshot,
    store: Store,
    *,
    source_id: int,
    run_id: int,
    allow_empty: bool = False,
    now: datetime | None = None,
) -> ReconcileResult:
    # Tens of thousands of short-lived dicts would trigger repeated full collections for
    # nothing (none of them form cycles); collection resumes when reconcile returns.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        plan = WritePlan(source_id=source_id, run_id=run_id, now=now or utcnow())
        return _reconcile(snapshot, store, plan, allow_empty=allow_empty)
    finally:
        if gc_was_enabled:
            gc.enable()


def _reconcile(snapshot: Snapshot, store: Store, plan: WritePlan, *, allow_empty: bool) -> ReconcileResult:
    result = ReconcileResult()
    statements_before = store.statements
    types = list(store.schema)
    # A delta names a few objects of a source that may hold thousands: only those are looked up.
    named = _named_keys(snapshot, types) if snapshot.delta and not snapshot.scopes else None
    state = store.load_state(plan.source_id, named)
    causes = {key: cause.to_json() for key, cause in snapshot.causes.items()}

    records: dict[str, dict[Key, Record]] = {}
    sanitizer = Sanitizer(store.schema)
    for object_type in types:
        unique: dict[Key, Record] = {}
        for record in _records(snapshot, object_type.name):
            record, warning = sanitizer.clean(object_type, record)
            if warning is not None:
                result.warnings.append(warning)
            key = (record.kind, record.external_id)
            if key in unique:
                result.duplicates += 1
                continue
            if (object_type.name, *key) in snapshot.kept and not _live(state.objects[object_type.name].get(key)):
                continue  # its existence is unknown: updated if it lives, never created or revived
            unique[key] = record
        records[object_type.name] = unique
    if result.duplicates:
        log.warning("snapshot listed %d objects twice; kept the first of each", result.duplicates)

    # The state holds live objects only: a listed object that is not live may be a removed one coming back
    # (revived under its old id), and so may the target of a link (after unread values are filled in).
    _add_removed(store, state, plan.source_id, {t.name: records[t.name].keys() for t in types})
    stale_keys = _keep_unread_values(store, state, records)
    _add_removed(store, state, plan.source_id, _link_targets(types, records))

    resolver = _Resolver(state)
    for object_type in types:
        known = state.objects[object_type.name]
        new_keys = [k for k in records[object_type.name] if k not in known]
        for key, new_id in zip(new_keys, store.allocate_ids(object_type.name, len(new_keys)), strict=True):
            resolver.ids[object_type.name][key] = new_id

    diff_wanted: dict[str, list[tuple[ObjectWrite, str]]] = {t.name: [] for t in types}
    for object_type in types:
        known = state.objects[object_type.name]
        ids = resolver.ids[object_type.name]
        for key, record in records[object_type.name].items():
            record, links, member_ids = _resolve_links(object_type, record, resolver)
            digest = record_hash(record)
            stored = known.get(key)
            stale = key in stale_keys[object_type.name]
            if stored is not None and stale != stored.stale:
                (plan.stale if stale else plan.fresh)[object_type.name].append(stored.id)
            if stored is not None and not stored.removed and stored.content_hash == digest:
                result.unchanged += 1
                continue
            fields = object_type.canonical_fields(record)
            write = ObjectWrite(object_type.name, ids[key], record, fields, digest, links, member_ids, stale=stale)
            if stored is None:
                plan.creates.append(write)
                plan.changes.append(_change(write, "created", cause=causes.get((object_type.name, *key))))
                result.created += 1
                continue
            plan.updates.append(write)
            diff_wanted[object_type.name].append((write, "revived" if stored.removed else "updated"))
            if stored.removed:
                result.revived += 1
            else:
                result.updated += 1

    for object_type_name, wanted in diff_wanted.items():
        if not wanted:
            continue
        old_fields = store.load_fields(object_type_name, [write.id for write, _ in wanted])
        for write, action in wanted:
            diff = diff_fields(old_fields.get(write.id, {}), write.fields)
            cause = causes.get((object_type_name, write.record.kind, write.record.external_id))
            plan.changes.append(_change(write, action, diff, cause))

    for object_type in types:
        name = object_type.name
        live = [(k, o) for k, o in state.objects[name].items() if not o.removed]
        # Deleted, as the source said of each object: no scope or emptiness guard stands in the way.
        said_gone = [(k, o) for k, o in live if (name, *k) in snapshot.deleted and k not in records[name]]
        for (kind, external_id), stored in said_gone:
            plan.removals[name].append(stored.id)
            cause = causes.get((name, kind, external_id))
            plan.changes.append(ChangeRecord(name, stored.id, kind, external_id, stored.name, "removed", cause=cause))
        result.removed += len(said_gone)
        if said_gone:
            live = [(k, o) for k, o in live if (name, *k) not in snapshot.deleted]
        gone = [
            (k, o)
            for k, o in live
            if k not in records[name] and (name, *k) not in snapshot.kept and snapshot.removes(name, k[0], o.namespace)
        ]
        if not gone:
            continue
        if not records[name] and not allow_empty:
            result.withheld.append(
                f"the source answered with no {object_type.plural} at all, but {len(live)} were known; "
                "nothing was removed (pass --allow-empty if they really are gone)"
            )
            continue
        for (kind, external_id), stored in gone:
            plan.removals[name].append(stored.id)
            cause = causes.get((name, kind, external_id))
            plan.changes.append(ChangeRecord(name, stored.id, kind, external_id, stored.name, "removed", cause=cause))
        result.removed += len(gone)

    store.apply(plan)
    result.unresolved_links = resolver.unresolved
    result.statements = store.statements - statements_before
    return result


def _live(stored: Any) -> bool:
    return stored is not None and not stored.removed


def _add_removed(store: Store, state: SourceState, source_id: int, wanted: Mapping[str, Iterable[Key]]) -> None:
    """Add to ``state`` the removed objects among ``wanted`` (keys it already holds are not asked for)."""
    missing = {name: [k for k in keys if k not in state.objects[name]] for name, keys in wanted.items()}
    missing = {name: keys for name, keys in missing.items() if keys}
    if missing:
        for name, found in store.load_removed(source_id, missing).items():
            state.objects[name].update(found)


def _link_targets(types: Sequence[ObjectType], records: dict[str, dict[Key, Record]]) -> dict[str, set[Key]]:
    """The keys the records' links and members point at, per target object type."""
    targets: dict[str, set[Key]] = {t.name: set() for t in types}
    for object_type in types:
        for record in records[object_type.name].values():
            for link in object_type.links:
                ref = getattr(record, link.field)
                if ref is not None:
                    targets[link.target].add((ref.kind, ref.external_id))
            if object_type.members is not None:
                targets[object_type.members.target].update(
                    (ref.kind, ref.external_id) for ref in getattr(record, object_type.members.field)
                )
    return targets


def _keep_unread_values(store: Store, state: SourceState, records: dict[str, dict[Key, Record]]) -> dict[str, set[Key]]:
    """Give each unread field of a known object its stored value, in place; the keys of objects with unread fields.

    One ``load_fields`` per object type, for the objects that have unread fields only. A new
    object keeps what its record says (there is nothing older to keep).
    """
    stale: dict[str, set[Key]] = {}
    for object_type in store.schema:
        name = object_type.name
        unread = {key: record for key, record in records[name].items() if record.unread}
        stale[name] = set(unread)
        if not unread:
            continue
        known = state.objects[name]
        stored_ids = {key: known[key].id for key in unread if key in known}
        stored_fields = store.load_fields(name, list(stored_ids.values())) if stored_ids else {}
        for key, record in unread.items():
            fields = stored_fields.get(stored_ids.get(key, -1))
            records[name][key] = _with_stored_values(object_type, record, fields)
    return stale


def _with_stored_values(object_type: ObjectType, record: Record, stored: Mapping[str, Any] | None) -> Record:
    """The record with each of its unread fields (or label/attribute keys) holding the stored value."""
    changed: dict[str, Any] = {"unread": NO_FIELDS}
    if stored is not None:
        specs = {
            spec.name if isinstance(spec, Column) else spec.field: spec
            for spec in object_type.fields
            if not isinstance(spec, Computed)
        }
        for name in sorted(record.unread):
            field_name, _, key = name.partition(".")
            spec = specs.get(field_name)
            if spec is None:
                raise ValueError(
                    f"{record.kind} {record.external_id}: unread names no field of a {object_type.name}: {name!r}"
                )
            if key:
                mapping = dict(changed.get(field_name, getattr(record, field_name)))
                before = stored.get(field_name) or {}
                if key in before:
                    mapping[key] = before[key]
                else:
                    mapping.pop(key, None)
                changed[field_name] = mapping
            else:
                changed[field_name] = _record_value(spec, stored.get(field_name))
    return replace(record, **changed)


def _record_value(spec: Column | Link | Members, stored: Any) -> Any:
    """A stored canonical field as the record holds it (tuples for lists, Refs for links)."""
    if isinstance(spec, Link):
        return None if stored is None else _ref(stored)
    if isinstance(spec, Members):
        return tuple(_ref(text) for text in stored or ())
    if spec.json == "list":
        return tuple(stored or ())
    if spec.json == "mapping":
        return dict(stored or {})
    return stored


def _ref(text: str) -> Ref:
    kind, _, external_id = text.partition(":")
    return Ref(kind, external_id)


def _resolve_links(
    object_type: ObjectType, record: Record, resolver: _Resolver
) -> tuple[Record, dict[str, int | None], list[int]]:
    """The record as stored, the ids its links point at (by link field), and its member ids.

    A link whose target is unknown is dropped from the record, so that its hash changes
    (and the link is written) once the target appears. Member lists and unordered
    columns are sorted so that order alone never counts as a change.
    """
    changed: dict[str, Any] = {}
    links: dict[str, int | None] = {}
    for link in object_type.links:
        ref = getattr(record, link.field)
        if ref is None:
            links[link.field] = None
        elif (target_id := resolver.resolve(link.target, ref)) is None:
            links[link.field] = changed[link.field] = None
        else:
            links[link.field] = target_id
    member_ids: list[int] = []
    members = object_type.members
    if members is not None:
        refs = getattr(record, members.field)
        resolved: dict[Ref, int] = {}
        for ref in sorted(set(refs), key=str):
            target_id = resolver.resolve(members.target, ref)
            if target_id is not None:
                resolved[ref] = target_id
        if tuple(resolved) != refs:
            changed[members.field] = tuple(resolved)
        member_ids = list(resolved.values())
    for name in object_type.unordered_columns:
        values = getattr(record, name)
        if list(values) != sorted(values):
            changed[name] = tuple(sorted(values))
    if changed:
        record = replace(record, **changed)
    return record, links, member_ids


def _change(
    write: ObjectWrite, action: str, diff: dict[str, list[Any]] | None = None, cause: dict[str, Any] | None = None
) -> ChangeRecord:
    record = write.record
    return ChangeRecord(write.object_type, write.id, record.kind, record.external_id, record.name, action, diff, cause)


def _named_keys(snapshot: Snapshot, types: Sequence[ObjectType]) -> dict[str, set[Key]]:
    """Per object type, the objects a delta names: its records, what they link to, what it deleted."""
    keys: dict[str, set[Key]] = {t.name: set() for t in types}
    for object_type in types:
        for record in _records(snapshot, object_type.name):
            keys[object_type.name].add((record.kind, record.external_id))
            for link in object_type.links:
                ref = getattr(record, link.field)
                if ref is not None:
                    keys[link.target].add((ref.kind, ref.external_id))
            if object_type.members is not None:
                for ref in getattr(record, object_type.members.field):
                    keys[object_type.members.target].add((ref.kind, ref.external_id))
    for type_name, kind, external_id in (*snapshot.deleted, *snapshot.kept):
        keys[type_name].add((kind, external_id))
    return keys
