"""Tables, as SQLAlchemy 2.0 typed models. Alembic revisions in migrations/ are the only way they change."""

# No ``from __future__ import annotations`` in the model modules: with it, SQLAlchemy evaluates every
# ``Mapped[...]`` annotation from its text when a class is mapped, ~14 ms of every command's start for the
# storage and audit models together (benchmarks/bench_startup.py); Python evaluates them for less.
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from inventory.timeutil import utcnow

# Stable constraint names keep Alembic revisions identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class _JsonOrJsonb(TypeDecorator[Any]):
    """JSON everywhere, JSONB on PostgreSQL; SQLAlchemy's PostgreSQL dialect is imported only where it is used
    (``with_variant(JSONB(...))`` imported it, ~30 ms, in every process that loads these models, SQLite or not)."""

    impl = JSON(none_as_null=True)
    cache_ok = True
    hashable = False  # as JSON's: dicts and lists (the ORM's unique() must not hash them)

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(self.impl_instance)


JsonValue = _JsonOrJsonb()

# BIGINT ids on PostgreSQL; SQLite needs INTEGER PRIMARY KEY to alias the rowid.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out on every engine (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(50))
    identity: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An inventory.outcome.SyncStatus: running, success, partial, forbidden or failed (locked and skipped never are);
    # ``watching`` for a watch session (inventory/live.py): its delta's change rows point here, and its
    # ``finished_at`` is the last time the watch was known alive (moved on as it beats).
    status: Mapped[str] = mapped_column(String(20), default="running")
    complete: Mapped[bool | None] = mapped_column(Boolean)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    revived: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Facts the run found (a node down, a kind skipped for lack of permission): not failures.
    warnings: Mapped[str | None] = mapped_column(Text)
    # A full sync run while the source's changes were followed: the objects it changed, which the
    # stream had missed (0 when the stream was right). NULL on any other run.
    drift_repaired: Mapped[int | None] = mapped_column(Integer)


class WebSessionRow(Base):
    """A web UI session, shared by every server on the database (inventory/server/web.py).

    Keyed by the sha256 of the session id the browser holds; ``token_ref`` names the API token
    by its keyed hash (as ``api_tokens.token_hash``), so that every request re-authorizes
    through the token and a revoked one ends its sessions. Neither the id nor the token is stored.
    """

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_ref: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


# Object, membership and change rows carry no FOREIGN KEY constraints, on purpose: their
# ids are allocated by the sync engine inside the transaction that writes them, and rows
# are never deleted (removal is a soft delete), so a constraint could catch nothing the
# engine can get wrong, while PostgreSQL's per-row checks cost two thirds of a first sync
# (measured: 2.97 s with them, 0.95 s without, 21,000 objects; benchmarks/bench_reconcile.py).


class _InventoryObject:
    """Columns shared by hosts, workloads and services."""

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(500), index=True)
    status: Mapped[str | None] = mapped_column(String(100))
    labels: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    content_hash: Mapped[str] = mapped_column(String(32))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Since when some detail could not be read and keeps its last known value; None: all read.
    # Outside the content hash: a hiccup is not a change of the object.
    details_stale_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class HostRow(_InventoryObject, Base):
    __tablename__ = "hosts"
    __table_args__ = (UniqueConstraint("source_id", "kind", "external_id"),)

    hostname: Mapped[str | None] = mapped_column(String(255), index=True)
    machine_uuid: Mapped[str | None] = mapped_column(String(64), index=True)
    mac_addresses: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    addresses: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    backing_workload_id: Mapped[int | None] = mapped_column(Id)


# namespace/name is how objects are named (`workloads show NS/NAME`): one index on both. With an index on
# namespace alone SQLite, having no statistics, looked a name up by scanning its whole namespace, removed
# rows included; namespace-only filters use the same index.
class WorkloadRow(_InventoryObject, Base):
    __tablename__ = "workloads"
    __table_args__ = (
        UniqueConstraint("source_id", "kind", "external_id"),
        Index("ix_workloads_namespace_name", "namespace", "name"),
    )

    namespace: Mapped[str | None] = mapped_column(String(253))
    host_id: Mapped[int | None] = mapped_column(Id, index=True)
    parent_id: Mapped[int | None] = mapped_column(Id, index=True)


class ServiceRow(_InventoryObject, Base):
    __tablename__ = "services"
    __table_args__ = (
        UniqueConstraint("source_id", "kind", "external_id"),
        Index("ix_services_namespace_name", "namespace", "name"),
    )

    namespace: Mapped[str | None] = mapped_column(String(253))


class ServiceMember(Base):
    __tablename__ = "service_members"

    service_id: Mapped[int] = mapped_column(Id, primary_key=True)
    workload_id: Mapped[int] = mapped_column(Id, primary_key=True, index=True)


class MachineLink(Base):
    """Two hosts of different sources that are one machine, stored both ways round (each host's links are
    one index lookup), with the rule that matched and the machine's id (its lowest host id).

    Derived from the hosts table by inventory.machine_links at each sync; never edited by hand.
    """

    __tablename__ = "machine_links"

    host_id: Mapped[int] = mapped_column(Id, primary_key=True)
    other_id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule: Mapped[str] = mapped_column(String(30))  # an inventory.machines.MatchRule
    machine_id: Mapped[int] = mapped_column(Id, index=True)


class Change(Base):
    """Append-only history: one row per object created, updated, removed or revived by a sync."""

    __tablename__ = "changes"
    # Two indexes only (time order, object): every index is maintained for each of the tens of
    # thousands of rows a first sync appends here. One sync stamps all its rows with one time:
    # (at, id) is the timeline's whole order, so a newest-first page reads only its own rows.
    __table_args__ = (Index("ix_changes_at_id", "at", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source_id: Mapped[int] = mapped_column(Id)
    sync_run_id: Mapped[int] = mapped_column(Id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    object_type: Mapped[str] = mapped_column(String(20))  # host | workload | service
    object_id: Mapped[int] = mapped_column(Id, index=True)
    kind: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(500))
    action: Mapped[str] = mapped_column(String(20))  # created | updated | removed | revived
    # {field: [old, new]}; nested attribute and label keys as "attributes.cpu".
    diff: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
    # Who or what made the change, as inventory.cause.Cause stores it (None: nobody said).
    cause: Mapped[dict[str, Any] | None] = mapped_column(JsonValue)
