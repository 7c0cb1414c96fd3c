"""The narrow store interface that reconcile writes through.

Every method is set-based: one statement per table (or per chunk of a
thousand ids), never one round trip per row. On PostgreSQL new rows go in with
COPY, their ids allocated up front from the table's sequence so that links
between new rows (a pod and its new deployment) are known before anything is
written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, text, update
from sqlalchemy.orm import Session, aliased

from inventory.storage.models import (
    UTCDateTime,
    Change,
    HostRow,
    ServiceMember,
    ServiceRow,
    Source,
    SyncRun,
    WorkloadRow,
)
from inventory.records import to_json_bytes
from inventory.timeutil import utcnow

CHUNK = 1000
# pg_advisory_xact_lock keys (+0 hosts, +1 workloads, +2 services): "inve" in ASCII.
_ID_ALLOCATION_LOCK = 0x696E7665_00

OBJECT_TYPES = ("host", "workload", "service")
_MODELS = {"host": HostRow, "workload": WorkloadRow, "service": ServiceRow}
_JSON_COLUMNS = {"labels", "attributes", "mac_addresses", "addresses", "diff"}


@dataclass(slots=True)
class StoredObject:
    id: int
    content_hash: str
    removed: bool
    name: str


Key = tuple[str, str]  # (kind, external_id)


@dataclass
class SourceState:
    """What the store holds for one source: identity -> (id, hash, removed) per object type."""

    objects: dict[str, dict[Key, StoredObject]] = field(default_factory=lambda: {t: {} for t in OBJECT_TYPES})

    def live_count(self, object_type: str) -> int:
        return sum(1 for o in self.objects[object_type].values() if not o.removed)


@dataclass
class WritePlan:
    """Everything one reconcile writes, grouped so that each group is one set-based statement."""

    inserts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})
    removals: dict[str, list[int]] = field(default_factory=lambda: {t: [] for t in OBJECT_TYPES})
    # Services whose membership is replaced, and the (service_id, workload_id) pairs to insert.
    member_resets: list[int] = field(default_factory=list)
    members: list[tuple[int, int]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def object_rows(self) -> int:
        return sum(len(v) for v in self.inserts.values()) + sum(len(v) for v in self.updates.values()) + sum(
            len(v) for v in self.removals.values()
        )


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dumps(value: Any) -> str:
    return to_json_bytes(value).decode()


def _encoded_rows(rows: list[dict[str, Any]], columns: list[str]) -> Iterator[list[Any]]:
    """Each row's values in column order, JSON columns already encoded as text."""
    json_positions = [i for i, c in enumerate(columns) if c in _JSON_COLUMNS]
    for row in rows:
        values = [row[c] for c in columns]
        for i in json_positions:
            if values[i] is not None:
                values[i] = _dumps(values[i])
        yield values


