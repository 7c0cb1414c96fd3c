"""The SQL implementation of the ``Store`` protocol reconcile writes through (inventory.storage.protocol).

Every method is set-based: one statement per table (or per chunk of a
thousand ids), never one round trip per row. On PostgreSQL new rows go in with
COPY, their ids allocated up front from the table's sequence so that links
between new rows (a pod and its new deployment) are known before anything is
written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, String, Table, any_, bindparam, delete, func, insert, literal, select, text, update

from inventory.outcome import SyncStatus
from inventory.records import to_json_bytes
from inventory.sanitize import column_length, fit
from inventory.schema import IDENTITY_COLUMNS, SCHEMA, TIME_COLUMNS, Schema
from inventory.storage.database import as_connection
from inventory.storage.protocol import Key, ObjectWrite, SourceState, StoredObject, WritePlan
from inventory.storage.tables import UTCDateTime, changes, service_members, sources, sync_runs
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

CHUNK = 1000
# The error of a run found still "running" by the next sync of its source (fail_orphaned_runs).
INTERRUPTED_RUN = "interrupted: the process syncing it ended"
# The columns of a change row, in the order apply() fills them.
_CHANGE_COLUMNS = (
    "source_id",
    "sync_run_id",
    "at",
    "object_type",
    "object_id",
    "kind",
    "external_id",
    "name",
    "action",
    "diff",
    "cause",
)
# pg_advisory_xact_lock keys (+0 hosts, +1 workloads, +2 services): "inve" in ASCII.
_ID_ALLOCATION_LOCK = 0x696E7665_00


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dumps(value: Any) -> str:
    return to_json_bytes(value).decode()


def _encoded_rows(rows: list[list[Any]], columns: Sequence[str], json_columns: Collection[str]) -> Iterator[list[Any]]:
    """Each row's values (in column order), JSON columns encoded as text in place."""
    json_positions = [i for i, c in enumerate(columns) if c in json_columns]
    for values in rows:
        for i in json_positions:
            if values[i] is not None:
                values[i] = _dumps(values[i])
        yield values


