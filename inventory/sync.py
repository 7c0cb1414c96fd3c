"""Running a source: take its lock, collect, reconcile, record the run, tell the observers.

``SourceRunner`` is the one way a source is run: ``sync --once``, the loop and the
server all call it, and they differ only in the observers they give it (audit
summary always; metrics, notifications, progress, log lines as they need).

A source that fails (its API is down, its connector raises, the database refuses
its writes) is a failed outcome and never stops the others. Each source's writes
are one transaction: a crash in the middle leaves the previous state whole.

Outcomes (``inventory.outcome.SyncStatus``): success (every scope the source should read
was read; it may carry warnings, facts such as a node found down), partial (a scope that
should have been read failed: what was read is upserted, only scopes read whole remove),
failed (nothing could be read or written), forbidden (reached, but every scope it should
read was forbidden to its credentials: ``Snapshot.nothing_readable``; rows kept, not fresh),
locked (another process holds the source's lock), skipped (the loop found it freshly synced
by another process).

A run has two phases with different needs: collecting talks to the source's API
and touches no database, so several sources may collect at once; writing
reconciles into the database, one source at a time per runner (``_write_lock``).
Observers are told one outcome at a time. So ``run`` may be called from several
threads of one runner (a bounded pool of sources) without further locking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from inventory.audit.log import record_sync
from inventory.config import Config
from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.cutoff import NOT_SENT
from inventory.errors import ConnectorUnavailable, InventoryError, SourceError, SourceLockHeld
from inventory.locks import source_lock
from inventory.machine_links import relink_after_write
from inventory.observe import attribute_tool_calls
from inventory.outcome import SourceOutcome, SyncStatus, bounded, summarize_problems
from inventory.reconcile import reconcile
from inventory.records import Snapshot
from inventory.redact import redact_text
from inventory.storage.database import Database
from inventory.storage.store import SqlStore
from inventory.timeutil import format_seconds, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")
# A collection taking longer than this is abandoned (config: sync.deadline, or a source's deadline).
DEFAULT_DEADLINE = 600.0
# How long an abandoned connector may take to hand back what it read.
ABANDON_GRACE = 2.0
# Distinct warnings a runner remembers having said (then it forgets them all and may say one again).
WARNED_LIMIT = 1000
# How often a wait for a collection looks whether the runner was told to stop now.
ABORT_CHECK_INTERVAL = 0.25

ProgressCallback = Callable[[str, str], None]  # (source name, phase)
Observer = Callable[[SourceOutcome], None]  # told every outcome; must not raise
SkipCheck = Callable[[str], str | None]  # (source name) -> why not to sync it now, under its lock; None: sync


def collect(connector: Connector) -> Snapshot:
    """Run a connector, translating anything it raises into a SourceError that names the source."""
    try:
        type(connector).load_sdk()  # under the SDK lock, whatever thread this is
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


@dataclass
class Collected:
    """What the collect phase hands to the write phase: a snapshot, or why there is none."""

    source: str
    type: str
    started_at: datetime
    started: float  # perf_counter at the start, for the run's duration
    snapshot: Snapshot | None = None
    error: str | None = None
    # A full sync of a source whose changes are followed (inventory/live.py): what it changes is drift.
    drift: bool = False


class SourceRunner:
    """Runs sources into one database and reports each outcome to its observers.

    ``configured`` names every source in the config, so that a renamed source can adopt its
    old rows by identity without ever merging two sources that are both still configured.
    ``lock_wait`` is how long to wait for a source another process is syncing; ``stop``
    (set by a signal) ends that wait and ``run_all`` between two sources.
    """

    def __init__(
        self,
        db: Database,
        registry: ConnectorRegistry,
        *,
        configured: Collection[str] = (),
        allow_empty: bool = False,
        lock_wait: float = 0.0,
        stop: threading.Event | None = None,
        progress: ProgressCallback | None = None,
        observers: Sequence[Observer] = (),
        concurrency: int = 1,
        deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.db = db
        self.concurrency = max(1, concurrency)
        self.deadline = deadline
        self.registry = registry
        self.configured = configured
        self.allow_empty = allow_empty
        self.lock_wait = lock_wait
        self.stop = stop
        self.progress = progress
        self.observers = list(observers)
        self._write_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self.aborted = threading.Event()
        self._abort_reason = ""
        self._warned: set[str] = set()

    def abort(self, reason: str = "stopped by a signal before it finished") -> None:
        """Stop now, from any thread (a second signal): collections in progress are abandoned, waits for
        the database are cut (their transactions roll back), and no source starts."""
        self._abort_reason = reason
        self.aborted.set()
        if self.stop is not None:
            self.stop.set()
        self.db.interrupt(reason)

    @classmethod
    def for_config(cls, db: Database, config: Config, registry: ConnectorRegistry, **options: Any) -> SourceRunner:
        """A runner of a config's sources: every face (``sync``, the loop, the server's refresh) takes its
        configured names, ``sync.concurrency`` and ``sync.deadline`` from here; ``options`` add the rest."""
        return cls(
            db,
            registry,
            configured=[s.name for s in config.sources],
            concurrency=config.sync.concurrency,
            deadline=config.sync.deadline,
            **options,
        )

    def run_all(self, sources: Iterable[SourceConfig]) -> list[SourceOutcome]:
        """Run the sources, ``concurrency`` collecting at once, until ``stop`` is set; outcomes in source order."""
        chosen = list(sources)
        self.registry.load_sdks(source.type for source in chosen)  # in this thread, before the pool starts
        return self.map(self.run, chosen)

    def map(self, run: Callable[[T], SourceOutcome], items: Sequence[T]) -> list[SourceOutcome]:
        """``run`` each item, ``concurrency`` at once; an item not started when ``stop`` is set is left out."""

        def started(item: T) -> SourceOutcome | None:
            if self.aborted.is_set() or (self.stop is not None and self.stop.is_set()):
                return None
            return run(item)

        if self.concurrency == 1 or len(items) <= 1:
            found = []
            for item in items:
                outcome = started(item)
                if outcome is None:
                    break
                found.append(outcome)
            return found
        from concurrent.futures import ThreadPoolExecutor  # only for several sources: ~3 ms of a one-source start

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="source") as pool:
            results = list(pool.map(started, items))
        return [outcome for outcome in results if outcome is not None]

    def run(self, source: SourceConfig, *, skip: SkipCheck | None = None) -> SourceOutcome:
        """Run one configured source; never raises for the source's failure."""
        try:
            connector = self.registry.get(source.type)(source)
        except ConnectorUnavailable as exc:
            return self._report(
                SourceOutcome(source.name, source.type, SyncStatus.FAILED, f"source {source.name!r}: {exc}")
            )
        return self.run_connector(connector, skip=skip)

    def run_connector(
        self,
        connector: Connector,
        *,
        skip: SkipCheck | None = None,
        lock_wait: float | None = None,
        drift: bool = False,
    ) -> SourceOutcome:
        """Run a built connector under its source's lock; never raises for the source's failure.

        ``lock_wait`` overrides the runner's; ``drift``: the source's changes are followed, and what this
        full sync changes is counted as what the stream missed (``drift_repaired``)."""
        name, type_name = connector.source_name, connector.type_name
        wait = self.lock_wait if lock_wait is None else lock_wait
        try:
            with source_lock(self.db, name, wait=wait, stop=self.stop):
                reason = skip(name) if skip is not None else None
                reason = reason or _still_ending(name)
                if reason is not None:
                    outcome = SourceOutcome(name, type_name, SyncStatus.SKIPPED, reason)
                else:
                    collected = self.collect(connector)
                    collected.drift = drift
                    with self._write_lock:
                        outcome = self.write(collected)
        except SourceLockHeld as exc:
            outcome = SourceOutcome(name, type_name, SyncStatus.LOCKED, str(exc))
        except InventoryError as exc:  # e.g. the lock's database is unreachable; the message names the source
            outcome = SourceOutcome(name, type_name, SyncStatus.FAILED, redact_text(str(exc)))
        except Exception as exc:  # e.g. the database went away while a failure was recorded: the others go on
            log.debug("syncing %s raised", name, exc_info=True)
            outcome = SourceOutcome(
                name,
                type_name,
                SyncStatus.FAILED,
                redact_text(f"source {name!r}: {type(exc).__name__}: {_first_line(exc)}"),
            )
        return self._report(outcome)

    # The two phases: collect touches no database, write is one transaction.

    def collect(self, connector: Connector) -> Collected:
        """Collect on a thread of its own, abandoned after the source's deadline (the run is then partial).

        The connector's client holds the same deadline (``connector.cutoff``): past it no call is sent,
        and a call sent before it times out at most ``CALL_GRACE`` after it, so a collection ends
        shortly after its deadline whatever it had left to ask, and what it read within
        ``ABANDON_GRACE`` is kept. A thread that still has not ended (a connector that ignores its
        cutoff) is remembered: the next run of its source in this process waits for it or is skipped,
        never run beside it.
        """
        collected = Collected(connector.source_name, connector.type_name, utcnow(), time.perf_counter())
        self._phase(collected.source, "collecting")
        deadline = getattr(connector.config, "deadline", None) or self.deadline
        connector.cutoff.start(deadline)
        answer: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                answer["snapshot"] = collect(connector)
            except SourceError as exc:
                answer["error"] = str(exc)
            finally:
                done.set()

        thread = threading.Thread(target=work, name=f"collect-{collected.source}", daemon=True)
        thread.start()
        if not _wait_unless_aborted(done, deadline, self.aborted):
            connector.cutoff.abandon()
            _remember_ending(collected.source, thread)
            if self.aborted.is_set():
                collected.error = f"source {collected.source!r}: {self._abort_reason}"
                return collected
            done.wait(ABANDON_GRACE)
            own = getattr(connector.config, "deadline", None) is not None
            limit = connector.config.limit_hit("deadline") if own else "`sync.deadline`, or the source's `deadline:`"
            reason = f"abandoned after waiting {format_seconds(deadline)} (deadline: {limit})"
            snapshot = answer.get("snapshot") if done.is_set() else None
            if snapshot is None:
                snapshot = Snapshot(complete=False, scopes=[])  # nothing read: upserts nothing, removes nothing
            # One line for everything the cutoff kept from being asked, not one per resource.
            unsent = [e.partition(": ")[0] for e in snapshot.errors if NOT_SENT in e]
            snapshot.errors[:] = [e for e in snapshot.errors if NOT_SENT not in e]
            if unsent:
                reason += f"; not read before it: {', '.join(_few(unsent))}"
            snapshot.fail("collection", reason)
            answer = {"snapshot": snapshot}
        collected.snapshot = answer.get("snapshot")
        collected.error = answer.get("error")
        return collected

    def write(self, collected: Collected) -> SourceOutcome:
        """Reconcile the snapshot and record the run in one transaction, or record why it failed."""
        name, snapshot = collected.source, collected.snapshot
        if self.aborted.is_set():
            return self._record_failure(collected, f"source {name!r}: {self._abort_reason}")
        if snapshot is None:
            return self._record_failure(collected, collected.error or f"source {name!r}: nothing collected")
        self._phase(name, f"writing {snapshot.object_count} objects")
        try:
            with self.db.write_connection() as connection:
                store = SqlStore(connection)
                source_id = store.source_id(name, collected.type, snapshot.identity, configured=self.configured)
                twins = store.sharing_identity(source_id, collected.type, snapshot.identity, self.configured)
                if twins:  # e.g. one cluster reached through two URLs or contexts: every object stored twice
                    snapshot.warn(
                        "identity",
                        f"the same {collected.type} as source {', '.join(repr(t) for t in twins)} (identity "
                        f"{snapshot.identity}): its objects are stored once per source; configure it once",
                    )
                run_id = store.start_run(source_id, collected.started_at)
                # Our own tool calls on objects of this source are the cause of what they changed.
                attribute_tool_calls(connection, name, snapshot)
                result = reconcile(snapshot, store, source_id=source_id, run_id=run_id, allow_empty=self.allow_empty)
                drift = result.created + result.updated + result.removed + result.revived if collected.drift else None
                relink_after_write(connection, source_id)
                problems = [f"source {name!r}, {e}" for e in summarize_problems(snapshot.errors)]
                problems += [f"source {name!r}: {w}" for w in result.withheld]
                if not snapshot.complete and not snapshot.errors:
                    problems.append(f"source {name!r}: the snapshot is incomplete")
                # Facts (a node down, a kind not permitted) are not failures: the run stays a success.
                warnings = [redact_text(f"source {name!r}: {w}") for w in [*snapshot.facts, *_few(result.warnings)]]
                if snapshot.nothing_readable:  # not an empty system: credentials that may read none of it
                    problems.insert(0, f"source {name!r}: {snapshot.unreadable_reason()}")
                    status = SyncStatus.FORBIDDEN
                else:
                    status = SyncStatus.PARTIAL if problems else SyncStatus.SUCCESS
                error = bounded(redact_text("; ".join(problems))) or None
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
                    warnings="\n".join(warnings) or None,
                    drift_repaired=drift,
                )
        except Exception as exc:
            if self.aborted.is_set():  # cut short on purpose: the reason, not the error it caused
                reason = (
                    f"source {name!r}: {self._abort_reason} "
                    "(cut short while writing: rolled back, unless its commit had reached the database)"
                )
                return self._record_failure(collected, reason, snapshot.identity)
            if isinstance(exc, InventoryError):
                return self._record_failure(collected, f"source {name!r}: {exc}", snapshot.identity)
            # The transaction rolled back whole; record why and go on.
            log.debug("writing source %s failed", name, exc_info=True)
            return self._record_failure(
                collected,
                f"source {name!r}: writing to the database failed: {type(exc).__name__}: {_first_line(exc)}",
                snapshot.identity,
            )
        for warning in warnings:
            self._log_warning(warning)
        if error:  # printed once, by whoever shows the outcome (the FAILED line, the loop's log line)
            log.debug("%s", error)
        duration = time.perf_counter() - collected.started
        return SourceOutcome(
            name,
            collected.type,
            status,
            error,
            result=result,
            objects=snapshot.object_count,
            duration=duration,
            run_id=run_id,
            warnings=warnings,
            drift_repaired=drift,
        )

    def _record_failure(self, collected: Collected, message: str, identity: str | None = None) -> SourceOutcome:
        """Record the failed run; a database that refuses even that (locked, gone) is said, never raised."""
        message = bounded(redact_text(message))
        run_id: int | None = None
        try:
            with self.db.write_connection() as connection:
                store = SqlStore(connection)
                run_id = store.start_run(
                    store.source_id(collected.source, collected.type, identity, configured=self.configured),
                    collected.started_at,
                )
                store.finish_run(run_id, status=SyncStatus.FAILED, complete=False, error=message)
        except Exception as exc:
            log.debug("recording the failure of %s failed", collected.source, exc_info=True)
            run_id = None
            why = "" if self.aborted.is_set() else f": {_first_line(exc)}"
            message = bounded(redact_text(f"{message} (not recorded in the database{why})"))
        log.debug("%s", message)  # printed once, by whoever shows the outcome
        duration = time.perf_counter() - collected.started
        return SourceOutcome(
            collected.source, collected.type, SyncStatus.FAILED, message, duration=duration, run_id=run_id
        )

    def _log_warning(self, warning: str) -> None:
        """A warning once per runner (a loop's whole life): a fact such as a kind the account may not
        list would otherwise repeat every interval. Every run keeps its own in sync_runs.warnings."""
        with self._report_lock:
            repeated = warning in self._warned
            if len(self._warned) >= WARNED_LIMIT:  # warnings naming objects must not grow a loop's memory
                self._warned.clear()
            self._warned.add(warning)
        log.log(logging.DEBUG if repeated else logging.WARNING, "%s", warning)

    def _phase(self, source: str, phase: str) -> None:
        if self.progress is not None:
            self.progress(source, phase)

    def _report(self, outcome: SourceOutcome) -> SourceOutcome:
        with self._report_lock:
            if outcome.run_id is not None:  # the audit log summarises each run sync_runs holds
                try:
                    record_sync(self.db, outcome)
                except Exception as exc:  # the run is recorded; a database refusing its summary stops nothing
                    log.warning(
                        "source %r: the audit summary of run %s was not written: %s",
                        outcome.source,
                        outcome.run_id,
                        _first_line(exc),
                    )
            for observer in self.observers:
                observer(outcome)
        return outcome