class Store:
    """Reads and writes of the sync engine, inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.statements = 0  # statements sent, COPY included: the benchmark prints it

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

    def _execute(self, statement: Any, params: Any = None) -> Any:
        self.statements += 1
        return self.session.execute(statement, params) if params is not None else self.session.execute(statement)

    # -- sources and runs ------------------------------------------------------------

    def source_id(self, name: str, type_name: str, identity: str | None = None, *, configured: Collection[str] = ()) -> int:
        """The id of the named source, created on first use.

        A source that is new by name but whose identity matches an existing source of
        the same type that is no longer configured is that source renamed: it is
        adopted, not duplicated. Sources still configured are never merged, even when
        their identities collide (cloned Docker engines can share an ID).
        """
        found = self._execute(select(Source.id, Source.type, Source.identity).where(Source.name == name)).first()
        if found is None and identity is not None:
            adopted = self._execute(
                select(Source.id)
                .where(Source.identity == identity, Source.type == type_name, Source.name.not_in(list(configured) or [""]))
                .order_by(Source.id)
            ).first()
            if adopted is not None:
                self._execute(update(Source).where(Source.id == adopted.id).values(name=name))
                return adopted.id
        if found is not None:
            changes = {}
            if found.type != type_name:
                changes["type"] = type_name
            if identity is not None and found.identity != identity:
                changes["identity"] = identity
            if changes:
                self._execute(update(Source).where(Source.id == found.id).values(**changes))
            return found.id
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        self._execute(
            dialect_insert(Source)
            .values(name=name, type=type_name, identity=identity, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return self._execute(select(Source.id).where(Source.name == name)).scalar_one()

    def start_run(self, source_id: int, started_at: datetime | None = None) -> int:
        run = SyncRun(source_id=source_id, started_at=started_at or utcnow(), status="running")
        self.session.add(run)
        self.session.flush()
        self.statements += 1
        return run.id

    def finish_run(self, run_id: int, **values: Any) -> None:
        values.setdefault("finished_at", utcnow())
        self._execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))

    # -- reads for reconcile ---------------------------------------------------------

    def load_state(self, source_id: int) -> SourceState:
        state = SourceState()
        for object_type, model in _MODELS.items():
            rows = self._execute(
                select(model.kind, model.external_id, model.id, model.content_hash, model.removed_at.is_not(None), model.name).where(
                    model.source_id == source_id
                )
            )
            state.objects[object_type] = {(kind, ext): StoredObject(*rest) for kind, ext, *rest in rows}
        return state

    def load_fields(self, object_type: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Canonical fields (as records.canonical_fields shapes them) of stored objects, for diffs."""
        result: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(list(ids)):
            if object_type == "host":
                backing = aliased(WorkloadRow)
                stmt = select(HostRow, backing.kind, backing.external_id).outerjoin(backing, HostRow.backing_workload_id == backing.id)
                for host, bkind, bext in self._execute(stmt.where(HostRow.id.in_(chunk))):
                    result[host.id] = {
                        "name": host.name,
                        "status": host.status,
                        "hostname": host.hostname,
                        "machine_uuid": host.machine_uuid,
                        "mac_addresses": host.mac_addresses,
                        "addresses": host.addresses,
                        "backed_by": f"{bkind}:{bext}" if bkind is not None else None,
                        "labels": host.labels,
                        "attributes": host.attributes,
                    }
            elif object_type == "workload":
                host, parent = aliased(HostRow), aliased(WorkloadRow)
                stmt = (
                    select(WorkloadRow, host.kind, host.external_id, parent.kind, parent.external_id)
                    .outerjoin(host, WorkloadRow.host_id == host.id)
                    .outerjoin(parent, WorkloadRow.parent_id == parent.id)
                )
                for w, hkind, hext, pkind, pext in self._execute(stmt.where(WorkloadRow.id.in_(chunk))):
                    result[w.id] = {
                        "name": w.name,
                        "namespace": w.namespace,
                        "status": w.status,
                        "host": f"{hkind}:{hext}" if hkind is not None else None,
                        "parent": f"{pkind}:{pext}" if pkind is not None else None,
                        "labels": w.labels,
                        "attributes": w.attributes,
                    }
            else:
                for s in self._execute(select(ServiceRow).where(ServiceRow.id.in_(chunk))).scalars():
                    result[s.id] = {
                        "name": s.name,
                        "namespace": s.namespace,
                        "status": s.status,
                        "members": [],
                        "labels": s.labels,
                        "attributes": s.attributes,
                    }
                members = self._execute(
                    select(ServiceMember.service_id, WorkloadRow.kind, WorkloadRow.external_id)
                    .join(WorkloadRow, ServiceMember.workload_id == WorkloadRow.id)
                    .where(ServiceMember.service_id.in_(chunk))
                )
                for service_id, wkind, wext in members:
                    result[service_id]["members"].append(f"{wkind}:{wext}")
                for fields in result.values():
                    fields["members"].sort()
        return result

    def allocate_ids(self, object_type: str, count: int) -> list[int]:
        """Reserve a block of ids for new rows, in O(1) statements.

        PostgreSQL: every id of these tables comes from here. Moving the sequence past the
        block happens under an advisory lock in a short transaction of its own (sequences
        are not transactional), so that concurrent syncs of other sources never overlap and
        never wait for each other's whole reconcile.
        SQLite: the caller holds the database write lock (BEGIN IMMEDIATE).
        """
        if count == 0:
            return []
        table = _MODELS[object_type].__table__
        if self.dialect == "postgresql":
            self.statements += 2
            with self.session.get_bind().engine.begin() as allocation:
                allocation.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ID_ALLOCATION_LOCK + OBJECT_TYPES.index(object_type)})
                start = allocation.execute(
                    text("SELECT setval(pg_get_serial_sequence(:table, 'id'), nextval(pg_get_serial_sequence(:table, 'id')) + :n - 1) - :n + 1"),
                    {"table": table.name, "n": count},
                ).scalar_one()
        else:
            start = self._execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
        return list(range(start, start + count))

    # -- writes -----------------------------------------------------------------------

    def apply(self, plan: WritePlan, *, now: datetime) -> None:
        for object_type in OBJECT_TYPES:
            self._insert(_MODELS[object_type].__table__, plan.inserts[object_type])
        for object_type in OBJECT_TYPES:
            self._update_by_id(_MODELS[object_type].__table__, plan.updates[object_type])
            self._mark_removed(_MODELS[object_type].__table__, plan.removals[object_type], now)
        members_table = ServiceMember.__table__
        for chunk in _chunks(plan.member_resets):
            self._execute(delete(members_table).where(members_table.c.service_id.in_(chunk)))
        self._insert(members_table, [{"service_id": s, "workload_id": w} for s, w in plan.members])
        self._insert(Change.__table__, plan.changes)

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            self._copy(table, rows)
        else:
            self._sqlite_executemany(table, rows)

    def _sqlite_executemany(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """One executemany at the driver, values pre-encoded as SQLAlchemy would store them.

        Going through SQLAlchemy's per-value type processing costs more than the insert itself.
        """
        columns = list(rows[0])
        time_positions = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
        encoded_times: dict[datetime, str] = {}

        def encode_time(value: datetime) -> str:
            text_value = encoded_times.get(value)
            if text_value is None:
                # The exact text SQLAlchemy's SQLite DATETIME writes and parses back.
                text_value = encoded_times[value] = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            return text_value

        params = []
        for values in _encoded_rows(rows, columns):
            for i in time_positions:
                if values[i] is not None:
                    values[i] = encode_time(values[i])
            params.append(tuple(values))
        marks = ", ".join("?" for _ in columns)
        column_list = ", ".join(f'"{c}"' for c in columns)
        self.statements += 1
        self.session.connection().exec_driver_sql(f'INSERT INTO "{table.name}" ({column_list}) VALUES ({marks})', params)

    def _copy(self, table: Table, rows: list[dict[str, Any]]) -> None:
        columns = list(rows[0])
        raw = self.session.connection().connection.driver_connection
        column_list = ", ".join(f'"{c}"' for c in columns)
        self.statements += 1
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({column_list}) FROM STDIN') as copy:
            for values in _encoded_rows(rows, columns):
                copy.write_row(values)

    def _update_by_id(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = [c for c in rows[0] if c != "id"]
        stmt = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({c: bindparam(c) for c in columns})
        )
        params = [{**{c: r[c] for c in columns}, "_id": r["id"]} for r in rows]
        self._execute(stmt, params)

    def _mark_removed(self, table: Table, ids: list[int], now: datetime) -> None:
        for chunk in _chunks(ids):
            self._execute(update(table).where(table.c.id.in_(chunk)).values(removed_at=now, changed_at=now))

