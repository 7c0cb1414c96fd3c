"""Resolving ``--target`` through the inventory, so that a call names exactly what it touches.

Forms, with an optional type prefix (``workload:``, ``host:``, ``service:``, ``source:``):

    workload:42                    the inventory row id (also workload/42)
    42                             a row id; ambiguous when a live object of another type has it too
    workload:pve/qemu/101          source/kind/external_id
    workload:pve/101               source/external_id, or source/name
    web-1                          a name or external id anywhere (must be unique among candidates)

Candidates are narrowed to the tool's source type and target kinds before a
name is called ambiguous; an ambiguous name lists the candidates by id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from inventory.errors import Ambiguous, NotFound, UsageError
from inventory.object_ids import bare_id, describe, objects_with_id, parse_typed_id, refuse_shared_id
from inventory.schema import OBJECT_TYPES
from inventory.storage.models import OBJECT_MODELS, HostRow, Source
from inventory.tags import tags_of

TARGET_TYPES = (*OBJECT_TYPES, "source")


@dataclass(frozen=True)
class Target:
    object_type: str
    id: int
    source: str
    source_type: str
    kind: str
    external_id: str
    name: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    # The SMBIOS uuid of the machine: a host's own, or that of the host a workload (a guest) is.
    machine_uuid: str | None = None

    @property
    def ref(self) -> str:
        if self.object_type == "source":
            return f"source:{self.source}"
        return f"{self.object_type}:{self.source}/{self.kind}/{self.external_id}"

    @property
    def tags(self) -> set[str]:
        """Tags as sources give them: a list, or Proxmox's "a;b" text, in attributes or labels."""
        return set(tags_of(self.attributes, self.labels))


def split_target(text: str) -> tuple[str | None, str]:
    typed = parse_typed_id(text)
    if typed is not None:
        return typed[0], str(typed[1])
    prefix, sep, rest = text.partition(":")
    if sep and prefix in TARGET_TYPES:
        return prefix, rest
    return None, text


def resolve_target(
    session: Session,
    text: str,
    *,
    default_type: str = "workload",
    source_type: str | None = None,
    kinds: Sequence[str] = (),
) -> Target:
    """Find the one live inventory object ``text`` names, or raise NotFound / Ambiguous."""
    given_type, ident = split_target(text.strip())
    object_type = given_type or default_type
    if not ident:
        raise UsageError(f"--target {text!r} names nothing")
    if object_type == "source":
        return _resolve_source(session, ident)
    model = OBJECT_MODELS[object_type]
    stmt = (
        select(model, Source.name, Source.type)
        .join(Source, Source.id == model.source_id)
        .where(model.removed_at.is_(None))
    )
    if source_type:
        stmt = stmt.where(Source.type == source_type)
    if kinds:
        stmt = stmt.where(model.kind.in_(list(kinds)))
    candidates = _candidates(session, stmt, model, ident)
    if not candidates:
        scope = f"{source_type} " if source_type else ""
        kind_text = f" of kind {'/'.join(kinds)}" if kinds else ""
        number = bare_id(ident) if given_type is None else None
        others = objects_with_id(session, number, [t for t in OBJECT_MODELS if t != object_type]) if number else []
        elsewhere = f" (other objects with that id: {'; '.join(describe(*item) for item in others)})" if others else ""
        raise NotFound(f"no live {scope}{object_type}{kind_text} matches {text!r}{elsewhere}")
    if len(candidates) > 1:
        listed = ", ".join(
            f"{object_type}:{row.id} ({src}/{row.kind}/{row.external_id})" for row, src, _ in candidates[:10]
        )
        raise Ambiguous(
            f"{len(candidates)} {object_type}s match {text!r}: {listed}; name one by id or source/kind/external_id"
        )
    row, source, stype = candidates[0]
    number = bare_id(ident)
    if given_type is None and number is not None and row.id == number:
        others = [t for t in OBJECT_MODELS if t != object_type]
        refuse_shared_id(text, [(object_type, row, source), *objects_with_id(session, number, others)])
    if object_type == "host":
        machine_uuid = row.machine_uuid
    elif object_type == "workload":
        backed = select(HostRow.machine_uuid).where(HostRow.backing_workload_id == row.id, HostRow.removed_at.is_(None))
        machine_uuid = session.execute(backed.limit(1)).scalar()
    else:
        machine_uuid = None
    return Target(
        object_type=object_type,
        id=row.id,
        source=source,
        source_type=stype,
        kind=row.kind,
        external_id=row.external_id,
        name=row.name,
        namespace=getattr(row, "namespace", None),
        labels=dict(row.labels or {}),
        attributes=dict(row.attributes or {}),
        machine_uuid=machine_uuid,
    )


def _candidates(session: Session, stmt: Any, model: Any, ident: str) -> list[Any]:
    if ident.isdigit():
        found = list(session.execute(stmt.where(model.id == int(ident))))
        if found:
            return found
    parts = ident.split("/", 2)
    if len(parts) == 3:
        found = list(
            session.execute(stmt.where(Source.name == parts[0], model.kind == parts[1], model.external_id == parts[2]))
        )
        if found:
            return found
    source_name, sep, rest = ident.partition("/")
    if sep and rest:
        found = list(
            session.execute(stmt.where(Source.name == source_name, or_(model.external_id == rest, model.name == rest)))
        )
        if found:
            return found
    by_id = list(session.execute(stmt.where(model.external_id == ident)))
    return by_id or list(session.execute(stmt.where(model.name == ident)))


def _resolve_source(session: Session, name: str) -> Target:
    row = session.execute(select(Source).where(Source.name == name)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no source named {name!r} in the inventory (run a sync first)")
    return Target(
        object_type="source",
        id=row.id,
        source=row.name,
        source_type=row.type,
        kind="source",
        external_id=row.name,
        name=row.name,
    )
