"""The object-type table: the one place that says what an object holds, and everything derived from it.

A field added to the table (with its record field and its column) round-trips through
reconcile, both stores, diffs and the query serializer with no edit anywhere else:
the test below declares one on a scratch schema and database and follows it through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Column as SqlColumn
from sqlalchemy import MetaData, String, create_engine, select
from sqlalchemy.orm import Session

from inventory.queries import object_row
from inventory.reconcile import reconcile
from inventory.records import Host, Ref, Service, Snapshot, Workload
from inventory.schema import SCHEMA, Column, ObjectType, Schema, canonical_fields
from inventory.storage.memory import MemoryStore
from inventory.storage.models import Base, Change
from inventory.storage.protocol import Store
from inventory.storage.store import SqlStore
from inventory.timeutil import utcnow


def test_canonical_fields_follow_the_table() -> None:
    host = Host(
        "node",
        "n1",
        "a",
        mac_addresses=("b", "a"),
        addresses=("10.0.0.2", "10.0.0.1"),
        backed_by=Ref("vm", "101"),
        labels={"x": "1"},
    )
    assert canonical_fields(host) == {
        "name": "a",
        "status": None,
        "hostname": None,
        "machine_uuid": None,
        "addresses": ["10.0.0.2", "10.0.0.1"],  # order kept: the first address is the primary one
        "mac_addresses": ["a", "b"],  # unordered: sorted
        "backed_by": "vm:101",
        "labels": {"x": "1"},
        "attributes": {},
    }
    service = Service("service", "s", "web", members=(Ref("pod", "p2"), Ref("pod", "p1")))
    assert canonical_fields(service)["members"] == ["pod:p2", "pod:p1"]


def test_every_type_map_is_the_table() -> None:
    from inventory.policy import targets
    from inventory.storage.models import OBJECT_MODELS, HostRow, ServiceRow, WorkloadRow

    assert {"host": HostRow, "workload": WorkloadRow, "service": ServiceRow} == OBJECT_MODELS
    assert {name: model.__table__ for name, model in OBJECT_MODELS.items()} == SCHEMA.tables
    assert targets.TARGET_TYPES == ("host", "workload", "service", "source")
    for object_type in SCHEMA:
        columns = set(object_type.table.c.keys())
        stored = {c.name for c in object_type.columns} | {link.column for link in object_type.links}
        assert stored <= columns, f"{object_type.name}: {stored - columns} declared but not in {object_type.table}"


def test_output_keys_are_the_documented_json() -> None:
    times = ("first_seen_at", "changed_at", "removed_at", "details_stale_since")
    common = ("id", "source", "kind", "external_id", "name", "status")
    assert SCHEMA["host"].output_keys == (
        *common,
        "hostname",
        "machine_uuid",
        "addresses",
        "mac_addresses",
        "backing_workload_id",
        "workloads",
        "machine",
        "labels",
        "attributes",
        *times,
    )
    assert SCHEMA["workload"].output_keys == (
        *common,
        "namespace",
        "host_id",
        "host",
        "parent_id",
        "labels",
        "attributes",
        *times,
    )
    assert SCHEMA["service"].output_keys == (*common, "namespace", "members", "labels", "attributes", *times)


# -- a new field, declared once -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RackedHost(Host):
    rack: str | None = None


def racked_schema() -> tuple[Schema, MetaData]:
    """The real schema plus ``rack`` on hosts: a copy of the real tables with one more column."""
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["hosts"].append_column(SqlColumn("rack", String(50)))
    host = SCHEMA["host"]
    schema = Schema(
        ObjectType("host", RackedHost, metadata.tables["hosts"], (*host.fields, Column("rack"))),
        ObjectType("workload", Workload, metadata.tables["workloads"], SCHEMA["workload"].fields),
        ObjectType("service", Service, metadata.tables["services"], SCHEMA["service"].fields),
    )
    return schema, metadata


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def racked(request: pytest.FixtureRequest) -> Iterator[tuple[Schema, Store, Session | None]]:
    schema, metadata = racked_schema()
    if request.param == "memory":
        yield schema, MemoryStore(schema), None
        return
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    engine = create_engine(url)
    metadata.create_all(engine)
    try:
        with Session(engine) as session:
            yield schema, SqlStore(session, schema), session
    finally:
        engine.dispose()


def test_a_field_declared_in_the_table_round_trips(racked: tuple[Schema, Store, Session | None]) -> None:
    schema, store, session = racked

    def sync(rack: str, run_id: int) -> tuple[int, int, int]:
        snapshot = Snapshot(
            hosts=[RackedHost("node", "n1", "node-a", rack=rack)],
            workloads=[Workload("pod", "p1", "web-1", host=Ref("node", "n1"))],
        )
        result = reconcile(snapshot, store, source_id=1, run_id=run_id, now=utcnow())
        return result.created, result.updated, result.unchanged

    assert sync("r1", 1) == (2, 0, 0)
    assert sync("r1", 2) == (0, 0, 2)  # read back as written: no phantom update
    assert sync("r2", 3) == (0, 1, 1)
    (host_id,) = (o.id for o in store.load_state(1).objects["host"].values())
    assert store.load_fields("host", [host_id])[host_id]["rack"] == "r2"

    if isinstance(store, MemoryStore):
        (change,) = [c.change for c in store.changes if c.change.action == "updated"]
        assert change.diff == {"rack": ["r1", "r2"]}
        return
    assert session is not None
    session.flush()
    row = session.execute(select(schema["host"].table)).one()
    serialized = object_row(schema["host"], row, "lab", workloads=1, machine=None)
    assert (serialized["rack"], serialized["name"], serialized["workloads"]) == ("r2", "node-a", 1)
    assert list(serialized) == [
        *SCHEMA["host"].output_keys[:-4],
        "rack",
        "first_seen_at",
        "changed_at",
        "removed_at",
        "details_stale_since",
    ]
    diff = session.execute(select(Change.diff).where(Change.action == "updated")).scalar_one()
    assert diff == {"rack": ["r1", "r2"]}


def test_the_real_schema_has_no_rack() -> None:
    """The scratch schema above is a copy: it leaves the real table and models alone."""
    racked_schema()
    assert "rack" not in Base.metadata.tables["hosts"].c
    assert "rack" not in {c.name for c in SCHEMA["host"].columns}
