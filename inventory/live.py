"""Live sources: follow a source's changes as they happen (``Connector.watch``), written within a second.

A ``LiveSource`` runs one source whose connector streams (``Connector.streams``) and whose config
allows it (``events: true``, the default), in the loop (``inventory sync``) and ``serve --sync``:

1. It takes the source's **watch lock** (inventory/locks.py, purpose ``watch``), held for as long as
   it watches: of several replicas on one database, the holder watches and the others stay passive,
   asking again every ``lock_poll`` seconds; a holder that dies loses the lock with its process (or
   its PostgreSQL session), and a passive replica takes over with a full sync.
2. It runs a full sync (``SourceRunner``, the same as the loop's) and only after it succeeded starts
   ``connector.watch(stop)`` on a thread of its own, which queues the snapshots it yields.
3. Each snapshot is written through ``reconcile`` in one short write transaction under the source's
   **sync lock**, the lock every full sync takes: a full sync (of any process) and a delta never
   overlap, and a delta waiting for a full sync is written after it, in order. An unchanged object
   writes nothing. Our own tool calls on the objects changed are their cause (inventory/observe.py).
4. Bookkeeping: one ``sync_runs`` row per watch session, status ``watching``; the change rows of its
   deltas point to it, its counts grow as they land, and its ``finished_at`` moves on with every
   delta and every ``HEARTBEAT_SECONDS`` (so ``status --max-age`` sees the source fresh while the
   watch lives, and stale from its last beat once it died). ``status``/``sources`` say "watching since".
5. A ``SourceError`` from the watch, a watch that ends by itself, or a delta the database refused
   (unreachable, restarting) ends the session; nothing is dropped silently: the session's row says
   why, a full sync repairs what the lost deltas held, and the watch restarts, backing off
   (``backoff`` doubling to ``max_backoff``) while it keeps failing.
6. While watching, a full sync still runs every ``full_sync_interval``; what it changes is what the
   stream missed, stored as ``drift_repaired`` on its run (0 when the stream was right).

``request_stop`` (and the loop's stop event) ends it within about a second: the watch checks its
stop at least every second, and this runner every ``QUEUE_WAIT``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update

from inventory.connector import Connector, SourceConfig
from inventory.errors import InventoryError, SourceError, SourceLockHeld
from inventory.locks import SourceLock, make_lock, source_lock
from inventory.machine_links import relink_after_delta
from inventory.observe import attribute_tool_calls, watching_here
from inventory.outcome import SourceOutcome, SyncStatus, bounded
from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import Snapshot
from inventory.redact import redact_text
from inventory.storage.models import SyncRun
from inventory.storage.store import SqlStore
from inventory.sync import SourceRunner
from inventory.timeutil import format_seconds, utcnow

log = logging.getLogger(__name__)

# A watch session's row is moved on this often while nothing changes (observe.WATCH_ALIVE_SECONDS: dead after 3).
HEARTBEAT_SECONDS = 30.0
# A passive replica asks for the watch lock this often.
LOCK_POLL_SECONDS = 2.0
# The holder checks that its watch lock is still its own this often (a PostgreSQL restart drops it).
LOCK_CHECK_SECONDS = 5.0
# The runner looks at its stop, its heartbeat and its full-sync clock at least this often.
QUEUE_WAIT = 0.25
# A delta (or this runner's full sync) waits this long for a full sync another process is running.
SYNC_LOCK_WAIT = 120.0
BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
ERRORS_KEPT = 20
# How long a stopped watch may take to hand back its thread.
WATCH_JOIN_SECONDS = 5.0
# The error of a watch session whose process ended without closing it.
DIED = "the watch ended with its process (not closed)"
LOST_LOCK = "the watch lock was lost (its database session ended): another replica may watch now"


def streams(connector_class: type[Connector], source: SourceConfig) -> bool:
    """Whether a source is followed live: its connector streams and its config keeps ``events`` on."""
    return bool(connector_class.streams and source.events)


@dataclass
class _Ended:
    """The watch thread ended: with the error that ended it, or None (it saw its stop)."""

    error: str | None


@dataclass
class LiveStats:
    """What a live source did, for tests, the benchmark and log lines."""

    state: str = "starting"  # starting | passive | syncing | watching | backing off | stopped
    sessions: int = 0
    deltas: int = 0
    changed: int = 0
    full_syncs: int = 0
    drift_syncs: int = 0
    last_drift: int | None = None
    # The last few reasons a watch ended (a long-running process keeps no more).
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))
    run_id: int | None = None
    watching_since: datetime | None = None


class LiveSource:
    def __init__(
        self,
        runner: SourceRunner,
        source: SourceConfig,
        *,
        stop: threading.Event | None = None,
        full_sync_interval: float | None = None,
        backoff: float = BACKOFF_SECONDS,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        heartbeat: float = HEARTBEAT_SECONDS,
        lock_poll: float = LOCK_POLL_SECONDS,
        on_outcome: Callable[[SourceOutcome], None] | None = None,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self.runner = runner
        self.db = runner.db
        self.source = source
        self.name = source.name
        self.stop = stop or threading.Event()
        self.full_sync_interval = full_sync_interval or source.full_sync_interval
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.heartbeat = heartbeat
        self.lock_poll = lock_poll
        self.on_outcome = on_outcome
        # Told after each heartbeat (the loop refreshes its metrics: the source's last success moved on).
        self.on_beat = on_beat
        self.stats = LiveStats()
        self._session_stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._said_passive = False
        # Sessions whose closing the database refused (it was away), with why they ended: closed by the next.
        self._unclosed: dict[int, str | None] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self.run, name=f"live-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def request_stop(self) -> None:
        self.stop.set()
        session_stop = self._session_stop
        if session_stop is not None:
            session_stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the runner's thread to end; True when it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def _wait(self, seconds: float) -> None:
        self.stop.wait(max(0.0, seconds))

    def _backoff(self, failures: int) -> float:
        return min(self.backoff * 2.0 ** max(0, failures - 1), self.max_backoff)

    def run(self) -> None:
        """Watch the source until stopped: the watch lock's holder leads, others wait for it."""
        try:
            while not self.stopping:
                lock = make_lock(self.db, self.name, "watch")
                try:
                    acquired = lock.try_acquire()
                except InventoryError as exc:  # the database is away: ask again later
                    log.debug("source %r: watch lock: %s", self.name, exc)
                    self.stats.state = "waiting for the database"
                    lock.release()
                    self._wait(self.lock_poll)
                    continue
                if not acquired:
                    self._passive(lock)
                    lock.release()
                    self._wait(self.lock_poll)
                    continue
                self._said_passive = False
                try:
                    self._lead(lock)
                finally:
                    lock.release()
        finally:
            self.stats.state = "stopped"

    def _passive(self, lock: SourceLock) -> None:
        self.stats.state = "passive"
        if not self._said_passive:
            self._said_passive = True
            holder = lock.holder() or "another process"
            log.info("source %s: followed live by %s; this process stays passive until it stops", self.name, holder)

    def _lead(self, lock: SourceLock) -> None:
        """Hold the watch: full sync, then watch; after a failure, full sync again and watch again."""
        failures = 0
        need_full = True
        while not self.stopping:
            if need_full:
                outcome = self._full_sync(drift=False)
                if outcome is None or not SyncStatus(outcome.status).read_something:
                    failures += 1
                    self.stats.state = "backing off"
                    self._wait(self._backoff(failures))
                    if not lock.still_held():
                        return
                    continue
                need_full = False
                if failures:  # the watch failed before: not restarted at once, in case it fails at once again
                    self.stats.state = "backing off"
                    self._wait(self._backoff(failures))
                    continue
            began = time.monotonic()
            error = self._session(lock)
            if self.stopping or error is None:
                return
            if error == LOST_LOCK:
                log.warning("source %s: %s", self.name, error)
                return
            if time.monotonic() - began > self.max_backoff:
                failures = 0  # it had been watching well: start the backoff over
            failures += 1
            self.stats.errors.append(error)
            log.warning(
                "source %s: the watch ended: %s; a full sync follows, then the watch restarts in %s",
                self.name,
                error,
                format_seconds(self._backoff(failures)),
            )
            need_full = True

    # --- full syncs ----------------------------------------------------------------------------------------

    def _connector(self) -> Connector:
        return self.runner.registry.get(self.source.type)(self.source)

    def _full_sync(self, *, drift: bool) -> SourceOutcome | None:
        self.stats.state = "syncing"
        try:
            connector = self._connector()
        except InventoryError as exc:
            self.stats.errors.append(str(exc))
            log.warning("source %s: %s", self.name, exc)
            return None
        outcome = self.runner.run_connector(connector, lock_wait=SYNC_LOCK_WAIT, drift=drift)
        self.stats.full_syncs += 1
        if drift and outcome.drift_repaired is not None:
            self.stats.drift_syncs += 1
            self.stats.last_drift = outcome.drift_repaired
            if outcome.drift_repaired:
                log.warning(
                    "source %s: the full sync repaired %d object(s) the change stream had missed",
                    self.name,
                    outcome.drift_repaired,
                )
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return outcome

    # --- one watch session ----------------------------------------------------------------------------------

    def _session(self, lock: SourceLock) -> str | None:
        """Watch until stopped (None) or until something ends the watch (why)."""
        try:
            connector = self._connector()
            type(connector).load_sdk()
            run_id = self._open_session(connector.type_name)
        except Exception as exc:  # the connector cannot be built, or the database refused the session's row
            return redact_text(f"the watch could not start: {_reason(exc)}")
        self.stats.sessions += 1
        self.stats.run_id = run_id
        self.stats.state = "watching"
        session_stop = threading.Event()
        self._session_stop = session_stop
        if self.stopping:
            session_stop.set()
        found: queue.Queue[Snapshot | _Ended] = queue.Queue()
        producer = threading.Thread(
            target=_follow, args=(connector, session_stop, found), name=f"watch-{self.name}", daemon=True
        )
        producer.start()
        watching_here(self.name, on=True)
        error: str | None = None
        now = time.monotonic()
        last_beat = last_full = last_check = now
        try:
            while True:
                if self.stopping:
                    return None
                now = time.monotonic()
                if now - last_check >= LOCK_CHECK_SECONDS:
                    last_check = now
                    if not lock.still_held():
                        error = LOST_LOCK
                        return error
                if now - last_full >= self.full_sync_interval and found.empty():
                    self._full_sync(drift=True)
                    self.stats.state = "watching"
                    last_full = last_beat = time.monotonic()
                    continue
                try:
                    item = found.get(timeout=QUEUE_WAIT)
                except queue.Empty:
                    if now - last_beat >= self.heartbeat:
                        try:
                            self._beat(run_id)
                        except Exception as exc:
                            error = f"the database refused the watch's heartbeat: {_reason(exc)}"
                            return error
                        last_beat = now
                        if self.on_beat is not None:
                            self.on_beat()
                    continue
                if isinstance(item, _Ended):
                    if self.stopping and item.error is None:
                        return None
                    error = item.error or "the watch ended by itself"
                    return error
                try:
                    self._write_delta(item, run_id)
                except SourceLockHeld:
                    if self.stopping:
                        return None
                    error = f"a delta waited {format_seconds(SYNC_LOCK_WAIT)} for the source's sync lock"
                    return error
                except Exception as exc:
                    pending = found.qsize()
                    error = (
                        f"writing a delta failed ({_reason(exc)}); it and {pending} more queued are left "
                        "to the full sync that follows"
                    )
                    return error
                last_beat = time.monotonic()
        finally:
            session_stop.set()
            producer.join(WATCH_JOIN_SECONDS)
            if producer.is_alive():
                log.warning("source %s: the watch did not end within %ss of its stop", self.name, WATCH_JOIN_SECONDS)
            watching_here(self.name, on=False)
            self._session_stop = None
            self._close_session(run_id, error)

    def _open_session(self, type_name: str) -> int:
        """The session's sync_runs row (status watching); sessions of this source left open by a process
        that died are closed first (this process holds the watch lock: nobody else watches)."""
        with self.db.write_session() as session:
            store = SqlStore(session)
            source_id = store.source_id(self.name, type_name, configured=self.runner.configured)
            now = utcnow()
            for run_id, message in self._unclosed.items():  # this process's sessions the database refused to close
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id, SyncRun.status == SyncStatus.WATCHING.value)
                    .values(status=SyncStatus.FAILED.value, error=message or DIED)
                )
            session.execute(
                update(SyncRun)
                .where(SyncRun.source_id == source_id, SyncRun.status == SyncStatus.WATCHING.value)
                .values(status=SyncStatus.FAILED.value, error=DIED)
            )
            run = SyncRun(source_id=source_id, started_at=now, finished_at=now, status=SyncStatus.WATCHING.value)
            session.add(run)
            session.flush()
        self._unclosed.clear()
        self.stats.watching_since = now
        return int(run.id)

    def _beat(self, run_id: int) -> None:
        with self.db.write_session() as session:
            session.execute(update(SyncRun).where(SyncRun.id == run_id).values(finished_at=utcnow()))

    def _close_session(self, run_id: int, error: str | None) -> None:
        """The session's row says how it ended: success when stopped, failed with why otherwise."""
        status = SyncStatus.SUCCESS if error is None else SyncStatus.FAILED
        message = bounded(redact_text(f"source {self.name!r}: {error}")) if error else None
        try:
            with self.db.write_session() as session:
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id, SyncRun.status == SyncStatus.WATCHING.value)
                    .values(status=status.value, finished_at=utcnow(), error=message, complete=False)
                )
        except Exception as exc:  # the database is away: said when the next session opens (until then it ages)
            log.debug("source %s: closing watch session %s failed: %s", self.name, run_id, _reason(exc))
            self._unclosed[run_id] = message

    def _write_delta(self, snapshot: Snapshot, run_id: int) -> ReconcileResult:
        """One snapshot the watch yielded, in one write transaction under the source's sync lock."""
        runner = self.runner
        with (
            source_lock(self.db, self.name, wait=SYNC_LOCK_WAIT, stop=self.stop),
            runner._write_lock,
            self.db.write_session() as session,
        ):
            store = SqlStore(session)
            source_id = store.source_id(self.name, self.source.type, snapshot.identity, configured=runner.configured)
            attribute_tool_calls(session, self.name, snapshot)
            result = reconcile(snapshot, store, source_id=source_id, run_id=run_id, allow_empty=runner.allow_empty)
            relink_after_delta(session, source_id, snapshot, result.changed)
            if result.changed:
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id == run_id)
                    .values(
                        finished_at=utcnow(),
                        objects=SyncRun.objects + snapshot.object_count,
                        created=SyncRun.created + result.created,
                        updated=SyncRun.updated + result.updated,
                        removed=SyncRun.removed + result.removed,
                        revived=SyncRun.revived + result.revived,
                    )
                )
        self.stats.deltas += 1
        self.stats.changed += result.changed
        for warning in result.warnings:
            log.warning("source %s: %s", self.name, redact_text(warning))
        return result


def _follow(connector: Connector, stop: threading.Event, found: queue.Queue[Snapshot | _Ended]) -> None:
    """The watch thread: every snapshot the connector yields, queued; then why it ended."""
    try:
        for snapshot in connector.watch(stop):
            if not isinstance(snapshot, Snapshot):
                raise SourceError(
                    connector.source_name, None, f"watch yielded {type(snapshot).__name__}, not a Snapshot"
                )
            found.put(snapshot)
            if stop.is_set():
                break
    except SourceError as exc:
        found.put(_Ended(redact_text(str(exc))))
        return
    except Exception as exc:  # a connector bug ends its watch, never the process
        log.debug("the watch of %s raised", connector.source_name, exc_info=True)
        found.put(_Ended(redact_text(f"source {connector.source_name!r}: {type(exc).__name__}: {exc}")))
        return
    found.put(_Ended(None if stop.is_set() else "the watch ended by itself"))


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


__all__ = ["HEARTBEAT_SECONDS", "LiveSource", "LiveStats", "streams"]
