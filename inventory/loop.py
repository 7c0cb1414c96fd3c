"""The long-running sync: every source on its own schedule, a failing one backing off alone.

Each source is due at its own time: its interval (``interval:`` of the source,
else ``sync.interval``, else ``--interval``) with jitter, so that sources do not
march in step. A source that fails waits twice as long each time (up to
``max_backoff``) while the others keep their pace; its first success resets it.

Several processes may run this loop against one PostgreSQL database: a source
is synced under its advisory lock, and a process that gets the lock first
checks whether another process synced the source within the interval, in which
case it skips it. So the processes split the sources between them instead of
each doing all of the work, and one that dies leaves its sources to the others.
A run of its own never counts as another's: the loop remembers the last run it
wrote per source, so a sync that takes a good part of the interval does not make
the next one look fresh and double the effective interval.

A source whose connector streams its changes (``Connector.streams``, ``events:`` left on) is not
polled: a ``LiveSource`` (inventory/live.py) follows it on a thread of its own, with a full sync
first and every ``full_sync_interval`` after, under the same locks and the same runner.

Every sync goes through ``inventory.sync.SourceRunner``, as ``sync --once`` does; the
loop adds its schedule, the skip check and its observers (log line, metrics, notifications),
and, where ``backup.dir`` is set, scheduled backups on a thread beside it (``inventory.backup.schedule``).

``request_stop()`` (SIGTERM, SIGINT) lets the source in progress finish (its
transaction commits or rolls back whole) and ends the loop; ``abort()`` (a second signal, or
the first one's grace run out) stops it now, cutting waits for a database that does not answer.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from inventory.backup.schedule import scheduled_backups
from inventory.config import Config
from inventory.connector import ConnectorRegistry, SourceConfig
from inventory.errors import ConnectorUnavailable
from inventory.live import LiveSource, streams
from inventory.logs import outcome_fields
from inventory.metrics import SyncMetrics
from inventory.notify import Notifier
from inventory.outcome import SourceOutcome, SyncStatus
from inventory.retention import RetentionSchedule
from inventory.storage.database import Database
from inventory.storage.models import Source, SyncRun
from inventory.sync import Observer, ProgressCallback, SourceRunner, select_sources
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)

DEFAULT_MAX_BACKOFF = 3600.0
# How long the loop waits when every source is running (a sync ending wakes it sooner).
IDLE_WAKE_SECONDS = 60.0
# A source synced by another process less than this fraction of its interval ago is skipped.
FRESH_FRACTION = 0.8


@dataclass
class Scheduled:
    source: SourceConfig
    interval: float
    next_due: float
    failures: int = 0
    syncs: int = 0
    # The last run of this source by this loop that read something: the loop's own pace is
    # never mistaken for another process's sync.
    own_run_id: int | None = None


def backoff_delay(interval: float, failures: int, max_backoff: float) -> float:
    """Seconds before retrying a source after ``failures`` failures in a row (none: its interval)."""
    if failures <= 0:
        return interval
    return min(interval * 2.0**failures, max(max_backoff, interval))


class SyncLoop:
    def __init__(
        self,
        db: Database,
        config: Config,
        registry: ConnectorRegistry,
        *,
        names: Iterable[str] | None = None,
        interval: float | None = None,
        jitter: float | None = None,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        coordinate: bool = True,
        follow: bool = True,
        metrics: SyncMetrics | None = None,
        notifier: Notifier | None = None,
        progress: ProgressCallback | None = None,
        on_outcome: Callable[[SourceOutcome], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.jitter = config.sync.jitter if jitter is None else jitter
        self.max_backoff = max_backoff
        self.coordinate = coordinate
        self.metrics = metrics
        self.clock = clock
        self.stop_event = threading.Event()
        # Set by a stop and by every sync that ends: the loop's wait ends at once for either.
        self._wake = threading.Event()
        # An injected clock's sleep (tests): syncs in flight take no time on it, so they end before it sleeps.
        self._clock_sleep = sleep
        self._rng = rng or random.Random()
        observers: list[Observer] = [log_outcome]
        if metrics is not None:
            observers.append(self._observe_metrics)
        if notifier is not None:
            observers.append(notifier.source_outcome)
        if on_outcome is not None:
            observers.append(on_outcome)
        # The loop never waits for a lock: another process is syncing that source right now.
        self.runner = SourceRunner.for_config(
            db, config, registry, stop=self.stop_event, progress=progress, observers=observers
        )
        now = clock()
        chosen = select_sources(config, names)
        # Sources followed live are not polled: each has its LiveSource (started by run()); follow=False polls all.
        beat = self._refresh_metrics if metrics is not None else None
        self.live = [
            LiveSource(self.runner, s, stop=self.stop_event, on_beat=beat)
            for s in chosen
            if follow and _streams(registry, s)
        ]
        followed = {live.name for live in self.live}
        self.schedule = [
            # --interval overrides the config file's global interval, never a source's own.
            Scheduled(s, s.interval or interval or config.sync.interval, next_due=now)
            for s in chosen
            if s.name not in followed
        ]
        self.cycles = 0
        # Housekeeping between syncs (retention.interval): old history pruned in small batches.
        self.retention = RetentionSchedule(db, config.retention, clock=clock, stop=self.stop_event)

    def request_stop(self) -> None:
        self.stop_event.set()
        for live in self.live:
            live.request_stop()
        self._wake.set()

    def abort(self, reason: str = "stopped by a signal before it finished") -> None:
        """Stop now: the syncs in progress are abandoned and rolled back (``SourceRunner.abort``)."""
        self.runner.abort(reason)
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def _jittered(self, seconds: float) -> float:
        if self.jitter <= 0:
            return seconds
        return seconds * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def run(self, *, max_cycles: int | None = None, until: float | None = None) -> int:
        """Sync due sources until stopped (or ``max_cycles`` rounds, or the clock reaches ``until``).

        Each source keeps its own pace: a source that falls due starts while a slow one is still
        running (``sync.concurrency`` at once, writes one at a time), and a source never runs twice
        at once. A cycle is one wake-up that starts every source due at that moment. When the loop
        ends, the syncs in progress finish first. Returns the cycles run.
        """
        running: dict[str, Future[SourceOutcome | None]] = {}
        workers = max(1, min(self.runner.concurrency, len(self.schedule) or 1))
        # Before the workers and watchers start: SDKs are imported one thread at a time.
        self.runner.registry.load_sdks([*(s.source.type for s in self.schedule), *(x.source.type for x in self.live)])
        for live in self.live:
            live.start()
        try:
            self._run_schedule(running, workers, max_cycles, until)
        finally:
            for live in self.live:  # they saw the stop event (request_stop), or are told now
                live.request_stop()
            for live in self.live:
                live.join()
        self.retention.wait()
        return self.cycles

    def _run_schedule(
        self,
        running: dict[str, Future[SourceOutcome | None]],
        workers: int,
        max_cycles: int | None,
        until: float | None,
    ) -> None:
        with (
            scheduled_backups(self.db, self.config),
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="source") as pool,
        ):
            while True:
                self._wake.clear()  # before looking at the stop: a stop requested from now on wakes the wait below
                if self.stopping or not (self.schedule or self.live):
                    break
                for name in [name for name, future in running.items() if future.done()]:
                    running.pop(name).result()  # run_source never raises for a source's failure
                if max_cycles is not None and (self.cycles >= max_cycles or not self.schedule):
                    # Rounds count polled sources; with none (every source followed live) a bounded run has
                    # no round to wait for and ends rather than idle for ever.
                    break
                self.retention.start_if_due()
                now = self.clock()
                if until is not None and now >= until:
                    break
                idle = [s for s in self.schedule if s.source.name not in running]
                due = sorted((s for s in idle if s.next_due <= now), key=lambda s: s.next_due)
                if due:
                    for scheduled in due:
                        future = pool.submit(self._run_unless_stopping, scheduled)
                        future.add_done_callback(lambda _done: self._wake.set())
                        running[scheduled.source.name] = future
                    self.cycles += 1
                    continue
                if running and self._clock_sleep is not None:
                    wait(list(running.values()))  # no time passes on an injected clock while syncs run
                    continue
                wake = min((s.next_due for s in idle), default=now + IDLE_WAKE_SECONDS)
                # A prune falls due on its own schedule: a sync interval longer than retention.interval
                # must not put it off until the next sync.
                pruning_due = self.retention.due_at()
                if pruning_due is not None:
                    wake = min(wake, max(pruning_due, now))
                if until is not None:
                    wake = min(wake, until)
                self._sleep(max(0.0, wake - now))
            for future in running.values():  # stopping: the syncs in progress finish (or are aborted)
                future.result()

    def _sleep(self, seconds: float) -> None:
        if self._clock_sleep is not None:
            self._clock_sleep(seconds)
        else:
            self._wake.wait(seconds)

    def _run_unless_stopping(self, scheduled: Scheduled) -> SourceOutcome | None:
        """A queued source not started before a stop is left alone (no outcome)."""
        if self.stopping:
            return None
        return self.run_source(scheduled)

    def run_source(self, scheduled: Scheduled) -> SourceOutcome:
        source = scheduled.source
        skip = (lambda _name: self._synced_elsewhere(scheduled)) if self.coordinate else None
        outcome = self.runner.run(source, skip=skip)
        scheduled.syncs += 1
        if SyncStatus(outcome.status).read_something and outcome.run_id is not None:
            scheduled.own_run_id = outcome.run_id
        if SyncStatus(outcome.status).failing:
            scheduled.failures += 1
            delay = backoff_delay(scheduled.interval, scheduled.failures, self.max_backoff)
            log.warning(
                "source %s failed (%d in a row): %s; next try in %.0fs",
                source.name,
                scheduled.failures,
                outcome.error,
                delay,
                extra=outcome_fields(outcome, failures=scheduled.failures, retry_in_seconds=round(delay, 1)),
            )
        else:
            scheduled.failures = 0
            delay = scheduled.interval
        # Fixed rate from the time the source was due, not from when its sync ended: sources due
        # together stay together, and a slow source does not drift. A sync longer than its
        # interval makes the next one due at once (one catch-up, never a burst).
        scheduled.next_due = max(scheduled.next_due + self._jittered(delay), self.clock())
        return outcome

    def _synced_elsewhere(self, scheduled: Scheduled) -> str | None:
        """Why to skip the source: another process synced it within most of its interval (None: sync it)."""
        name = scheduled.source.name
        with self.db.session() as session:
            last = session.execute(
                select(SyncRun.id, SyncRun.finished_at)
                .join(Source, Source.id == SyncRun.source_id)
                .where(Source.name == name, SyncRun.status.in_([s for s in SyncStatus if s.read_something]))
                .order_by(SyncRun.id.desc())
                .limit(1)
            ).first()
        if last is None or last.finished_at is None or last.id == scheduled.own_run_id:
            return None
        age = max(0.0, (utcnow() - last.finished_at) / timedelta(seconds=1))
        if age >= scheduled.interval * FRESH_FRACTION:
            return None
        return f"source {name!r}: synced {age:.0f}s ago by another process"

    def _observe_metrics(self, outcome: SourceOutcome) -> None:
        assert self.metrics is not None
        self.metrics.observe(outcome)
        self._refresh_metrics()

    def _refresh_metrics(self) -> None:
        """Object counts and last successes from the database (a live source's beat moves its last success on)."""
        if self.metrics is None:
            return
        try:
            with self.db.session() as session:
                self.metrics.refresh_from_database(session)
        except Exception:  # metrics must never stop the loop
            log.debug("refreshing metrics failed", exc_info=True)


def _streams(registry: ConnectorRegistry, source: SourceConfig) -> bool:
    try:
        return streams(registry.get(source.type), source)
    except ConnectorUnavailable:  # polled: its run says why it cannot load
        return False


def log_outcome(outcome: SourceOutcome) -> None:
    """The loop's line per sync: a service's log is its only output."""
    if SyncStatus(outcome.status).read_something:
        level = logging.INFO if outcome.ok else logging.WARNING
        line = outcome.describe() + (f": {outcome.error}" if outcome.error and not outcome.ok else "")
        log.log(level, "%s", line, extra=outcome_fields(outcome))
    elif not SyncStatus(outcome.status).failing:  # a failure is logged with its backoff by the loop
        log.info("%s", outcome.error, extra=outcome_fields(outcome))
