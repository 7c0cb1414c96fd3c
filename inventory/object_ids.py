"""Row ids that say their type: ``host/4``, ``workload/4`` (or ``host:4``, the policy's ``--target`` spelling).

Hosts, workloads and services are numbered apart, so ``4`` is usually a host *and* a
workload. Where a command takes any of them (``impact``, ``tool run``, ``show``), a bare
number that several types hold is ambiguous: the error lists each with its source,
kind and name and gives the typed form, which every command accepts (and ``-q`` prints).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.errors import Ambiguous
from inventory.schema import OBJECT_TYPES
from inventory.storage.models import OBJECT_MODELS, Source

_TYPED_ID = re.compile(rf"^({'|'.join(OBJECT_TYPES)})[/:](\d+)$")
# Beyond a 64-bit integer no id can match (and SQLite would raise OverflowError).
MAX_ID = 2**63


def typed_ref(object_type: str, object_id: int) -> str:
    """The unambiguous spelling of a row id: ``host/4``."""
    return f"{object_type}/{object_id}"


def parse_typed_id(text: str) -> tuple[str, int] | None:
    """``host/4`` or ``host:4`` -> ("host", 4); anything else -> None."""
    match = _TYPED_ID.match(text.strip())
    if match and int(match.group(2)) < MAX_ID:
        return match.group(1), int(match.group(2))
    return None


def bare_id(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and int(text) < MAX_ID else None


def objects_with_id(session: Session, object_id: int, types: Iterable[str], *, live: bool = True) -> list[Any]:
    """(type, row, source name) of every object of ``types`` whose row id is ``object_id``."""
    found: list[Any] = []
    for object_type in types:
        model = OBJECT_MODELS[object_type]
        stmt = select(model, Source.name).join(Source, Source.id == model.source_id).where(model.id == object_id)
        if live:
            stmt = stmt.where(model.removed_at.is_(None))
        found.extend((object_type, row, source) for row, source in session.execute(stmt))
    return found


def describe(object_type: str, row: Any, source: str) -> str:
    namespace = getattr(row, "namespace", None)
    where = f", namespace {namespace}" if namespace else ""
    return f"{typed_ref(object_type, row.id)} (source {source}, kind {row.kind}{where}, name {row.name})"


def refuse_shared_id(text: str, found: list[Any]) -> None:
    """Raise Ambiguous when the bare number ``text`` is the id of objects of more than one type."""
    if len({object_type for object_type, _row, _src in found}) < 2:
        return
    listed = "; ".join(describe(*item) for item in found)
    forms = " or ".join(typed_ref(t, row.id) for t, row, _src in found)
    exact = ", ".join(f"{src}/{row.kind}/{row.external_id}" for _t, row, src in found)
    raise Ambiguous(f"{text.strip()} is the id of {len(found)} objects: {listed}; say which: {forms} (or {exact})")
