"""Members, status and measured availability of the logical services, from the database.

Status, from the members' (a member runs when its status reads as running, see
inventory.report.classify_status; a Kubernetes Service or other service row that reports
no status of its own runs while one of its members does):

    up        every member runs
    degraded  the requirement holds (``any``: one member runs) but not every member runs
    down      the requirement fails
    empty     no live member matches the selectors

Availability over the SLO window (or the window asked for) is replayed from the
``changes`` table: each member's status and existence are rebuilt backwards from its
current row through its recorded changes, members removed during the window included;
the service is up in an interval when the requirement holds over the members that
existed then. Time before the first member was first seen is not counted; between two
syncs the state is taken as the last sync saw it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from inventory.logical.spec import LogicalService, MemberSelector
from inventory.queries import glob_to_like
from inventory.report import classify_status
from inventory.storage.models import (
    Change,
    HostRow,
    ServiceMember,
    ServiceRow,
    Source,
    WorkloadRow,
)
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from inventory.impact import Impact

_MODELS: dict[str, Any] = {"host": HostRow, "workload": WorkloadRow, "service": ServiceRow}
DEFAULT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Member:
    object_type: str
    id: int
    source: str
    kind: str
    namespace: str | None
    name: str
    status: str | None
    running: bool
    first_seen_at: datetime
    removed_at: datetime | None

    def brief(self) -> dict[str, Any]:
        return {
            "type": self.object_type,
            "id": self.id,
            "source": self.source,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "status": self.status,
            "running": self.running,
        }


@dataclass(frozen=True)
class ServiceState:
    spec: LogicalService
    status: str
    members: tuple[Member, ...]  # live members
    window_seconds: float
    # Percent of the observed part of the window the service was up; None before any member was seen.
    availability: float | None
    observed_seconds: float

    @property
    def running(self) -> int:
        return sum(1 for m in self.members if m.running)

    @property
    def slo_met(self) -> bool | None:
        if self.spec.slo is None or self.availability is None:
            return None
        return self.availability >= self.spec.slo.target

    def row(self) -> dict[str, Any]:
        slo = self.spec.slo
        return {
            "name": self.spec.name,
            "status": self.status,
            "require": self.spec.require,
            "members": len(self.members),
            "running": self.running,
            "slo": f"{slo.target:g}% / {_days(slo.window)}" if slo else None,
            "availability": None if self.availability is None else f"{self.availability:.3f}%",
            "observed": _days(self.observed_seconds),
            "slo_met": self.slo_met,
        }

    def document(self) -> dict[str, Any]:
        return {
            **self.row(),
            "description": self.spec.description,
            "availability_percent": self.availability,
            "window_seconds": self.window_seconds,
            "observed_seconds": self.observed_seconds,
            "select": [s.model_dump(exclude_defaults=True) for s in self.spec.select],
            "member_objects": [m.brief() for m in self.members],
        }


def _days(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.3g}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g}h"
    if seconds >= 60:
        return f"{seconds / 60:.3g}m"
    return f"{seconds:.0f}s"


def _selector_query(selector: MemberSelector, include_removed: bool) -> Select[Any]:
    model = _MODELS[selector.type]
    stmt = select(model, Source.name).join(Source, Source.id == model.source_id)
    if selector.id:
        source, kind, external_id = selector.id.split("/", 2)
        stmt = stmt.where(Source.name == source, model.kind == kind, model.external_id == external_id)
    if selector.source:
        stmt = stmt.where(Source.name == selector.source)
    if selector.kind:
        stmt = stmt.where(model.kind == selector.kind)
    if selector.name:
        stmt = stmt.where(model.name.ilike(glob_to_like(selector.name), escape="\\"))
    if selector.namespace:
        stmt = stmt.where(model.namespace == selector.namespace)
    for key, value in selector.labels.items():
        stmt = stmt.where(model.labels[key].as_string() == value)
    if not include_removed:
        stmt = stmt.where(model.removed_at.is_(None))
    return stmt


def select_members(session: Session, spec: LogicalService, *, include_removed: bool = False) -> list[Member]:
    """The objects the selectors match (one query per selector), each once, ordered by type, source and name."""
    rows: dict[tuple[str, int], tuple[Any, str]] = {}
    for selector in spec.select:
        for row, source in session.execute(_selector_query(selector, include_removed)):
            rows[(selector.type, row.id)] = (row, source)
    quiet_services = [
        row.id for (object_type, _), (row, _) in rows.items() if object_type == "service" and row.status is None
    ]
    members_running = _services_with_a_running_member(session, quiet_services)
    members = []
    for (object_type, _), (row, source) in rows.items():
        if object_type == "service" and row.status is None:
            running = row.id in members_running
        else:
            running = classify_status(row.status) == "running"
        running = running and row.removed_at is None
        members.append(
            Member(
                object_type,
                row.id,
                source,
                row.kind,
                getattr(row, "namespace", None),
                row.name,
                row.status,
                running,
                row.first_seen_at,
                row.removed_at,
            )
        )
    return sorted(members, key=lambda m: (m.object_type, m.source, m.namespace or "", m.name, m.id))


def _services_with_a_running_member(session: Session, service_ids: list[int]) -> set[int]:
    if not service_ids:
        return set()
    stmt = (
        select(ServiceMember.service_id, WorkloadRow.status)
        .join(WorkloadRow, WorkloadRow.id == ServiceMember.workload_id)
        .where(ServiceMember.service_id.in_(service_ids), WorkloadRow.removed_at.is_(None))
    )
    return {service_id for service_id, status in session.execute(stmt) if classify_status(status) == "running"}


def _status(spec: LogicalService, members: Sequence[Member]) -> str:
    live = [m for m in members if m.removed_at is None]
    if not live:
        return "empty"
    running = sum(1 for m in live if m.running)
    if running == len(live):
        return "up"
    holds = running > 0 if spec.require == "any" else False
    return "degraded" if holds else "down"


# One member's history as (from, up) steps: up (True/False) from that moment on; None: it did not exist.
Timeline = list[tuple[datetime, bool | None]]


def _timelines(session: Session, members: Sequence[Member]) -> dict[tuple[str, int], Timeline]:
    """Each member's states, rebuilt backwards from its current row through its recorded changes."""
    changes: dict[tuple[str, int], list[Change]] = {}
    by_type: dict[str, list[int]] = {}
    for m in members:
        by_type.setdefault(m.object_type, []).append(m.id)
    for object_type, ids in by_type.items():
        stmt = (
            select(Change)
            .where(Change.object_type == object_type, Change.object_id.in_(ids))
            .order_by(Change.at, Change.id)
        )
        for change in session.execute(stmt).scalars():
            changes.setdefault((object_type, change.object_id), []).append(change)
    timelines = {}
    for m in members:
        exists = m.removed_at is None
        status = m.status
        steps: Timeline = []
        for change in reversed(changes.get((m.object_type, m.id), [])):
            steps.append((change.at, _up(m, status) if exists else None))
            diff = change.diff or {}
            if "status" in diff and isinstance(diff["status"], list) and len(diff["status"]) == 2:
                status = diff["status"][0]
            if change.action in ("created", "revived"):
                exists = False
            elif change.action == "removed":
                exists = True
        timelines[(m.object_type, m.id)] = list(reversed(steps))
    return timelines


