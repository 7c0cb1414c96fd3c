"""Values every engine stores alike: no NUL character (PostgreSQL refuses it in text and JSON), no string longer
than its column (PostgreSQL refuses it, SQLite would store it). reconcile passes every record through here
once, so one odd object costs a warning naming it, never its whole source.

A cut identity keeps a digest of the whole value, so two long ids never become one; links to a cut
id are cut the same way, so they still resolve.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from inventory.records import Record, Ref, to_json_bytes
from inventory.schema import Link, Members, ObjectType, Schema

NUL = "\x00"
_NUL_JSON = b"\\u0000"  # how orjson writes a NUL inside a string
_DIGEST_CHARS = 16
_REF_LIMITS = {"kind": 50, "external_id": 500}


def fit(text: str, limit: int) -> str:
    """``text`` without NUL characters, cut to ``limit`` characters with a digest of the whole when longer."""
    text = text.replace(NUL, "")
    if len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode(), digest_size=_DIGEST_CHARS // 2).hexdigest()
    return f"{text[: limit - _DIGEST_CHARS - 1]}~{digest}"


def column_length(table: Any, name: str) -> int | None:
    """The length of a text column (None: unbounded)."""
    length: int | None = getattr(table.c[name].type, "length", None)
    return length


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit and NUL not in text


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_nul(v) for v in value)
    return value


def _ref(ref: Ref) -> Ref:
    return Ref(fit(ref.kind, _REF_LIMITS["kind"]), fit(ref.external_id, _REF_LIMITS["external_id"]))


def _ref_fits(ref: Ref) -> bool:
    return _fits(ref.kind, _REF_LIMITS["kind"]) and _fits(ref.external_id, _REF_LIMITS["external_id"])


class Sanitizer:
    """Per object type: its text fields with their column lengths, its links, its JSON columns."""

    def __init__(self, schema: Schema) -> None:
        self._text: dict[str, dict[str, int]] = {}
        self._json: dict[str, tuple[str, ...]] = {}
        for object_type in schema:
            table = object_type.table
            names = ["kind", "external_id", *(c.name for c in object_type.columns if c.json is None)]
            self._text[object_type.name] = {
                name: length for name in names if (length := column_length(table, name)) is not None
            }
            self._json[object_type.name] = tuple(c.name for c in object_type.columns if c.json is not None)

    def clean(self, object_type: ObjectType, record: Record) -> tuple[Record, str | None]:
        """The record as every engine can store it, and a warning naming the object when anything had to change."""
        changed: dict[str, Any] = {}
        for name, limit in self._text[object_type.name].items():
            value = getattr(record, name)
            if isinstance(value, str) and not _fits(value, limit):
                changed[name] = fit(value, limit)
        for spec in object_type.fields:
            if isinstance(spec, Link):
                ref = getattr(record, spec.field)
                if ref is not None and not _ref_fits(ref):
                    changed[spec.field] = _ref(ref)
            elif isinstance(spec, Members):
                refs = getattr(record, spec.field)
                if not all(_ref_fits(ref) for ref in refs):
                    changed[spec.field] = tuple(_ref(ref) for ref in refs)
        if _NUL_JSON in to_json_bytes([getattr(record, name) for name in self._json[object_type.name]]):
            for name in self._json[object_type.name]:
                changed[name] = _without_nul(getattr(record, name))
        if not changed:
            return record, None
        shown = fit(record.external_id, 80)
        return replace(record, **changed), (
            f"{object_type.name} {fit(record.kind, 50)} {shown!r}: NUL characters removed or over-long values cut "
            f"({', '.join(sorted(changed))})"
        )
