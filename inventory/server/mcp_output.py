"""What the MCP tools answer: rows sized for an agent's context, ISO 8601 times, and declared output schemas.

An agent pays for every character a tool returns, so the list tools answer compact rows (the keys an
agent needs to pick an object and act on it) and 50 of them unless it asks otherwise: ``fields`` names
keys (comma-separated, as on REST, or a list) or is ``*`` for every key. The list queries themselves,
their parameters and their checks are the declared ones (inventory/query_params.py, inventory/listing.py);
only these defaults differ from REST. The output schemas are generated from the same row models as the
OpenAPI document (listing.row_model / detail_model, server/models.py), with every row key optional,
since ``fields`` chooses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Union

import mcp_types as types
import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from inventory import listing
from inventory.query_params import ListQuery
from inventory.redact import redact_text
from inventory.schema import OBJECT_TYPES
from inventory.server.models import ApprovalOut, CallOut, ImpactOut, Row, SourceOut

# Rows per call when the agent does not say: enough to see a namespace, small enough to read.
DEFAULT_LIMIT = 50
EVERY_FIELD = "*"

# The keys of a compact row, per row type: identity, where it runs, and its state.
COMPACT_FIELDS: dict[str, tuple[str, ...]] = {
    "host": ("id", "source", "kind", "name", "status", "hostname"),
    "workload": ("id", "source", "kind", "namespace", "name", "status", "host"),
    "service": ("id", "source", "kind", "namespace", "name", "status", "members"),
    "change": ("id", "at", "source", "action", "object_type", "kind", "namespace", "name", "fields", "by"),
}


# --- arguments of the list tools -------------------------------------------------------------------


def list_arguments(query: ListQuery, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's arguments as the declared query takes them, with MCP's defaults (compact rows, 50 of them)."""
    values = dict(arguments)
    fields = values.get("fields")
    if isinstance(fields, list) and all(isinstance(f, str) for f in fields):
        fields = ",".join(fields)  # what an agent is likely to send; the declaration says comma-separated
    if fields is None:
        fields = ",".join(COMPACT_FIELDS[query.row])
    if isinstance(fields, str) and fields.strip() == EVERY_FIELD:
        values.pop("fields", None)
    else:
        values["fields"] = fields
    values.setdefault("limit", DEFAULT_LIMIT)
    return values


def list_input_schema(query: ListQuery) -> dict[str, Any]:
    """The declared query's input schema (listing.input_schema) with MCP's defaults said where they differ."""
    schema = listing.input_schema(query.name)
    properties = schema["properties"]
    properties["fields"] = {
        **properties["fields"],
        "description": f"Keys of each row, comma-separated (default: {','.join(COMPACT_FIELDS[query.row])}); "
        f"* for every key: {','.join(listing.output_keys(query.row))}.",
    }
    properties["limit"] = {**properties["limit"], "default": DEFAULT_LIMIT}
    return schema


# --- JSON: ISO 8601 times -----------------------------------------------------------------------


def dumps(data: Any) -> str:
    """JSON text with times in ISO 8601 (orjson writes datetimes as RFC 3339), anything else unknown as text."""
    return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def result(data: Any, *, error: bool = False) -> types.CallToolResult:
    structured = data if isinstance(data, dict) else {"items": data}
    text = dumps(structured)
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=orjson.loads(text), is_error=error
    )


def error_result(kind: str, message: str) -> types.CallToolResult:
    return result({"error": {"type": kind, "message": redact_text(message)}}, error=True)


# --- output schemas, from the row models ---------------------------------------------------------


def _optional_keys(model: type[BaseModel]) -> type[BaseModel]:
    """The row model with every key optional (``fields`` decides which keys a row has), each of its own type."""
    optional: dict[str, Any] = {name: (info.annotation, None) for name, info in model.model_fields.items()}
    return create_model(f"{model.__name__.removesuffix('Out')}Row", __config__=ConfigDict(extra="forbid"), **optional)


def _page_of(row_type: str) -> type[BaseModel]:
    """listing.page_model with rows of any keys: the same next_cursor and total."""
    declared = listing.page_model(row_type).model_fields
    rows = _optional_keys(listing.row_model(row_type))
    fields: dict[str, Any] = {"items": (list[rows], ...)}  # type: ignore[valid-type]
    fields.update((name, (info.annotation, info)) for name, info in declared.items() if name != "items")
    return create_model(f"{row_type.capitalize()}Rows", __config__=ConfigDict(extra="forbid"), **fields)


class SourcesOut(BaseModel):
    items: list[SourceOut]


class CallResultOut(CallOut):
    error: str | None = None
    summary: str | None = None
    # Set when the call waits for approval: what to do next.
    message: str | None = None


class RunOut(Row):
    """How an approved call's run ended, from its audit entry."""

    outcome: str
    error: str | None = None
    summary: str | None = None
    audit_seq: int
    at: datetime | None = None


class ApprovalStatusOut(ApprovalOut):
    outcome: str | None = None
    run: RunOut | None = None


def _terse(schema: Any) -> Any:
    """Without what only repeats the key names (titles) or says nothing (a null default): tools/list is read
    by the agent too."""
    if isinstance(schema, list):
        return [_terse(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    terse: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key in ("properties", "$defs"):  # name -> schema: the names are data, not keywords
            terse[key] = {name: _terse(sub) for name, sub in value.items()}
        else:
            terse[key] = _terse(value)
    return terse


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    return dict(_terse(model.model_json_schema(mode="serialization")))


def _show_schema() -> dict[str, Any]:
    """One of the detail models (the object's type decides which); an MCP output schema is an object."""
    details = tuple(listing.detail_model(name) for name in OBJECT_TYPES)
    adapter: TypeAdapter[Any] = TypeAdapter(Union[details])  # type: ignore[arg-type]  # noqa: UP007 - run time
    schema = adapter.json_schema(mode="serialization")
    return {"type": "object", **_terse(schema)}


def tool_output_schemas(queries: Mapping[str, ListQuery]) -> dict[str, dict[str, Any]]:
    """Every query tool's output schema: the list tools' pages, then the others."""
    schemas = {query.tool: output_schema(_page_of(query.row)) for query in queries.values()}
    return {
        **schemas,
        "inventory_show": _show_schema(),
        "inventory_sources_health": output_schema(SourcesOut),
        "inventory_impact": output_schema(ImpactOut),
        "inventory_approval_status": output_schema(ApprovalStatusOut),
    }


POLICY_CALL_SCHEMA = output_schema(CallResultOut)