# Collections abandoned at their deadline whose thread had not ended yet, by source name (this process).
_ending: dict[str, threading.Thread] = {}
_ending_lock = threading.Lock()


def _remember_ending(source: str, thread: threading.Thread) -> None:
    with _ending_lock:
        _ending[source] = thread


def _still_ending(source: str) -> str | None:
    """Why a source must not start now: its previous collection, abandoned, still runs (None: it may start).

    Its client sends nothing past the cutoff, so it ends within a call's grace; it is waited for that long.
    """
    with _ending_lock:
        thread = _ending.get(source)
    if thread is None:
        return None
    thread.join(ABANDON_GRACE)
    if thread.is_alive():
        return "its previous collection, abandoned at its deadline, has not ended yet; not run beside it"
    with _ending_lock:
        if _ending.get(source) is thread:
            del _ending[source]
    return None


def _wait_unless_aborted(done: threading.Event, seconds: float, aborted: threading.Event) -> bool:
    """Wait for ``done`` up to ``seconds``; False when the time is up or ``aborted`` is set first."""
    end = time.monotonic() + seconds
    while not done.is_set() and not aborted.is_set():
        left = end - time.monotonic()
        if left <= 0:
            break
        done.wait(min(left, ABORT_CHECK_INTERVAL))
    return done.is_set()


