"""Opaque page cursors: a position in a list plus a fingerprint of the filters it belongs to."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Response

from inventory.errors import UsageError

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _fingerprint(filters: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in filters.items() if v not in (None, (), [], {})}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(offset: int, filters: Mapping[str, Any]) -> str:
    raw = json.dumps({"o": offset, "f": _fingerprint(filters)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, filters: Mapping[str, Any]) -> int:
    """The offset a cursor points at; a cursor from another query (or garbled) is a usage error."""
    if not cursor:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, fingerprint = int(data["o"]), str(data["f"])
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"cursor {cursor!r} is not one this server gave out") from None
    if fingerprint != _fingerprint(filters) or offset < 0:
        raise UsageError("the cursor belongs to a list with other filters; start again without it")
    return offset


def json_response(data: Any, status_code: int = 200) -> Response:
    """Rows as the CLI's `-o json` has them (ISO 8601 times), serialized once by orjson."""
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_OMIT_MICROSECONDS),
        status_code=status_code,
        media_type="application/json",
    )


def page_response(rows: list[dict[str, Any]], limit: int, offset: int, filters: Mapping[str, Any]) -> Response:
    """``rows`` were fetched with ``limit + 1``: one more than the page says whether another page follows."""
    more = len(rows) > limit
    next_cursor = encode_cursor(offset + limit, filters) if more else None
    return json_response({"items": rows[:limit], "next_cursor": next_cursor})