def _up(member: Member, status: str | None) -> bool:
    # A service row without a status of its own counts as up while it exists (see the module docstring).
    if member.object_type == "service" and status is None:
        return True
    return classify_status(status) == "running"


def _availability(
    spec: LogicalService,
    members: Sequence[Member],
    timelines: dict[tuple[str, int], Timeline],
    start: datetime,
    end: datetime,
) -> tuple[float | None, float]:
    if not members:
        return None, 0.0
    observed_from = max(start, min(m.first_seen_at for m in members))
    if observed_from >= end:
        return None, 0.0
    moments = sorted(
        {observed_from, end, *(at for tl in timelines.values() for at, _ in tl if observed_from < at < end)}
    )
    up_seconds = 0.0
    for begin, finish in itertools.pairwise(moments):
        states = [s for s in (_state_at(timelines[(m.object_type, m.id)], begin) for m in members) if s is not None]
        if states and (any(states) if spec.require == "any" else all(states)):
            up_seconds += (finish - begin).total_seconds()
    observed = (end - observed_from).total_seconds()
    return 100.0 * up_seconds / observed, observed


def _state_at(timeline: Timeline, moment: datetime) -> bool | None:
    state: bool | None = None
    for at, up in timeline:
        if at > moment:
            break
        state = up
    return state


def evaluate(
    session: Session, spec: LogicalService, *, window: timedelta | None = None, now: datetime | None = None
) -> ServiceState:
    now = now or utcnow()
    span = window or (timedelta(seconds=spec.slo.window) if spec.slo else DEFAULT_WINDOW)
    start = now - span
    everyone = [
        m for m in select_members(session, spec, include_removed=True) if m.removed_at is None or m.removed_at > start
    ]
    live = tuple(m for m in everyone if m.removed_at is None)
    availability, observed = _availability(spec, everyone, _timelines(session, everyone), start, now)
    return ServiceState(spec, _status(spec, live), live, span.total_seconds(), availability, observed)


def evaluate_all(
    session: Session, specs: Sequence[LogicalService], *, now: datetime | None = None
) -> list[ServiceState]:
    return [evaluate(session, spec, now=now) for spec in specs]


def services_reached(
    session: Session, specs: Sequence[LogicalService], object_keys: set[tuple[str, int]]
) -> list[LogicalService]:
    """The logical services with a live member among ``object_keys`` ((type, id) pairs)."""
    return [spec for spec in specs if any((m.object_type, m.id) in object_keys for m in select_members(session, spec))]


def impact_keys(impact: Impact) -> set[tuple[str, int]]:
    return {(obj.object_type, obj.id) for obj in (impact.target, *impact.objects)}


def logical_services_of(session: Session, specs: Sequence[LogicalService], impact: Impact) -> list[dict[str, Any]]:
    """The logical services an impact reaches, with their SLO, as `inventory impact` lists them."""
    return [
        {"name": s.name, "slo": f"{s.slo.target:g}%" if s.slo else None}
        for s in services_reached(session, specs, impact_keys(impact))
    ]


def slo_lookup(specs: Sequence[LogicalService]) -> Callable[[Session, Impact], list[str]]:
    """For the policy's impact escalation: the services with an SLO that an impact reaches (its target included)."""

    with_slo = [spec for spec in specs if spec.slo is not None]

    def reached(session: Session, impact: Impact) -> list[str]:
        found = services_reached(session, with_slo, impact_keys(impact))
        return [f"{spec.name} (SLO {spec.slo.target:g}%)" for spec in found if spec.slo is not None]

    return reached
