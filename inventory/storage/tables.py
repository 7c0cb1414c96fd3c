"""The inventory's tables, declared once as SQLAlchemy Core ``Table`` data. Alembic revisions in migrations/ are the
only way they change.

The sync engine (inventory/storage/store.py, reconcile, the audit appender) reads and writes these tables
directly; the ORM classes in inventory/storage/models.py are mapped onto them for the code that wants objects
(queries, the server). A one-shot ``sync --once`` thus never maps a class: declaring and mapping the models and
configuring their mappers cost about 35 ms of its start (benchmarks/bench_startup.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

from inventory.timeutil import utcnow

# Stable constraint names keep Alembic revisions identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Every table of the database (the audit tables in inventory/audit/tables.py, the tokens' in
# inventory/audit/token_models.py); the ORM's Base shares it.
metadata = MetaData(naming_convention=NAMING)


class _JsonOrJsonb(TypeDecorator[Any]):
    """JSON everywhere, JSONB on PostgreSQL; SQLAlchemy's PostgreSQL dialect is imported only where it is used
    (``with_variant(JSONB(...))`` imported it, ~30 ms, in every process that loads these tables, SQLite or not)."""

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


sources = Table(
    "sources",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("type", String(50), nullable=False),
    Column("identity", String(500)),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source_id", Id, ForeignKey("sources.id"), nullable=False, index=True),
    Column("started_at", UTCDateTime, nullable=False, default=utcnow),
    Column("finished_at", UTCDateTime),
    # An inventory.outcome.SyncStatus: running, success, partial, forbidden or failed (locked and skipped never are);
    # ``watching`` for a watch session (inventory/live.py): its delta's change rows point here, and its
    # ``finished_at`` is the last time the watch was known alive (moved on as it beats).
    Column("status", String(20), nullable=False, default="running"),
    Column("complete", Boolean),
    Column("objects", Integer, nullable=False, default=0),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("removed", Integer, nullable=False, default=0),
    Column("revived", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("error", Text),
    # Facts the run found (a node down, a kind skipped for lack of permission): not failures.
    Column("warnings", Text),
    # A full sync run while the source's changes were followed: the objects it changed, which the
    # stream had missed (0 when the stream was right). NULL on any other run.
    Column("drift_repaired", Integer),
)

# A web UI session, shared by every server on the database (inventory/server/web.py). Keyed by the sha256 of
# the session id the browser holds; ``token_ref`` names the API token by its keyed hash (as
# ``api_tokens.token_hash``), so that every request re-authorizes through the token and a revoked one ends its
# sessions. Neither the id nor the token is stored.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_ref", String(64), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("last_seen_at", UTCDateTime, nullable=False, default=utcnow, index=True),
)


# Object, membership and change rows carry no FOREIGN KEY constraints, on purpose: their
# ids are allocated by the sync engine inside the transaction that writes them, and rows
# are never deleted (removal is a soft delete), so a constraint could catch nothing the
# engine can get wrong, while PostgreSQL's per-row checks cost two thirds of a first sync
# (measured: 2.97 s with them, 0.95 s without, 21,000 objects; benchmarks/bench_reconcile.py).


def _object_columns() -> list[Column[Any]]:
    """Columns shared by hosts, workloads and services (new objects for each table)."""
    return [
        Column("id", Id, primary_key=True),
        Column("source_id", Id, nullable=False),
        Column("kind", String(50), nullable=False),
        Column("external_id", String(500), nullable=False),
        Column("name", String(500), nullable=False, index=True),
        Column("status", String(100)),
        Column("labels", JsonValue, nullable=False, default=dict),
        Column("attributes", JsonValue, nullable=False, default=dict),
        Column("content_hash", String(32), nullable=False),
        Column("first_seen_at", UTCDateTime, nullable=False, default=utcnow),
        Column("changed_at", UTCDateTime, nullable=False, default=utcnow),
        Column("removed_at", UTCDateTime),
        # Since when some detail could not be read and keeps its last known value; None: all read.
        # Outside the content hash: a hiccup is not a change of the object.
        Column("details_stale_since", UTCDateTime),
    ]


hosts = Table(
    "hosts",
    metadata,
    *_object_columns(),
    Column("hostname", String(255), index=True),
    Column("machine_uuid", String(64), index=True),
    Column("mac_addresses", JsonValue, nullable=False, default=list),
    Column("addresses", JsonValue, nullable=False, default=list),
    Column("backing_workload_id", Id),
    UniqueConstraint("source_id", "kind", "external_id"),
)

# namespace/name is how objects are named (`workloads show NS/NAME`): one index on both. With an index on
# namespace alone SQLite, having no statistics, looked a name up by scanning its whole namespace, removed
# rows included; namespace-only filters use the same index.
workloads = Table(
    "workloads",
    metadata,
    *_object_columns(),
    Column("namespace", String(253)),
    Column("host_id", Id, index=True),
    Column("parent_id", Id, index=True),
    UniqueConstraint("source_id", "kind", "external_id"),
    Index("ix_workloads_namespace_name", "namespace", "name"),
)

services = Table(
    "services",
    metadata,
    *_object_columns(),
    Column("namespace", String(253)),
    UniqueConstraint("source_id", "kind", "external_id"),
    Index("ix_services_namespace_name", "namespace", "name"),
)

service_members = Table(
    "service_members",
    metadata,
    Column("service_id", Id, primary_key=True),
    Column("workload_id", Id, primary_key=True, index=True),
)

# Two hosts of different sources that are one machine, stored both ways round (each host's links are one index
# lookup), with the rule that matched and the machine's id (its lowest host id). Derived from the hosts table by
# inventory.machine_links at each sync; never edited by hand.
machine_links = Table(
    "machine_links",
    metadata,
    Column("host_id", Id, primary_key=True),
    Column("other_id", Id, primary_key=True),
    Column("rule", String(30), nullable=False),  # an inventory.machines.MatchRule
    Column("machine_id", Id, nullable=False, index=True),
)

# Append-only history: one row per object created, updated, removed or revived by a sync.
# Two indexes only (time order, object): every index is maintained for each of the tens of
# thousands of rows a first sync appends here. One sync stamps all its rows with one time:
# (at, id) is the timeline's whole order, so a newest-first page reads only its own rows.
changes = Table(
    "changes",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source_id", Id, nullable=False),
    Column("sync_run_id", Id, nullable=False),
    Column("at", UTCDateTime, nullable=False, default=utcnow),
    Column("object_type", String(20), nullable=False),  # host | workload | service
    Column("object_id", Id, nullable=False, index=True),
    Column("kind", String(50), nullable=False),
    Column("external_id", String(500), nullable=False),
    Column("name", String(500), nullable=False),
    Column("action", String(20), nullable=False),  # created | updated | removed | revived
    # {field: [old, new]}; nested attribute and label keys as "attributes.cpu".
    Column("diff", JsonValue),
    # Who or what made the change, as inventory.cause.Cause stores it (None: nobody said).
    Column("cause", JsonValue),
    Index("ix_changes_at_id", "at", "id"),
)
