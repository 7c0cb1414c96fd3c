"""The declared list queries run for REST, MCP and the web: validated parameters, keyset pages, totals.

``params_model`` turns a query's declared parameters (inventory/query_params.py) into the pydantic
model that validates a query string or a tool's arguments (unknown parameters refused) and gives
the OpenAPI document and the MCP input schema. ``run_list`` runs one page: the rows after the
cursor's position in the declared order, the opaque cursor of the next page and the total the
filter holds. ``row_model`` derives each row's response model from the object-type table.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy.orm import Session

from inventory import queries
from inventory.errors import UsageError
from inventory.query_params import LIST_QUERIES, ListQuery, Param
from inventory.schema import SCHEMA, Column, Computed, Link


def _annotation(param: Param) -> tuple[Any, Any]:
    if param.type == "list":
        return list[str], Field(default_factory=list, description=param.help)
    if param.type == "bool":
        return bool, Field(default=bool(param.default), description=param.help)
    if param.type == "int":
        default = param.default_on_api
        return (int if default is not None else int | None), Field(
            default=default, ge=param.minimum, le=param.maximum, description=param.help
        )
    if param.choices:
        return Literal[param.choices] | None, Field(default=param.default, description=param.help)
    return (str if param.default is not None else str | None), Field(default=param.default, description=param.help)


@functools.cache
def params_model(query_name: str) -> type[BaseModel]:
    """The model of a query's REST / MCP parameters; any other parameter is refused."""
    query = LIST_QUERIES[query_name]
    fields: dict[str, Any] = {p.name: _annotation(p) for p in query.api_params}
    title = "".join(word.capitalize() for word in query.name.split("_")) + "Query"
    model: type[BaseModel] = create_model(title, __config__=ConfigDict(extra="forbid"), **fields)
    return model


def input_schema(query_name: str) -> dict[str, Any]:
    """The JSON schema of a query's parameters, as an MCP tool's input schema."""
    schema = params_model(query_name).model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema["additionalProperties"] = False
    return schema


# --- cursors -------------------------------------------------------------------------------------


