"""Where "what is there now" meets "what we knew": the diff of a snapshot against the store.

Pure logic over records and the narrow ``Store`` interface. For a complete
snapshot it inserts new objects, updates changed ones (a content hash decides:
an unchanged object costs no write), marks vanished ones removed and revives
ones that come back; for an incomplete snapshot it only upserts. Each created,
updated, removed or revived object gets one change record with the changed
fields old -> new.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from inventory.records import Host, Record, Ref, Snapshot, Workload, canonical_fields, record_hash
from inventory.storage.store import OBJECT_TYPES, Key, SourceState, Store, WritePlan
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)

# Canonical fields stored as plain columns of the same name.
_PLAIN_COLUMNS = {
    "host": ("name", "status", "hostname", "machine_uuid", "mac_addresses", "addresses", "labels", "attributes"),
    "workload": ("name", "namespace", "status", "labels", "attributes"),
    "service": ("name", "namespace", "status", "labels", "attributes"),
}


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
    unresolved_links: int = 0
    statements: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.revived + self.removed


def _records(snapshot: Snapshot, object_type: str) -> Sequence[Record]:
    return {"host": snapshot.hosts, "workload": snapshot.workloads, "service": snapshot.services}[object_type]


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
        self.ids: dict[str, dict[Key, int]] = {t: {k: o.id for k, o in state.objects[t].items()} for t in OBJECT_TYPES}
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
        return _reconcile(snapshot, store, source_id=source_id, run_id=run_id, allow_empty=allow_empty, now=now or utcnow())
    finally:
        if gc_was_enabled:
            gc.enable()


def _reconcile(snapshot: Snapshot, store: Store, *, source_id: int, run_id: int, allow_empty: bool, now: datetime) -> ReconcileResult:
    result = ReconcileResult()
    statements_before = store.statements
    state = store.load_state(source_id)

    records: dict[str, dict[Key, Record]] = {}
    for object_type in OBJECT_TYPES:
        unique: dict[Key, Record] = {}
        for record in _records(snapshot, object_type):
            key = (record.kind, record.external_id)
            if key in unique:
                result.duplicates += 1
                continue
            unique[key] = record
        records[object_type] = unique
    if result.duplicates:
        log.warning("snapshot listed %d objects twice; kept the first of each", result.duplicates)

    resolver = _Resolver(state)
    for object_type in OBJECT_TYPES:
        known = state.objects[object_type]
        new_keys = [k for k in records[object_type] if k not in known]
        for key, new_id in zip(new_keys, store.allocate_ids(object_type, len(new_keys)), strict=True):
            resolver.ids[object_type][key] = new_id

    plan = WritePlan()
    diff_wanted: dict[str, list[tuple[int, Record, dict[str, Any], str]]] = {t: [] for t in OBJECT_TYPES}

    for object_type in OBJECT_TYPES:
        known = state.objects[object_type]
        for key, record in records[object_type].items():
            record, links, members = _resolve_links(record, resolver)
            digest = record_hash(record)
            stored = known.get(key)
            row_id = resolver.ids[object_type][key]
            if stored is not None and not stored.removed and stored.content_hash == digest:
                result.unchanged += 1
                continue
            fields = canonical_fields(record)
            row = {"id": row_id, **{c: fields[c] for c in _PLAIN_COLUMNS[object_type]}, **links, "content_hash": digest, "changed_at": now}
            if stored is None:
                row.update(source_id=source_id, kind=record.kind, external_id=record.external_id, first_seen_at=now, removed_at=None)
                plan.inserts[object_type].append(row)
                plan.changes.append(_change(source_id, run_id, now, object_type, row_id, record, "created", None))
                result.created += 1
            else:
                row["removed_at"] = None
                plan.updates[object_type].append(row)
                action = "revived" if stored.removed else "updated"
                diff_wanted[object_type].append((row_id, record, fields, action))
                if object_type == "service":
                    plan.member_resets.append(row_id)
                if stored.removed:
                    result.revived += 1
                else:
                    result.updated += 1
            if object_type == "service":
                plan.members.extend((row_id, workload_id) for workload_id in members)

    for object_type, wanted in diff_wanted.items():
        if not wanted:
            continue
        old_fields = store.load_fields(object_type, [row_id for row_id, *_ in wanted])
        for row_id, record, fields, action in wanted:
            diff = diff_fields(old_fields.get(row_id, {}), fields)
            plan.changes.append(_change(source_id, run_id, now, object_type, row_id, record, action, diff))

    if snapshot.complete:
        for object_type in OBJECT_TYPES:
            live = [(k, o) for k, o in state.objects[object_type].items() if not o.removed]
            gone = [(k, o) for k, o in live if k not in records[object_type]]
            if not gone:
                continue
            if not records[object_type] and not allow_empty:
                result.withheld.append(
                    f"the source answered with no {object_type}s at all, but {len(live)} were known; "
                    "nothing was removed (pass --allow-empty if they really are gone)"
                )
                continue
            for (kind, external_id), stored in gone:
                plan.removals[object_type].append(stored.id)
                plan.changes.append(
                    {
                        "source_id": source_id,
                        "sync_run_id": run_id,
                        "at": now,
                        "object_type": object_type,
                        "object_id": stored.id,
                        "kind": kind,
                        "external_id": external_id,
                        "name": stored.name,
                        "action": "removed",
                        "diff": None,
                    }
                )
            result.removed += len(gone)

    store.apply(plan, now=now)
    result.unresolved_links = resolver.unresolved
    result.statements = store.statements - statements_before
    return result


def _resolve_links(record: Record, resolver: _Resolver) -> tuple[Record, dict[str, int | None], list[int]]:
    """The record as stored, and the ids its links point at.

    A link whose target is unknown is dropped from the record, so that its hash changes
    (and the link is written) once the target appears. Member and MAC lists are sorted
    so that order alone never counts as a change.
    """
    if isinstance(record, Workload):
        host_id = resolver.resolve("host", record.host)
        parent_id = resolver.resolve("workload", record.parent)
        if (record.host is not None and host_id is None) or (record.parent is not None and parent_id is None):
            record = replace(record, host=record.host if host_id else None, parent=record.parent if parent_id else None)
        return record, {"host_id": host_id, "parent_id": parent_id}, []
    if isinstance(record, Host):
        backing_id = resolver.resolve("workload", record.backed_by)
        if record.backed_by is not None and backing_id is None:
            record = replace(record, backed_by=None)
        if list(record.mac_addresses) != sorted(record.mac_addresses):
            record = replace(record, mac_addresses=tuple(sorted(record.mac_addresses)))
        return record, {"backing_workload_id": backing_id}, []
    members: dict[Ref, int] = {}
    for ref in sorted(set(record.members), key=str):
        workload_id = resolver.resolve("workload", ref)
        if workload_id is not None:
            members[ref] = workload_id
    if tuple(members) != record.members:
        record = replace(record, members=tuple(members))
    return record, {}, list(members.values())


def _change(
    source_id: int, run_id: int, now: datetime, object_type: str, object_id: int, record: Record, action: str, diff: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "sync_run_id": run_id,
        "at": now,
        "object_type": object_type,
        "object_id": object_id,
        "kind": record.kind,
        "external_id": record.external_id,
        "name": record.name,
        "action": action,
        "diff": diff,
    }

