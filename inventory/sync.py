"""Running sources: collect -> reconcile -> record the run, one source at a time, each isolated.

A source that fails (its API is down, its connector raises) is recorded as a
failed run and never stops the others. Each source's writes are one
transaction: a crash in the middle leaves the previous state whole.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from inventory.audit.log import record_sync
from inventory.config import Config
from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.errors import ConnectorUnavailable, InventoryError, SourceError
from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import Snapshot
from inventory.redact import redact_text
from inventory.storage.database import Database
from inventory.storage.store import SqlStore
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass
class SourceOutcome:
    source: str
    type: str
    # success: complete snapshot reconciled | partial: upserts only, something was not read
    # failed: nothing could be read or written | locked: another process was syncing it
    status: str
    error: str | None = None
    result: ReconcileResult | None = None
    objects: int = 0
    duration: float = 0.0
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def describe(self) -> str:
        """One line per synced source, the same in loop logs and `sync --once` output."""
        r = self.result
        if r is None:
            return f"{self.source}: {self.status}" + (f": {self.error}" if self.error and self.status != "failed" else "")
        counts = f"{r.created} created, {r.updated} updated, {r.removed} removed, {r.revived} revived, {r.unchanged} unchanged"
        return f"{self.source}: {self.status}, {self.objects} objects ({counts}) in {self.duration:.2f}s"


ProgressCallback = Callable[[str, str], None]  # (source name, phase)


def collect(connector: Connector) -> Snapshot:
    """Run a connector, translating anything it raises into a SourceError that names the source."""
    try:
        snapshot = connector.collect()
    except SourceError:
        raise
    except InventoryError as exc:
        raise SourceError(connector.source_name, None, str(exc)) from exc
    except Exception as exc:  # a connector bug must not take the other sources down
        log.debug("connector %s raised", connector.source_name, exc_info=True)
        raise SourceError(connector.source_name, None, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(snapshot, Snapshot):
        raise SourceError(connector.source_name, None, f"connector returned {type(snapshot).__name__}, not a Snapshot")
    return snapshot


def sync_source(
    db: Database,
    connector: Connector,
    *,
    allow_empty: bool = False,
    progress: ProgressCallback | None = None,
    configured: Collection[str] = (),
) -> SourceOutcome:
    """Collect one source and reconcile it in one transaction; never raises for a source's failure.

    ``configured`` names every source in the config, so that a renamed source can adopt its
    old rows by identity without ever merging two sources that are both still configured.
    """
    name, type_name = connector.source_name, connector.type_name
    started_at, started = utcnow(), time.perf_counter()
    notify = progress or (lambda _source, _phase: None)

    def fail(message: str, identity: str | None = None) -> SourceOutcome:
        message = redact_text(message)
        with db.write_session() as session:
            store = SqlStore(session)
            run_id = store.start_run(store.source_id(name, type_name, identity, configured=configured), started_at)
            store.finish_run(run_id, status="failed", complete=False, error=message)
        log.error("%s", message)
        return record_sync(db, SourceOutcome(name, type_name, "failed", message, duration=time.perf_counter() - started, run_id=run_id))

    notify(name, "collecting")
    try:
        snapshot = collect(connector)
    except SourceError as exc:
        return fail(str(exc))

    notify(name, f"writing {snapshot.object_count} objects")
    try:
        with db.write_session() as session:
            store = SqlStore(session)
            source_id = store.source_id(name, type_name, snapshot.identity, configured=configured)
            run_id = store.start_run(source_id, started_at)
            result = reconcile(snapshot, store, source_id=source_id, run_id=run_id, allow_empty=allow_empty)
            problems = [f"source {name!r}, {e}" for e in snapshot.errors] + [f"source {name!r}: {w}" for w in result.withheld]
            if not snapshot.complete and not snapshot.errors:
                problems.append(f"source {name!r}: the snapshot is incomplete")
            status = "success" if not problems else "partial"
            error = redact_text("; ".join(problems)) or None
            store.finish_run(
                run_id,
                status=status,
                complete=snapshot.complete,
                objects=snapshot.object_count,
                created=result.created,
                updated=result.updated,
                removed=result.removed,
                revived=result.revived,
                unchanged=result.unchanged,
                error=error,
            )
    except InventoryError as exc:
        return fail(f"source {name!r}: {exc}", snapshot.identity)
    except Exception as exc:  # the transaction rolled back whole; record why and go on
        log.debug("writing source %s failed", name, exc_info=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return fail(f"source {name!r}: writing to the database failed: {type(exc).__name__}: {reason}", snapshot.identity)

    if error:
        log.warning("%s", error)
    outcome = SourceOutcome(
        name,
        type_name,
        status,
        error,
        result=result,
        objects=snapshot.object_count,
        duration=time.perf_counter() - started,
        run_id=run_id,
    )
    return record_sync(db, outcome)


def sync_source_locked(
    db: Database,
    connector: Connector,
    *,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    allow_empty: bool = False,
    progress: ProgressCallback | None = None,
    configured: Collection[str] = (),
) -> SourceOutcome:
    """``sync_source`` under the source's cross-process lock (inventory.locks); never raises for a source's failure.

    A lock still held by another process after ``wait`` seconds is the outcome "locked", whose
    error names the holder; a database that refuses the lock is a "failed" outcome.
    """
    from inventory.locks import SourceLockHeld, source_lock

    name, type_name = connector.source_name, connector.type_name
    try:
        with source_lock(db, name, wait=wait, stop=stop):
            return sync_source(db, connector, allow_empty=allow_empty, progress=progress, configured=configured)
    except SourceLockHeld as exc:
        return SourceOutcome(name, type_name, "locked", str(exc))
    except InventoryError as exc:
        return SourceOutcome(name, type_name, "failed", redact_text(str(exc)))


def select_sources(config: Config, names: Iterable[str] | None = None) -> list[SourceConfig]:
    wanted = list(names or [])
    if wanted:
        return [config.source(n) for n in wanted]
    return [s for s in config.sources if s.enabled]


def sync_all(
    db: Database,
    config: Config,
    registry: ConnectorRegistry,
    *,
    names: Iterable[str] | None = None,
    allow_empty: bool = False,
    progress: ProgressCallback | None = None,
    lock_wait: float = 0.0,
    stop: threading.Event | None = None,
) -> list[SourceOutcome]:
    """Sync the selected sources one after another; ``stop`` (set by a signal) ends it between two sources."""
    outcomes = []
    configured = [s.name for s in config.sources]
    for source in select_sources(config, names):
        if stop is not None and stop.is_set():
            break
        try:
            connector = registry.get(source.type)(source)
        except ConnectorUnavailable as exc:
            outcomes.append(SourceOutcome(source.name, source.type, "failed", f"source {source.name!r}: {exc}"))
            continue
        outcomes.append(
            sync_source_locked(db, connector, wait=lock_wait, stop=stop, allow_empty=allow_empty, progress=progress, configured=configured)
        )
    return outcomes


__all__ = ["SourceOutcome", "collect", "select_sources", "sync_all", "sync_source", "sync_source_locked"]