class SqlStore:
    """Reads and writes of the sync engine, inside the caller's transaction (the ``Store`` protocol on SQL)."""

    def __init__(self, executor: Connection | Session, schema: Schema = SCHEMA) -> None:
        self.connection = as_connection(executor)
        self.schema = schema
        # Per table: the columns written as JSON text (the object types' JSON columns, and the changes' diff).
        # Per object type: the columns its writes fill besides identity and times (its columns, its
        # link columns, the hash), and how to read their values from an ObjectWrite.
        self._row_columns = {
            t.name: (*(c.name for c in t.columns), *(k.column for k in t.links), "content_hash") for t in schema
        }
        self._row_shapes = {
            t.name: (itemgetter(*(c.name for c in t.columns)), tuple(k.field for k in t.links)) for t in schema
        }
        self._json_columns = {t.table.name: t.json_columns for t in schema}
        self._json_columns[changes.name] = frozenset({"diff", "cause"})
        self.statements = 0  # statements sent, COPY included: the benchmark prints it

    @property
    def dialect(self) -> str:
        return self.connection.dialect.name

    def _execute(self, statement: Any, params: Any = None) -> Any:
        self.statements += 1
        return self.connection.execute(statement, params) if params is not None else self.connection.execute(statement)

    # -- sources and runs ------------------------------------------------------------

    def source_id(
        self, name: str, type_name: str, identity: str | None = None, *, configured: Collection[str] = ()
    ) -> int:
        """The id of the named source, created on first use.

        A source that is new by name but whose identity matches an existing source of
        the same type that is no longer configured is that source renamed: it is
        adopted, not duplicated. Sources still configured are never merged, even when
        their identities collide (cloned Docker engines can share an ID).
        """
        limit = column_length(sources, "identity")
        if identity is not None and limit is not None:
            identity = fit(identity, limit)
        found = self._execute(
            select(sources.c.id, sources.c.type, sources.c.identity).where(sources.c.name == name)
        ).first()
        if found is None and identity is not None:
            adopted = self._execute(
                select(sources.c.id)
                .where(
                    sources.c.identity == identity,
                    sources.c.type == type_name,
                    sources.c.name.not_in(list(configured) or [""]),
                )
                .order_by(sources.c.id)
            ).first()
            if adopted is not None:
                self._execute(update(sources).where(sources.c.id == adopted.id).values(name=name))
                return int(adopted.id)
        if found is not None:
            changed = {}
            if found.type != type_name:
                changed["type"] = type_name
            if identity is not None and found.identity != identity:
                changed["identity"] = identity
            if changed:
                self._execute(update(sources).where(sources.c.id == found.id).values(**changed))
            return int(found.id)
        # Both dialects' INSERT ... ON CONFLICT DO NOTHING are spelled the same; each is imported only where used.
        dialect_insert: Any
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        self._execute(
            dialect_insert(sources)
            .values(name=name, type=type_name, identity=identity, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return int(self._execute(select(sources.c.id).where(sources.c.name == name)).scalar_one())

    def sharing_identity(
        self, source_id: int, type_name: str, identity: str | None, configured: Collection[str]
    ) -> list[str]:
        """The other configured sources of this type that reported the same identity: one system read twice."""
        if identity is None or not configured:
            return []
        limit = column_length(sources, "identity")
        if limit is not None:
            identity = fit(identity, limit)
        query = (
            select(sources.c.name)
            .where(
                sources.c.identity == identity,
                sources.c.type == type_name,
                sources.c.id != source_id,
                sources.c.name.in_(list(configured)),
            )
            .order_by(sources.c.name)
        )
        return [str(name) for name in self._execute(query).scalars()]

    def start_run(self, source_id: int, started_at: datetime | None = None) -> int:
        """A new run of the source; called under the source's sync lock, which also ends its orphaned runs."""
        self.fail_orphaned_runs(source_id)
        started = self._execute(
            insert(sync_runs).values(
                source_id=source_id, started_at=started_at or utcnow(), status=SyncStatus.RUNNING.value
            )
        )
        return int(started.inserted_primary_key[0])

    def fail_orphaned_runs(self, source_id: int) -> int:
        """Mark the source's runs still ``running`` as failed: the caller holds the source's lock, so nobody runs
        them (their process ended mid-sync, its lock going with it). A run is written whole in one transaction,
        so only a process that committed a run before finishing it (an older version) leaves one behind."""
        ended = self._execute(
            update(sync_runs)
            .where(sync_runs.c.source_id == source_id, sync_runs.c.status == SyncStatus.RUNNING.value)
            .values(status=SyncStatus.FAILED.value, finished_at=utcnow(), error=INTERRUPTED_RUN)
        )
        return int(ended.rowcount or 0)

    def finish_run(self, run_id: int, **values: Any) -> None:
        values.setdefault("finished_at", utcnow())
        self._execute(update(sync_runs).where(sync_runs.c.id == run_id).values(**values))

    # -- reads for reconcile ---------------------------------------------------------

    def load_state(self, source_id: int, keys: Mapping[str, Collection[Key]] | None = None) -> SourceState:
        """The source's live objects: the removed rows retention keeps (most of a table with a long
        ``removed_objects`` window) are never read whole, only by key (``load_removed``). With ``keys``
        (a delta's few objects), only those, by the same keyed lookup as ``load_removed``."""
        state = SourceState()
        for object_type, table in self.schema.tables.items():
            live = self._stored_select(table).where(table.c.source_id == source_id, table.c.removed_at.is_(None))
            if keys is None:
                rows = list(self._execute(live))
            else:
                by_kind: dict[str, set[str]] = {}
                for kind, external_id in keys.get(object_type, ()):
                    by_kind.setdefault(kind, set()).add(external_id)
                rows = [
                    row
                    for kind, external_ids in sorted(by_kind.items())
                    for row in self._execute(
                        live.where(table.c.kind == kind, self._one_of(table.c.external_id)),
                        {"external_ids": self._list_parameter(sorted(external_ids))},
                    )
                ]
            state.objects[object_type] = {(kind, ext): StoredObject(*rest) for kind, ext, *rest in rows}
        return state

    def load_removed(self, source_id: int, keys: Mapping[str, Collection[Key]]) -> dict[str, dict[Key, StoredObject]]:
        """The removed objects among ``keys``: per kind, one statement of index lookups on (source_id, kind,
        external_id), the external ids sent as one parameter (an array on PostgreSQL, a JSON list read by
        json_each on SQLite): an IN list of bound parameters cost ~5x as much per key (measured: 15,000
        keys took 0.66 s against 0.14 s on PostgreSQL)."""
        found: dict[str, dict[Key, StoredObject]] = {}
        for object_type, wanted in keys.items():
            table = self.schema[object_type].table
            by_kind: dict[str, set[str]] = {}
            for kind, external_id in wanted:
                by_kind.setdefault(kind, set()).add(external_id)
            objects = found.setdefault(object_type, {})
            for kind, external_ids in sorted(by_kind.items()):
                stmt = self._stored_select(table).where(
                    table.c.source_id == source_id,
                    table.c.kind == kind,
                    self._one_of(table.c.external_id),
                    table.c.removed_at.is_not(None),
                )
                rows = self._execute(stmt, {"external_ids": self._list_parameter(sorted(external_ids))})
                objects.update({(k, ext): StoredObject(*rest) for k, ext, *rest in rows})
        return found

    def _one_of(self, column: Any) -> Any:
        """``column`` is one of the list bound as ``external_ids`` (see ``_list_parameter``)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return column == any_(bindparam("external_ids", type_=ARRAY(String)))
        return column.in_(select(text("value")).select_from(func.json_each(bindparam("external_ids"))))

    def _list_parameter(self, values: list[str]) -> Any:
        return values if self.dialect == "postgresql" else _dumps(values)

    @staticmethod
    def _stored_select(table: Table) -> Any:
        """What reconcile knows of a stored object: its key, then StoredObject's fields in order."""
        c = table.c
        return select(
            c.kind,
            c.external_id,
            c.id,
            c.content_hash,
            c.removed_at.is_not(None),
            c.name,
            c.namespace if "namespace" in c else literal(None),
            c.details_stale_since.is_not(None),
        )

    def load_fields(self, object_type: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Canonical fields (as ObjectType.canonical_fields shapes them) of stored objects, for diffs."""
        spec = self.schema[object_type]
        table = spec.table
        names = [column.name for column in spec.columns]
        targets = [(link, self.schema[link.target].table.alias(f"link_{i}")) for i, link in enumerate(spec.links)]
        stmt = select(
            table.c.id,
            *(table.c[name] for name in names),
            *(column for _, target in targets for column in (target.c.kind, target.c.external_id)),
        )
        for link, target in targets:
            stmt = stmt.outerjoin(target, table.c[link.column] == target.c.id)
        result: dict[int, dict[str, Any]] = {}
        for chunk in _chunks(list(ids)):
            for row_id, *values in self._execute(stmt.where(table.c.id.in_(chunk))):
                stored, link_values = values[: len(names)], values[len(names) :]
                fields = dict(zip(names, stored, strict=True))
                for i, (link, _) in enumerate(targets):
                    kind, external_id = link_values[2 * i], link_values[2 * i + 1]
                    fields[link.field] = f"{kind}:{external_id}" if kind is not None else None
                if spec.members is not None:
                    fields[spec.members.field] = []
                result[row_id] = fields
            if spec.members is not None:
                member = self.schema[spec.members.target].table
                members = self._execute(
                    select(service_members.c.service_id, member.c.kind, member.c.external_id)
                    .join(member, service_members.c.workload_id == member.c.id)
                    .where(service_members.c.service_id.in_(chunk))
                )
                for owner_id, kind, external_id in members:
                    result[owner_id][spec.members.field].append(f"{kind}:{external_id}")
        if spec.members is not None:
            for fields in result.values():
                fields[spec.members.field].sort()
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
        table = self.schema[object_type].table
        if self.dialect == "postgresql":
            self.statements += 2
            with self.connection.engine.begin() as allocation:
                lock_key = _ID_ALLOCATION_LOCK + self.schema.names.index(object_type)
                allocation.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
                start = allocation.execute(
                    text(
                        "SELECT setval(pg_get_serial_sequence(:table, 'id'), nextval(pg_get_serial_sequence(:table, "
                        "'id')) + :n - 1) - :n + 1"
                    ),
                    {"table": table.name, "n": count},
                ).scalar_one()
        else:
            start = self._execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one() + 1
        return list(range(start, start + count))

    # -- writes -----------------------------------------------------------------------

    def apply(self, plan: WritePlan) -> None:
        now, source_id = plan.now, plan.source_id
        inserts: dict[str, list[list[Any]]] = {t: [] for t in self.schema.names}
        for write in plan.creates:
            record = write.record
            values = [
                write.id,
                source_id,
                record.kind,
                record.external_id,
                *self._object_values(write),
                now,
                now,
                None,
                now if write.stale else None,
            ]
            inserts[write.object_type].append(values)
        updates: dict[str, list[dict[str, Any]]] = {t: [] for t in self.schema.names}
        for write in plan.updates:
            columns = self._row_columns[write.object_type]
            updates[write.object_type].append(
                {
                    "id": write.id,
                    **dict(zip(columns, self._object_values(write), strict=True)),
                    "changed_at": now,
                    "removed_at": None,
                }
            )
        member_owners = {t.name for t in self.schema if t.members is not None}
        member_resets = [w.id for w in plan.updates if w.object_type in member_owners]
        members = [
            [w.id, member_id]
            for w in (*plan.creates, *plan.updates)
            if w.object_type in member_owners
            for member_id in w.members
        ]
        change_rows = [
            [
                source_id,
                plan.run_id,
                now,
                c.object_type,
                c.object_id,
                c.kind,
                c.external_id,
                c.name,
                c.action,
                c.diff,
                c.cause,
            ]
            for c in plan.changes
        ]
        for object_type in self.schema:
            columns = (*IDENTITY_COLUMNS, *self._row_columns[object_type.name], *TIME_COLUMNS)
            self._insert(object_type.table, columns, inserts[object_type.name])
        for object_type in self.schema:
            self._update_by_id(object_type.table, updates[object_type.name])
            self._mark_removed(object_type.table, plan.removals[object_type.name], now)
            self._mark_stale(object_type.table, plan.stale[object_type.name], now)
            self._mark_stale(object_type.table, plan.fresh[object_type.name], None)
        for chunk in _chunks(member_resets):
            self._execute(delete(service_members).where(service_members.c.service_id.in_(chunk)))
        self._insert(service_members, ("service_id", "workload_id"), members)
        self._insert(changes, _CHANGE_COLUMNS, change_rows)

    def _object_values(self, write: ObjectWrite) -> list[Any]:
        """An object's values for ``_row_columns``: its columns, its links as ids, its hash."""
        pick, link_fields = self._row_shapes[write.object_type]
        links = write.links
        return [*pick(write.fields), *[links.get(f) for f in link_fields], write.content_hash]

    def _insert(self, table: Table, columns: Sequence[str], rows: list[list[Any]]) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            self._copy(table, columns, rows)
        else:
            self._sqlite_executemany(table, columns, rows)

    def _sqlite_executemany(self, table: Table, columns: Sequence[str], rows: list[list[Any]]) -> None:
        """One executemany at the driver, values pre-encoded as SQLAlchemy would store them.

        Going through SQLAlchemy's per-value type processing costs more than the insert itself.
        """
        time_positions = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
        encoded_times: dict[datetime, str] = {}

        def encode_time(value: datetime) -> str:
            text_value = encoded_times.get(value)
            if text_value is None:
                # The exact text SQLAlchemy's SQLite DATETIME writes and parses back.
                text_value = encoded_times[value] = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            return text_value

        params = []
        for values in _encoded_rows(rows, columns, self._json_columns.get(table.name, ())):
            for i in time_positions:
                if values[i] is not None:
                    values[i] = encode_time(values[i])
            params.append(tuple(values))
        marks = ", ".join("?" for _ in columns)
        column_list = ", ".join(f'"{c}"' for c in columns)
        self.statements += 1
        self.connection.exec_driver_sql(f'INSERT INTO "{table.name}" ({column_list}) VALUES ({marks})', params)

    def _copy(self, table: Table, columns: Sequence[str], rows: list[list[Any]]) -> None:
        raw = self.connection.connection.driver_connection
        assert raw is not None, "a checked-out connection has its driver connection"
        column_list = ", ".join(f'"{c}"' for c in columns)
        self.statements += 1
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({column_list}) FROM STDIN') as copy:
            for values in _encoded_rows(rows, columns, self._json_columns.get(table.name, ())):
                copy.write_row(values)

    def _update_by_id(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = [c for c in rows[0] if c != "id"]
        stmt = update(table).where(table.c.id == bindparam("_id")).values({c: bindparam(c) for c in columns})
        params = [{**{c: r[c] for c in columns}, "_id": r["id"]} for r in rows]
        # In chunks: a pipelined executemany answers only at its end, and a server silent for
        # longer than answer_timeout is taken for a hung one (storage/pg_waits.py).
        for chunk in _chunks(params):
            self._execute(stmt, list(chunk))

    def _mark_removed(self, table: Table, ids: list[int], now: datetime) -> None:
        for chunk in _chunks(ids):
            self._execute(update(table).where(table.c.id.in_(chunk)).values(removed_at=now, changed_at=now))

    def _mark_stale(self, table: Table, ids: list[int], since: datetime | None) -> None:
        """Details stale since ``since`` (an earlier mark is kept), or read whole again (None)."""
        column = table.c.details_stale_since
        for chunk in _chunks(ids):
            stmt = update(table).where(table.c.id.in_(chunk))
            stmt = stmt.where(column.is_(None)) if since is not None else stmt.where(column.is_not(None))
            self._execute(stmt.values(details_stale_since=since))
