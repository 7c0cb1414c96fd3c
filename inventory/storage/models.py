"""The ORM classes of the inventory's tables, mapped onto the Core tables of inventory/storage/tables.py.

The tables (columns, types, indexes, comments on what each column holds) are declared there, once; the
annotations here only tell type checkers what each attribute holds. Code that wants objects (queries, the
server) uses these classes; the sync engine writes the tables without them.
"""

# No ``from __future__ import annotations`` in the model modules: with it, SQLAlchemy evaluates every
# ``Mapped[...]`` annotation from its text when a class is mapped; Python evaluates them for less.
from datetime import datetime
from typing import Any

from sqlalchemy.orm import DeclarativeBase, Mapped

from inventory.storage import tables


class Base(DeclarativeBase):
    metadata = tables.metadata


class Source(Base):
    __table__ = tables.sources

    id: Mapped[int]
    name: Mapped[str]
    type: Mapped[str]
    identity: Mapped[str | None]
    created_at: Mapped[datetime]


class SyncRun(Base):
    __table__ = tables.sync_runs

    id: Mapped[int]
    source_id: Mapped[int]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    status: Mapped[str]
    complete: Mapped[bool | None]
    objects: Mapped[int]
    created: Mapped[int]
    updated: Mapped[int]
    removed: Mapped[int]
    revived: Mapped[int]
    unchanged: Mapped[int]
    error: Mapped[str | None]
    warnings: Mapped[str | None]
    drift_repaired: Mapped[int | None]


class WebSessionRow(Base):
    __table__ = tables.web_sessions

    id_hash: Mapped[str]
    token_ref: Mapped[str]
    csrf: Mapped[str]
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]


class _InventoryObject:
    """Attributes shared by hosts, workloads and services."""

    id: Mapped[int]
    source_id: Mapped[int]
    kind: Mapped[str]
    external_id: Mapped[str]
    name: Mapped[str]
    status: Mapped[str | None]
    labels: Mapped[dict[str, Any]]
    attributes: Mapped[dict[str, Any]]
    content_hash: Mapped[str]
    first_seen_at: Mapped[datetime]
    changed_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]
    details_stale_since: Mapped[datetime | None]


class HostRow(_InventoryObject, Base):
    __table__ = tables.hosts

    hostname: Mapped[str | None]
    machine_uuid: Mapped[str | None]
    mac_addresses: Mapped[list[str]]
    addresses: Mapped[list[str]]
    backing_workload_id: Mapped[int | None]


class WorkloadRow(_InventoryObject, Base):
    __table__ = tables.workloads

    namespace: Mapped[str | None]
    host_id: Mapped[int | None]
    parent_id: Mapped[int | None]


class ServiceRow(_InventoryObject, Base):
    __table__ = tables.services

    namespace: Mapped[str | None]


class ServiceMember(Base):
    __table__ = tables.service_members

    service_id: Mapped[int]
    workload_id: Mapped[int]


class MachineLink(Base):
    __table__ = tables.machine_links

    host_id: Mapped[int]
    other_id: Mapped[int]
    rule: Mapped[str]
    machine_id: Mapped[int]


class Change(Base):
    __table__ = tables.changes

    id: Mapped[int]
    source_id: Mapped[int]
    sync_run_id: Mapped[int]
    at: Mapped[datetime]
    object_type: Mapped[str]
    object_id: Mapped[int]
    kind: Mapped[str]
    external_id: Mapped[str]
    name: Mapped[str]
    action: Mapped[str]
    diff: Mapped[dict[str, Any] | None]
    cause: Mapped[dict[str, Any] | None]


# The row class of each object type (inventory/schema.py names its table).
OBJECT_MODELS: dict[str, type[HostRow | WorkloadRow | ServiceRow]] = {
    "host": HostRow,
    "workload": WorkloadRow,
    "service": ServiceRow,
}
