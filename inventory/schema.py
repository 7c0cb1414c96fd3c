"""The object-type table: what each kind of inventory object holds, and where each field lives.

One entry per object type (host, workload, service) names its record class, its
table and its fields in the order of the documented JSON output. Everything else is
derived from it: the canonical fields compared and stored (``canonical_fields``), the
columns the store writes and reads back, how reconcile resolves links, and the
query serializers. Adding a field is one ``Column`` here (beside the record field it
reads and the table column it fills, inventory/storage/tables.py) plus an Alembic revision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from inventory.records import Host, Record, Ref, Service, Workload
from inventory.storage.tables import hosts, services, workloads

if TYPE_CHECKING:
    from sqlalchemy import Table


@dataclass(frozen=True)
class Column:
    """A record field stored in a column of the same name.

    ``json``: the column holds JSON, a "list" (the record holds a tuple) or a "mapping".
    ``unordered``: a list whose order carries no meaning, sorted before it is hashed,
    stored or compared.
    """

    name: str
    json: Literal["list", "mapping"] | None = None
    unordered: bool = False


@dataclass(frozen=True)
class Link:
    """A record field holding a ``Ref`` to another object of the same source, stored as that object's row id."""

    field: str
    column: str
    target: str


@dataclass(frozen=True)
class Members:
    """A record field holding many ``Ref``s, stored as rows of the service_members table."""

    field: str
    target: str


@dataclass(frozen=True)
class Computed:
    """A query output key the database computes (a count, a joined name); no record field.

    ``type``: its JSON type for the API's response models (stored fields take their column's).
    """

    key: str
    type: Any = Any


FieldSpec = Column | Link | Members | Computed
# Columns every object row has besides its fields and its content_hash: identity, and times.
IDENTITY_COLUMNS = ("id", "source_id", "kind", "external_id")
TIME_COLUMNS = ("first_seen_at", "changed_at", "removed_at", "details_stale_since")


@dataclass(frozen=True)
class ObjectType:
    """One kind of inventory object: its record class, its table, and its fields in JSON output order."""

    name: str
    record: type[Any]
    table: Table
    fields: tuple[FieldSpec, ...]
    _canonical: Callable[[Any], dict[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_canonical", _canonical_builder(self))

    @property
    def plural(self) -> str:
        return f"{self.name}s"

    @cached_property
    def columns(self) -> tuple[Column, ...]:
        return tuple(f for f in self.fields if isinstance(f, Column))

    @cached_property
    def links(self) -> tuple[Link, ...]:
        return tuple(f for f in self.fields if isinstance(f, Link))

    @cached_property
    def members(self) -> Members | None:
        return next((f for f in self.fields if isinstance(f, Members)), None)

    @cached_property
    def unordered_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.unordered)

    @cached_property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.columns if c.json is not None)

    @cached_property
    def output_keys(self) -> tuple[str, ...]:
        """The keys of a serialized row, in the documented order."""
        keys = ["id", "source", "kind", "external_id"]
        for spec in self.fields:
            if isinstance(spec, Column):
                keys.append(spec.name)
            elif isinstance(spec, Link):
                keys.append(spec.column)
            elif isinstance(spec, Computed):
                keys.append(spec.key)
        return (*keys, *TIME_COLUMNS)

    def canonical_fields(self, record: Record) -> dict[str, Any]:
        return self._canonical(record)


def _ref_text(ref: Ref | None) -> str | None:
    return None if ref is None else str(ref)


def _canonical_builder(object_type: ObjectType) -> Callable[[Any], dict[str, Any]]:
    """A function from a record to its canonical fields, generated from the table.

    It runs once per changed object (21,000 times in the benchmark's first sync), so it is
    compiled to one dict display, as a hand-written function would be (the technique of
    the standard library's dataclasses): a generic loop over the fields costs four times more.
    """
    items = []
    for spec in object_type.fields:
        if isinstance(spec, Computed):
            continue
        name = spec.name if isinstance(spec, Column) else spec.field
        if not name.isidentifier():
            raise ValueError(f"{object_type.name}: field name {name!r} is not an identifier")
        value = f"record.{name}"
        if isinstance(spec, Column):
            if spec.unordered:
                value = f"sorted({value})"
            elif spec.json is not None:
                value = f"{'list' if spec.json == 'list' else 'dict'}({value})"
        elif isinstance(spec, Link):
            value = f"_ref_text({value})"
        else:
            value = f"[str(ref) for ref in {value}]"
        items.append(f"{name!r}: {value}")
    source = "def canonical(record):\n    return {" + ", ".join(items) + "}\n"
    namespace: dict[str, Any] = {"_ref_text": _ref_text}
    exec(compile(source, f"<canonical fields of {object_type.name}>", "exec"), namespace)
    canonical: Callable[[Any], dict[str, Any]] = namespace["canonical"]
    return canonical


class Schema:
    """The object types, looked up by name or by record class."""

    def __init__(self, *types: ObjectType) -> None:
        self.types: dict[str, ObjectType] = {t.name: t for t in types}
        self._by_record: dict[type[Any], ObjectType] = {t.record: t for t in types}

    def __getitem__(self, name: str) -> ObjectType:
        return self.types[name]

    def __iter__(self) -> Iterator[ObjectType]:
        return iter(self.types.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.types)

    @property
    def tables(self) -> dict[str, Table]:
        """Object type name -> its table."""
        return {t.name: t.table for t in self}

    def of(self, record: Record) -> ObjectType:
        found = self._by_record.get(type(record))
        if found is None:
            found = next((t for t in self if isinstance(record, t.record)), None)
            if found is None:
                raise TypeError(f"{type(record).__name__} is not a record type of this schema")
        return found


SCHEMA = Schema(
    ObjectType(
        "host",
        Host,
        hosts,
        (
            Column("name"),
            Column("status"),
            Column("hostname"),
            Column("machine_uuid"),
            Column("addresses", json="list"),
            Column("mac_addresses", json="list", unordered=True),
            Link("backed_by", "backing_workload_id", "workload"),
            Computed("workloads", int),
            Computed("machine", int | None),
            Column("labels", json="mapping"),
            Column("attributes", json="mapping"),
        ),
    ),
    ObjectType(
        "workload",
        Workload,
        workloads,
        (
            Column("name"),
            Column("status"),
            Column("namespace"),
            Link("host", "host_id", "host"),
            Computed("host", str | None),
            Link("parent", "parent_id", "workload"),
            Column("labels", json="mapping"),
            Column("attributes", json="mapping"),
        ),
    ),
    ObjectType(
        "service",
        Service,
        services,
        (
            Column("name"),
            Column("status"),
            Column("namespace"),
            Members("members", "workload"),
            Computed("members", int),
            Column("labels", json="mapping"),
            Column("attributes", json="mapping"),
        ),
    ),
)
OBJECT_TYPES = SCHEMA.names


def canonical_fields(record: Record) -> dict[str, Any]:
    """The normalized fields of a record as stored and compared (identity excluded)."""
    return SCHEMA.of(record).canonical_fields(record)
