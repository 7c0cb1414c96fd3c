"""Retention: removed objects, old change rows and old sync runs pruned in small batches.

What goes (the ``retention:`` section of the config, inventory/config.py ``RetentionSettings``):

- a removed object ``removed_objects`` after its removal, with its change rows, its service
  memberships and its machine links; an expired object that a kept object still points at
  (a live pod's ``host_id`` or ``parent_id``, a host's ``backing_workload_id``, a kept
  service's member) is kept until that one goes, so that no stored link ever dangles and a
  live object's link never reads differently (which the next sync would report as a change);
- change rows older than ``changes``, of any object (a live object keeps ``first_seen_at``);
- sync runs older than ``sync_runs``, except each source's latest run and latest success
  (what `inventory status`, the loop's skip check and the metrics read).

Every batch is one short write transaction: at most ``batch_size`` rows of the table
being pruned are picked (in id order, after the last batch's highest id), locked where
the engine can (PostgreSQL ``FOR UPDATE``, so that a sync reviving one of them waits and
the delete re-checks), and deleted with their dependants. A dry run walks the same batches
and counts. The audit log is never pruned here (see ``inventory audit archive``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Delete, Table, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from inventory.config import RetentionSettings
from inventory.outcome import SyncStatus
from inventory.redact import error_reason
from inventory.storage import tables
from inventory.storage.database import Database
from inventory.storage.models import (
    Change,
    HostRow,
    MachineLink,
    ServiceMember,
    ServiceRow,
    SyncRun,
    WorkloadRow,
)
from inventory.timeutil import format_seconds, utcnow

log = logging.getLogger(__name__)

# How soon the loop looks again when a prune is due but the previous one is still running.
_OVERDUE_RECHECK_SECONDS = 60.0
# Tables in the order they are reported.
TABLES = ("workloads", "hosts", "services", "service_members", "machine_links", "changes", "sync_runs")


@dataclass
class PruneReport:
    """Rows deleted (or, in a dry run, that would be) per table, and the transactions it took."""

    dry_run: bool
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    batches: int = 0
    seconds: float = 0.0
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "rows": dict(self.rows),
            "total": self.total,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
        }


def _kept(model: Any, cutoff: datetime) -> ColumnElement[bool]:
    return or_(model.removed_at.is_(None), model.removed_at >= cutoff)


def _expired_objects(cutoff: datetime) -> dict[str, tuple[Any, ColumnElement[bool]]]:
    """Per object table: its model and when a row of it may go (expired, and no kept row points at it)."""
    pod, host, service = aliased(WorkloadRow), aliased(HostRow), aliased(ServiceRow)

    def expired(model: Any) -> ColumnElement[bool]:
        return and_(model.removed_at.is_not(None), model.removed_at < cutoff)

    member_of_kept = (
        select(ServiceMember.workload_id)
        .join(service, service.id == ServiceMember.service_id)
        .where(ServiceMember.workload_id == WorkloadRow.id, _kept(service, cutoff))
    )
    return {
        "workloads": (
            WorkloadRow,
            and_(
                expired(WorkloadRow),
                ~exists().where(pod.parent_id == WorkloadRow.id, _kept(pod, cutoff)),
                ~exists().where(host.backing_workload_id == WorkloadRow.id, _kept(host, cutoff)),
                ~exists(member_of_kept),
            ),
        ),
        "hosts": (HostRow, and_(expired(HostRow), ~exists().where(pod.host_id == HostRow.id, _kept(pod, cutoff)))),
        "services": (ServiceRow, expired(ServiceRow)),
    }


def _object_dependants(name: str, ids: Sequence[int]) -> dict[str, Any]:
    """The rows that go with the objects ``ids`` of table ``name``: per table, a WHERE clause."""
    object_type = name.removesuffix("s")
    found: dict[str, Any] = {"changes": and_(Change.object_type == object_type, Change.object_id.in_(ids))}
    if name == "workloads":
        found["service_members"] = ServiceMember.workload_id.in_(ids)
    elif name == "services":
        found["service_members"] = ServiceMember.service_id.in_(ids)
    elif name == "hosts":
        found["machine_links"] = or_(MachineLink.host_id.in_(ids), MachineLink.other_id.in_(ids))
    return found


_DEPENDANT_TABLES: dict[str, Table] = {
    "changes": tables.changes,
    "service_members": tables.service_members,
    "machine_links": tables.machine_links,
}


def _old_sync_runs(cutoff: datetime) -> ColumnElement[bool]:
    latest = select(func.max(SyncRun.id)).group_by(SyncRun.source_id)
    latest_success = (
        select(func.max(SyncRun.id)).where(SyncRun.status == SyncStatus.SUCCESS.value).group_by(SyncRun.source_id)
    )
    # A watch session (inventory/live.py) may have started long ago and still beat: never pruned while open.
    return and_(
        SyncRun.started_at < cutoff,
        SyncRun.id.not_in(latest),
        SyncRun.id.not_in(latest_success),
        SyncRun.status != SyncStatus.WATCHING.value,
    )


@dataclass(frozen=True)
class _Target:
    """One table to prune: which rows, and what goes with each batch of them."""

    name: str
    model: Any
    where: ColumnElement[bool]
    dependants: Callable[[Sequence[int]], dict[str, Any]] | None = None


def _targets(settings: RetentionSettings, now: datetime) -> Iterator[_Target]:
    def before(seconds: float) -> datetime:
        return now - timedelta(seconds=seconds)

    if settings.removed_objects > 0:
        for name, (model, where) in _expired_objects(before(settings.removed_objects)).items():
            yield _Target(name, model, where, lambda ids, name=name: _object_dependants(name, ids))  # type: ignore[misc]
    if settings.changes > 0:
        yield _Target("changes", Change, Change.at < before(settings.changes))
    if settings.sync_runs > 0:
        yield _Target("sync_runs", SyncRun, _old_sync_runs(before(settings.sync_runs)))


def prune(
    db: Database,
    settings: RetentionSettings,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    stop: threading.Event | None = None,
) -> PruneReport:
    """Delete what ``settings`` no longer keeps (a dry run only counts), one batch per transaction.

    ``stop`` ends the prune between two batches (a loop shutting down); what was deleted stays deleted.
    """
    report = PruneReport(dry_run=dry_run)
    started = time.perf_counter()
    size = batch_size or settings.batch_size
    for target in _targets(settings, now or utcnow()):
        after = 0
        while True:
            if stop is not None and stop.is_set():
                report.stopped = True
                report.seconds = time.perf_counter() - started
                return report
            if dry_run:
                with db.session() as session:
                    ids = _next_batch(session, target, after, size, lock=False)
                    _count_batch(session, target, ids, report)
            else:
                with db.write_session() as session:
                    ids = _next_batch(session, target, after, size, lock=True)
                    _delete_batch(session, target, ids, report)
            if not ids:
                break
            report.batches += 1
            after = ids[-1]
            if len(ids) < size:
                break
    report.seconds = time.perf_counter() - started
    return report


def _next_batch(session: Session, target: _Target, after: int, size: int, *, lock: bool) -> list[int]:
    stmt = select(target.model.id).where(target.model.id > after, target.where).order_by(target.model.id).limit(size)
    if lock and session.get_bind().dialect.name == "postgresql":
        # A sync reviving one of these rows waits for this transaction, not the other way round.
        stmt = stmt.with_for_update(of=target.model)
    return list(session.execute(stmt).scalars())


def _count_batch(session: Session, target: _Target, ids: Sequence[int], report: PruneReport) -> None:
    if not ids:
        return
    report.rows[target.name] += len(ids)
    for table_name, where in (target.dependants(ids) if target.dependants else {}).items():
        table = _DEPENDANT_TABLES[table_name]
        report.rows[table_name] += session.execute(select(func.count()).select_from(table).where(where)).scalar_one()


def _delete_batch(session: Session, target: _Target, ids: Sequence[int], report: PruneReport) -> None:
    if not ids:
        return
    for table_name, where in (target.dependants(ids) if target.dependants else {}).items():
        report.rows[table_name] += deleted_rows(session, delete(_DEPENDANT_TABLES[table_name]).where(where))
    # The rule is checked again: on PostgreSQL a row changed since it was picked is left alone.
    stmt = delete(target.model).where(target.model.id.in_(ids), target.where)
    report.rows[target.name] += deleted_rows(session, stmt.execution_options(synchronize_session=False))


def deleted_rows(session: Session, statement: Delete) -> int:
    """Run a DELETE; the rows it deleted."""
    return cast(CursorResult[Any], session.execute(statement)).rowcount


class RetentionSchedule:
    """The loop's hook: prune at start, then every ``retention.interval``, on a thread of its own so that no
    sync waits for it; a failed prune is a warning and never stops a sync."""

    def __init__(
        self,
        db: Database,
        settings: RetentionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        stop: threading.Event | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.stop = stop
        self.next_due = clock()
        self.last: PruneReport | None = None
        self._thread: threading.Thread | None = None

    def start_if_due(self) -> bool:
        """Start a prune if one is due and none is running; True if one started."""
        if self.settings.interval <= 0 or self.clock() < self.next_due:
            return False
        if self._thread is not None and self._thread.is_alive():
            return False
        self.next_due = self.clock() + self.settings.interval
        self._thread = threading.Thread(target=self.run, name="retention", daemon=True)
        self._thread.start()
        return True

    def due_at(self) -> float | None:
        """When the loop should next look whether a prune is due (on ``clock``); None if it never prunes."""
        if self.settings.interval <= 0:
            return None
        now = self.clock()
        if self.next_due <= now and self._thread is not None and self._thread.is_alive():
            # Due while the last prune still runs (it outlasted its interval): look again soon, without spinning.
            return now + min(self.settings.interval, _OVERDUE_RECHECK_SECONDS)
        return self.next_due

    def wait(self) -> None:
        """Until the prune in progress ends (a stopping loop's prune ends at its next batch)."""
        if self._thread is not None:
            self._thread.join()

    def run(self) -> PruneReport | None:
        try:
            self.last = prune(self.db, self.settings, stop=self.stop)
        except Exception as exc:  # pruning is housekeeping: the sync goes on, the next prune tries again
            log.warning(
                "retention: pruning failed (%s); syncing goes on, next try in %s",
                error_reason(exc),
                format_seconds(self.settings.interval),
            )
            return None
        if self.last.total:
            gone = ", ".join(f"{table} {count}" for table, count in self.last.rows.items() if count)
            log.info("retention: pruned %s in %d batches (%.1fs)", gone, self.last.batches, self.last.seconds)
        return self.last


__all__ = ["TABLES", "PruneReport", "RetentionSchedule", "deleted_rows", "prune"]
