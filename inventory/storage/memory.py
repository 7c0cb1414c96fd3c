"""The ``Store`` protocol in memory: reconcile runs and is tested with no database at all.

It keeps what the SQL store keeps, in the same shape: per object its columns (the
canonical fields minus links), its links as target ids, its hash and removal state,
memberships as ids, and the change history. Links read back as the target's current
``kind:external_id``, as the SQL store's joins give them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from inventory.records import to_json_bytes
from inventory.schema import SCHEMA, Schema
from inventory.storage.protocol import ChangeRecord, Key, ObjectWrite, SourceState, StoredObject, WritePlan


@dataclass
class MemoryObject:
    source_id: int
    kind: str
    external_id: str
    columns: dict[str, Any]
    links: dict[str, int | None]
    content_hash: str
    first_seen_at: datetime
    changed_at: datetime
    removed_at: datetime | None = None
    details_stale_since: datetime | None = None


@dataclass(frozen=True)
class MemoryChange:
    source_id: int
    run_id: int
    at: datetime
    change: ChangeRecord


@dataclass
class MemoryStore:
    schema: Schema = SCHEMA
    statements: int = 0  # no database, no statements
    objects: dict[str, dict[int, MemoryObject]] = field(default_factory=dict)
    # Owner id -> member ids, for the object types that declare members.
    members: dict[int, list[int]] = field(default_factory=dict)
    changes: list[MemoryChange] = field(default_factory=list)
    _last_id: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.schema.names:
            self.objects.setdefault(name, {})
            self._last_id.setdefault(name, 0)

    def load_state(self, source_id: int, keys: Mapping[str, Collection[Key]] | None = None) -> SourceState:
        state = SourceState({name: {} for name in self.schema.names})
        for name, objects in self.objects.items():
            wanted = None if keys is None else set(keys.get(name, ()))
            state.objects[name] = {
                (o.kind, o.external_id): self._stored(object_id, o)
                for object_id, o in objects.items()
                if o.source_id == source_id
                and o.removed_at is None
                and (wanted is None or (o.kind, o.external_id) in wanted)
            }
        return state

    def load_removed(self, source_id: int, keys: Mapping[str, Collection[Key]]) -> dict[str, dict[Key, StoredObject]]:
        found: dict[str, dict[Key, StoredObject]] = {}
        for name, wanted in keys.items():
            wanted_keys = set(wanted)
            found[name] = {
                (o.kind, o.external_id): self._stored(object_id, o)
                for object_id, o in self.objects[name].items()
                if o.source_id == source_id and o.removed_at is not None and (o.kind, o.external_id) in wanted_keys
            }
        return found

    @staticmethod
    def _stored(object_id: int, o: MemoryObject) -> StoredObject:
        return StoredObject(
            object_id,
            o.content_hash,
            o.removed_at is not None,
            o.columns["name"],
            o.columns.get("namespace"),
            o.details_stale_since is not None,
        )

    def load_fields(self, object_type: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        spec = self.schema[object_type]
        result: dict[int, dict[str, Any]] = {}
        for object_id in ids:
            stored = self.objects[object_type].get(object_id)
            if stored is None:
                continue
            fields = dict(stored.columns)
            for link in spec.links:
                fields[link.field] = self._ref_text(link.target, stored.links.get(link.field))
            if spec.members is not None:
                target = spec.members.target
                fields[spec.members.field] = sorted(
                    text
                    for text in (self._ref_text(target, m) for m in self.members.get(object_id, []))
                    if text is not None
                )
            result[object_id] = fields
        return result

    def _ref_text(self, object_type: str, object_id: int | None) -> str | None:
        target = None if object_id is None else self.objects[object_type].get(object_id)
        return None if target is None else f"{target.kind}:{target.external_id}"

    def allocate_ids(self, object_type: str, count: int) -> list[int]:
        start = self._last_id[object_type] + 1
        self._last_id[object_type] += count
        return list(range(start, start + count))

    def apply(self, plan: WritePlan) -> None:
        now = plan.now
        for write in plan.creates:
            if write.id in self.objects[write.object_type]:
                raise ValueError(f"{write.object_type} {write.id} exists already")
            self.objects[write.object_type][write.id] = MemoryObject(
                plan.source_id,
                write.record.kind,
                write.record.external_id,
                {},
                {},
                write.content_hash,
                now,
                now,
                details_stale_since=now if write.stale else None,
            )
        for write in (*plan.creates, *plan.updates):
            stored = self.objects[write.object_type][write.id]
            self._overwrite(stored, write, now)
            if self.schema[write.object_type].members is not None:
                self.members[write.id] = list(write.members)
        for object_type, ids in plan.removals.items():
            for object_id in ids:
                stored = self.objects[object_type][object_id]
                stored.removed_at = stored.changed_at = now
        for object_type, ids in plan.stale.items():
            for object_id in ids:
                stored = self.objects[object_type][object_id]
                stored.details_stale_since = stored.details_stale_since or now
        for object_type, ids in plan.fresh.items():
            for object_id in ids:
                self.objects[object_type][object_id].details_stale_since = None
        self.changes.extend(MemoryChange(plan.source_id, plan.run_id, now, change) for change in plan.changes)

    def _overwrite(self, stored: MemoryObject, write: ObjectWrite, now: datetime) -> None:
        spec = self.schema[write.object_type]
        # JSON columns go through JSON as they do on the way into SQL, so that they read back the same.
        stored.columns = {
            column.name: orjson.loads(to_json_bytes(write.fields[column.name]))
            if column.json is not None
            else write.fields[column.name]
            for column in spec.columns
        }
        stored.links = {link.field: write.links.get(link.field) for link in spec.links}
        stored.content_hash = write.content_hash
        stored.changed_at = now
        stored.removed_at = None