def _fingerprint(query: ListQuery, values: Mapping[str, Any]) -> str:
    kept = {
        k: v for k, v in values.items() if k not in ("cursor", "limit", "fields") and v not in (None, [], (), False)
    }
    text = json.dumps({"q": query.name, **kept}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return {"t": value.isoformat()} if isinstance(value, datetime) else value


def _restored(value: Any) -> Any:
    return datetime.fromisoformat(value["t"]) if isinstance(value, dict) and set(value) == {"t"} else value


def encode_cursor(query: ListQuery, values: Mapping[str, Any], position: list[Any]) -> str:
    raw = json.dumps({"f": _fingerprint(query, values), "k": [_plain(v) for v in position]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(query: ListQuery, values: Mapping[str, Any], cursor: str | None) -> list[Any] | None:
    """The position a cursor points after; a cursor of another query, filter or order (or garbled) is refused."""
    if not cursor:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        fingerprint, position = str(data["f"]), [_restored(v) for v in data["k"]]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"cursor {cursor!r} is not one this server gave out") from None
    if fingerprint != _fingerprint(query, values):
        raise UsageError("the cursor belongs to a list with other filters or another order; start again without it")
    return position


# --- one page ------------------------------------------------------------------------------------


def output_keys(row_type: str) -> tuple[str, ...]:
    return queries.CHANGE_KEYS if row_type == "change" else SCHEMA[row_type].output_keys


def _projection(row_type: str, fields: str | None) -> tuple[str, ...] | None:
    if not fields:
        return None
    wanted = tuple(f.strip() for f in fields.split(",") if f.strip())
    known = output_keys(row_type)
    unknown = [f for f in wanted if f not in known]
    if unknown:
        raise UsageError(f"unknown field(s) {', '.join(unknown)} (fields: {', '.join(known)})")
    return wanted


def validate(query_name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments checked against the query's model (MCP's, the web's): a usage error names what is wrong."""
    from pydantic import ValidationError

    try:
        return params_model(query_name).model_validate(dict(values)).model_dump()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"{query_name}: {problems}") from None


def run_list(session: Session, query_name: str, values: Mapping[str, Any], *, total: bool = True) -> dict[str, Any]:
    """One page of a declared list query: ``{"items", "next_cursor", "total"}``.

    ``values`` are the validated parameters (``validate``, or the REST model's dump). The page is
    fetched with one row more than asked for, to know whether another follows; the next cursor
    holds the order keys of the page's last row. ``total`` counts the filter's rows whatever the page.
    """
    query = LIST_QUERIES[query_name]
    limit = int(values["limit"])
    sort = queries.parse_sort(values.get("sort"), query.sortable)
    position = decode_cursor(query, values, values.get("cursor"))
    fields = _projection(query.row, values.get("fields"))
    counted: int | None = None
    if query.row == "change":
        flt = _change_filter(values, sort, position, limit + 1)
        rows = queries.changes_page(session, flt)
        if total:
            counted = queries.count_changes(session, flt)
    else:
        flt_obj = _object_filter(query, values, sort, position, limit + 1)
        rows = getattr(queries, f"list_{query.name}")(session, flt_obj)
        if total:
            counted = queries.count_objects(session, query.row, flt_obj)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        order = queries.order_fields(query.row, sort)
        next_cursor = encode_cursor(query, values, queries.order_keys(rows[-1], order))
    if fields is not None:
        rows = [{key: row[key] for key in fields} for row in rows]
    return {"items": rows, "next_cursor": next_cursor, "total": counted}


def _object_filter(
    query: ListQuery, values: Mapping[str, Any], sort: Any, position: list[Any] | None, limit: int
) -> queries.ObjectFilter:
    declared = {p.name for p in query.params}
    return queries.ObjectFilter(
        source=values.get("source"),
        kind=values.get("kind"),
        status=values.get("status"),
        name=values.get("name"),
        labels=queries.parse_labels(values.get("label") or ()),
        namespace=values.get("namespace") if "namespace" in declared else None,
        host=values.get("host") if "host" in declared else None,
        include_removed=bool(values.get("include_removed")),
        limit=limit,
        sort=sort,
        after=position,
    )


def _change_filter(
    values: Mapping[str, Any], sort: Any, position: list[Any] | None, limit: int
) -> queries.ChangeFilter:
    from inventory.timeutil import parse_period

    try:
        since, until = parse_period(values.get("since") or "1d", values.get("until"))
        assert since is not None  # since has a default
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return queries.ChangeFilter(
        since=since,
        until=until,
        source=values.get("source"),
        kind=values.get("kind"),
        object_type=values.get("type"),
        action=values.get("action"),
        limit=limit,
        sort=sort,
        after=position,
    )


# --- response models, from the object-type table -------------------------------------------------


def _column_type(model: type[Any], name: str) -> Any:
    """A stored column's Python type, read from the row model's ``Mapped[...]`` annotation."""
    hints = typing.get_type_hints(model)
    return typing.get_args(hints[name])[0]


def _row_fields(row_type: str) -> dict[str, Any]:
    from inventory.storage.models import OBJECT_MODELS, Change

    if row_type == "change":
        return {
            key: ((_column_type(Change, key) if declared is None else declared), None)
            for key, declared in queries.CHANGE_OUTPUT
        }
    object_type = SCHEMA[row_type]
    computed = {spec.key: spec.type for spec in object_type.fields if isinstance(spec, Computed)}
    stored = {spec.name for spec in object_type.fields if isinstance(spec, Column)}
    stored |= {spec.column for spec in object_type.fields if isinstance(spec, Link)}
    fields: dict[str, Any] = {}
    for key in object_type.output_keys:
        if key == "source":
            fields[key] = (str, ...)
        elif key in computed:
            fields[key] = (computed[key], None)
        else:
            fields[key] = (_column_type(OBJECT_MODELS[row_type], key), None)
    return fields


@functools.cache
def row_model(row_type: str) -> type[BaseModel]:
    """A listed row: every output key of its type (the object-type table, or the changes' CHANGE_OUTPUT)."""
    name = f"{row_type.capitalize()}Out"
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), **_row_fields(row_type))
    return model


class Brief(BaseModel):
    """A linked object as ``show`` names it."""

    model_config = ConfigDict(extra="allow")

    id: int
    kind: str
    name: str
    status: str | None = None
    source: str | None = None
    removed_at: datetime | None = None


# What `show` says beyond a listed row, per type (its links), and the keys it says otherwise.
_DETAIL_KEYS: dict[str, dict[str, Any]] = {
    "host": {
        "workloads": list[Brief],
        "removed_workloads": list[Brief] | None,
        "backing_workload": Brief | None,
        "same_machine": list[Brief],
        "machine_uuid_shared_with": list[Brief],
    },
    "workload": {"host": Brief | None, "parent": Brief | None, "children": list[Brief], "services": list[Brief]},
    "service": {"members": list[Brief]},
}


@functools.cache
def detail_model(row_type: str) -> type[BaseModel]:
    """One object as ``show`` has it: its row, its links, its recent changes."""
    fields = _row_fields(row_type)
    for key, annotation in _DETAIL_KEYS[row_type].items():
        fields[key] = (annotation, None)
    fields["changes"] = (list[dict[str, Any]], ...)
    name = f"{row_type.capitalize()}Detail"
    model: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    return model


@functools.cache
def page_model(row_type: str) -> type[BaseModel]:
    name = f"{row_type.capitalize()}Page"
    model: type[BaseModel] = create_model(
        name,
        __config__=ConfigDict(extra="forbid"),
        items=(list[row_model(row_type)], ...),  # type: ignore[misc,arg-type]
        next_cursor=(str | None, Field(None, description="The cursor of the next page; null on the last one.")),
        total=(int | None, Field(None, description="Rows the filter holds, whatever the page.")),
    )
    return model