def _few(lines: list[str], shown: int = 5) -> list[str]:
    """The first few lines, and how many more there were."""
    return lines if len(lines) <= shown else [*lines[:shown], f"and {len(lines) - shown} more like these"]


def _first_line(exc: BaseException) -> str:
    """An exception's first line (a database driver's own, for a SQLAlchemy error): a database error's
    text goes on with its SQL and parameters."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else ""


def select_sources(config: Config, names: Iterable[str] | None = None) -> list[SourceConfig]:
    wanted = list(names or [])
    if wanted:
        return [config.source(n) for n in wanted]
    return [s for s in config.sources if s.enabled]


def sync_source(
    db: Database,
    connector: Connector,
    *,
    allow_empty: bool = False,
    progress: ProgressCallback | None = None,
    configured: Collection[str] = (),
) -> SourceOutcome:
    """Run one built connector (for tests and benchmarks): ``SourceRunner.run_connector``."""
    runner = SourceRunner(
        db, ConnectorRegistry.of(type(connector)), allow_empty=allow_empty, progress=progress, configured=configured
    )
    return runner.run_connector(connector)


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
    observers: Sequence[Observer] = (),
) -> list[SourceOutcome]:
    """Run the selected sources of a config (``sync.concurrency`` at once); ``stop`` (set by a signal) ends it."""
    runner = SourceRunner.for_config(
        db,
        config,
        registry,
        allow_empty=allow_empty,
        lock_wait=lock_wait,
        stop=stop,
        progress=progress,
        observers=observers,
    )
    return runner.run_all(select_sources(config, names))


__all__ = [
    "Collected",
    "Observer",
    "ProgressCallback",
    "SkipCheck",
    "SourceOutcome",
    "SourceRunner",
    "SyncStatus",
    "collect",
    "select_sources",
    "sync_all",
    "sync_source",
]
