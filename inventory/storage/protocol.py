"""What reconcile needs from a store, in domain terms: records with resolved ids, never rows.

A store reads what it holds for one source (``load_state``: its live objects;
``load_removed``: the removed ones among given keys, which a sync may revive; ``load_fields``), hands
out ids for new objects before anything is written (so that links between new objects
are known up front), and applies one ``WritePlan`` per reconcile. The SQL store
(inventory.storage.store) and the in-memory store (inventory.storage.memory) both
implement it, and both pass the one contract suite in tests/test_store_contract.py.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from inventory.records import Record
from inventory.schema import OBJECT_TYPES, Schema

Key = tuple[str, str]  # (kind, external_id)


@dataclass(slots=True)
class StoredObject:
    id: int
    content_hash: str
    removed: bool
    name: str
    namespace: str | None = None
    # Some detail kept its last known value because it could not be read (details_stale_since is set).
    stale: bool = False


@dataclass
class SourceState:
    """What the store holds for one source: identity -> (id, hash, removed) per object type.

    ``load_state`` fills it with the live objects only; reconcile adds the removed objects it asks
    ``load_removed`` for (those a snapshot lists again or links to), so that a sync never reads the
    removed rows that retention keeps around (with removed_objects at 30 days, most of the table)."""

    objects: dict[str, dict[Key, StoredObject]] = field(default_factory=lambda: {t: {} for t in OBJECT_TYPES})


@dataclass(slots=True)
class ObjectWrite:
    """One object to create or overwrite: the record as stored, and the ids its links resolved to.

    ``record`` holds only links that resolved (an unresolved one is None, or left out of
    ``members``); ``fields`` are its canonical fields; ``links`` maps link fields to the
    target's id (a field not in it links to nothing); ``members`` are the member ids, in the record's order.
    """

    object_type: str
    id: int
    record: Record
    fields: dict[str, Any]
    content_hash: str
    links: Mapping[str, int | None] = field(default_factory=dict)
    members: Sequence[int] = ()
    # Some detail could not be read: a new object is created with its details stale since now.
    stale: bool = False


@dataclass(slots=True)
class ChangeRecord:
    """One line of history: an object created, updated, removed or revived, with {field: [old, new]} for updates."""

    object_type: str
    object_id: int
    kind: str
    external_id: str
    name: str
    action: str
    diff: dict[str, list[Any]] | None = None
    # Why it changed, in the stored shape of inventory.cause.Cause (None: nobody said).
    cause: dict[str, Any] | None = None


@dataclass
class WritePlan:
    """Everything one reconcile of one source writes; a store applies it set-based, per group."""

    source_id: int
    run_id: int
    now: datetime
    creates: list[ObjectWrite] = field(default_factory=list)
    # Updates and revivals alike: the object is overwritten and is live afterwards.
    updates: list[ObjectWrite] = field(default_factory=list)
    removals: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})
    changes: list[ChangeRecord] = field(default_factory=list)
    # Objects whose details went stale now (kept if already stale), and objects read whole again.
    stale: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})
    fresh: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})


class Store(Protocol):
    """The narrow interface reconcile reads and writes through, inside the caller's transaction."""

    schema: Schema
    # Statements sent to a database so far (0 for a store without one): the benchmark prints it.
    statements: int

    def load_state(self, source_id: int, keys: Mapping[str, Collection[Key]] | None = None) -> SourceState:
        """The source's live objects (removed ones are looked up by key with ``load_removed``); with ``keys``
        (per object type) only those (a delta names a few objects of a source that holds thousands)."""
        ...

    def load_removed(self, source_id: int, keys: Mapping[str, Collection[Key]]) -> dict[str, dict[Key, StoredObject]]:
        """The source's removed objects among ``keys`` (per object type); keys not stored, or live, are left out."""
        ...

    def load_fields(self, object_type: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Canonical fields (as ObjectType.canonical_fields shapes them) of stored objects, for diffs."""
        ...

    def allocate_ids(self, object_type: str, count: int) -> list[int]: ...

    def apply(self, plan: WritePlan) -> None: ...
