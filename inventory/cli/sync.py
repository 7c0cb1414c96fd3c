"""`inventory sync`: once (cron, CI, systemd timer) or as the long-running loop (the service)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Self

import click

from inventory.cli.context import AppContext
from inventory.cli.setup import source_names_option, where_configured
from inventory.errors import UsageError

if TYPE_CHECKING:
    from inventory.outcome import SourceOutcome

log = logging.getLogger("inventory.cli.sync")
# Phases of each source ("collecting", "writing N objects"): shown with -v, never forced on.
progress_log = logging.getLogger("inventory.progress")


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from inventory.timeutil import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds < 0:
        raise click.BadParameter("must not be negative")
    return seconds


# After the first SIGTERM/SIGINT, how long the source in progress may take to finish before it is
# stopped as by a second signal (systemd's TimeoutStopSec is 120 s in deploy/, Docker's stop 10 s).
STOP_GRACE_SECONDS = 30.0


@contextmanager
def stop_on_signals(
    stop: Callable[[], None], abort: Callable[[str], None] | None = None, *, grace: float = STOP_GRACE_SECONDS
) -> Iterator[None]:
    """First SIGTERM/SIGINT: finish the source in progress, then stop; ``abort`` after ``grace`` seconds.
    Second: ``abort`` now (collections abandoned, waits for the database cut, the transaction in
    progress rolled back; each such source fails with the reason). Third: KeyboardInterrupt.

    A handler runs on the main thread between two of its bytecodes, possibly inside a lock that thread
    holds (starting a thread holds threading's own; setting or clearing an event holds the event's): had
    the handler logged, started a thread or set an event, it could wait for ever on a lock its own thread
    holds. So the handlers only hand the signal to a dispatcher thread (``SimpleQueue.put`` is reentrant)
    and switch the handlers; the dispatcher logs, stops, aborts and starts the grace timer.

    The previous handlers come back at the end, so that embedding the command (tests, the demo)
    leaves the process as it was.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; an embedding program handles its own signals
        return
    received: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()  # ("first" | "second" | "done", signum)
    timers: list[threading.Timer] = []

    def abort_now(reason: str) -> None:
        if abort is not None:
            abort(reason)

    def dispatch() -> None:
        while True:
            which, signum = received.get()
            if which == "done":
                return
            name = signal.Signals(signum).name
            if which == "second":
                log.warning("%s received again: stopping now (the source in progress fails and is rolled back)", name)
                # Each on a thread of its own: a stop still under way never holds back the abort.
                reason = f"stopped by a second {name} before it finished"
                threading.Thread(target=abort_now, args=(reason,), name="abort", daemon=True).start()
                continue
            log.warning(
                "%s received: finishing the source in progress (at most %ss), then exiting (send it again to stop now)",
                name,
                f"{grace:g}",
            )
            threading.Thread(target=stop, name="stop", daemon=True).start()
            if abort is not None:
                reason = f"stopped by {name}: not finished {grace:g}s after the signal"
                timer = threading.Timer(grace, abort_now, args=(reason,))
                timer.daemon = True
                timer.start()
                timers.append(timer)

    def third(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    def second(signum: int, _frame: Any) -> None:
        if abort is None:
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, third)
        signal.signal(signal.SIGINT, third)
        received.put(("second", signum))

    def first(signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, second)
        signal.signal(signal.SIGINT, second)
        received.put(("first", signum))

    dispatcher = threading.Thread(target=dispatch, name="signals", daemon=True)
    dispatcher.start()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, first)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        received.put(("done", 0))
        dispatcher.join(timeout=5)
        for timer in timers:
            timer.cancel()


class TerminalProgress:
    """One line per source on a terminal (stderr): its phase and how long it has taken, from the start
    (waiting) to its outcome; gone once the summary is printed."""

    def __init__(self, sources: Sequence[str] = ()) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[source]}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self._tasks: dict[str, Any] = {}
        self._redirected: list[tuple[logging.StreamHandler[Any], Any]] = []
        for source in sources:
            # Not started: the clock of a source runs from its first phase, not while others sync.
            self._tasks[source] = self._progress.add_task("waiting", source=source, total=None, start=False)

    def __enter__(self) -> Self:
        self._progress.start()
        # Log lines (a source's error) go through the live display, above it, instead of tearing it.
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.__stderr__,
                self._progress.console.file,
            ):
                self._redirected.append((handler, handler.setStream(_ConsoleWriter(self._progress.console))))
        return self

    def __exit__(self, *_exc: object) -> None:
        for handler, stream in self._redirected:
            handler.setStream(stream)
        self._progress.stop()

    def phase(self, source: str, phase: str) -> None:
        if source not in self._tasks:
            self._tasks[source] = self._progress.add_task(phase, source=source, total=None)
        self._progress.start_task(self._tasks[source])  # a no-op once started
        self._progress.update(self._tasks[source], description=phase)

    def finished(self, outcome: SourceOutcome) -> None:
        """The source's outcome in place of its phase; its clock stops."""
        task = self._tasks.get(outcome.source)
        if task is not None:
            self._progress.update(task, description=str(outcome.status))
            self._progress.stop_task(task)


class _RepeatedFailures(logging.Filter):
    """Drops the sync's own ERROR line for a failed source: `sync --once` prints it as its FAILED line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "inventory.sync" and record.levelno >= logging.ERROR)


@contextmanager
def failures_printed_once() -> Iterator[None]:
    handlers = [h for h in logging.getLogger().handlers if getattr(h, "_inventory", False)]
    dropper = _RepeatedFailures()
    for handler in handlers:
        handler.addFilter(dropper)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(dropper)


def failure_line(outcome: SourceOutcome) -> str:
    """``FAILED <error> (tried for 73.2s)``: how long the source was tried, which a bare "timed out" does not say."""
    from inventory.outcome import SyncStatus

    word = "LOCKED" if outcome.status == SyncStatus.LOCKED else "FAILED"
    waited = f" (tried for {outcome.duration:.1f}s)" if outcome.duration >= 0.05 else ""
    return f"{word} {outcome.error}{waited}"


class _ConsoleWriter:
    """A file-like front of a rich console: what is written is printed above the live display."""

    def __init__(self, console: Any) -> None:
        self._console = console

    def write(self, text: str) -> int:
        if text.strip():
            self._console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass


def _log_phase(source: str, phase: str) -> None:
    progress_log.info("source %s: %s", source, phase, extra={"source": source, "phase": phase})


def summary_rows(outcomes: Sequence[SourceOutcome]) -> list[dict[str, Any]]:
    rows = []
    for o in outcomes:
        r = o.result
        rows.append(
            {
                "source": o.source,
                "status": o.status,
                "objects": o.objects,
                "created": r.created if r else 0,
                "updated": r.updated if r else 0,
                "removed": r.removed if r else 0,
                "unchanged": r.unchanged if r else 0,
                "failed": 0 if o.ok else 1,
                "time": f"{o.duration:.2f}s",
                "error": o.error,
            }
        )
    return rows


@click.command("sync")
@click.option(
    "--once",
    is_flag=True,
    help="Sync every source once and exit: 0 all synced, 1 a source failed, was locked or was left unsynced "
    "by a signal, 2 usage/config error.",
)
@source_names_option
@click.option(
    "--allow-empty",
    is_flag=True,
    help="With --once: accept a complete answer with no objects of a type that had some (else nothing is removed).",
)
@click.option(
    "--wait",
    "wait",
    callback=_duration,
    metavar="SECONDS",
    help="With --once: wait this long for a source another process is syncing (default: do not wait, exit 1 naming the "
    "holder).",
)
@click.option(
    "--interval",
    callback=_duration,
    metavar="DURATION",
    help="Loop: seconds between syncs of a source (5m, 30s); a source's own interval wins. "
    "Default: sync.interval of the config.",
)
@click.option(
    "--jitter",
    type=click.FloatRange(0, 1),
    help="Loop: fraction of the interval added or removed at random. Default: sync.jitter.",
)
@click.option(
    "--max-backoff",
    callback=_duration,
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Loop: longest wait between retries of a failing source.",
)
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), help="Loop: serve Prometheus metrics on this port at /metrics."
)
@click.option(
    "--metrics-host",
    "--metrics-address",
    "metrics_address",
    default="127.0.0.1",
    show_default=True,
    help="Loop: address the metrics server listens on (0.0.0.0: every interface, e.g. in a container).",
)
@click.option(
    "--metrics-textfile",
    type=click.Path(dir_okay=False),
    help="With --once: write metrics in node_exporter's textfile format to this file.",
)
@click.option(
    "--max-cycles",
    type=click.IntRange(min=1),
    hidden=True,
    help="Loop: stop after this many cycles (tests, soak runs).",
)
@click.pass_obj
def sync_command(
    app: AppContext,
    once: bool,
    sources: tuple[str, ...],
    allow_empty: bool,
    wait: float | None,
    interval: float | None,
    jitter: float | None,
    max_backoff: float,
    metrics_port: int | None,
    metrics_address: str,
    metrics_textfile: str | None,
    max_cycles: int | None,
) -> None:
    """Sync sources into the inventory: the loop (the service) by default, or --once."""
    from inventory.sync import select_sources

    config = app.config
    if not config.sources:
        raise UsageError(f"no sources configured {where_configured(config)}")
    select_sources(config, sources)  # unknown names are a usage error before anything is written
    if once:
        for flag, value in (
            ("--interval", interval),
            ("--jitter", jitter),
            ("--metrics-port", metrics_port),
            ("--max-cycles", max_cycles),
        ):
            if value is not None:
                raise UsageError(f"{flag} belongs to the loop; drop it or drop --once")
        _sync_once(app, sources, allow_empty=allow_empty, wait=wait or 0.0, metrics_textfile=metrics_textfile)
        return
    once_only: tuple[tuple[str, object], ...] = (
        ("--wait", wait),
        ("--metrics-textfile", metrics_textfile),
        ("--allow-empty", allow_empty or None),
    )
    for flag, given in once_only:
        if given is not None:
            raise UsageError(
                f"{flag} belongs to --once (the loop never waits for a lock: another process is syncing that source)"
            )
    _sync_loop(
        app,
        sources,
        interval=interval,
        jitter=jitter,
        max_backoff=max_backoff,
        metrics_port=metrics_port,
        metrics_address=metrics_address,
        max_cycles=max_cycles,
    )


def _sync_once(
    app: AppContext, sources: tuple[str, ...], *, allow_empty: bool, wait: float, metrics_textfile: str | None
) -> None:
    from inventory.notify import Notifier
    from inventory.sync import Observer, SourceRunner, select_sources

    db = app.database()
    stop = threading.Event()
    # Progress needs a terminal on stderr only (stdout may be piped on); the summary table one on stdout.
    show_progress = sys.stderr.isatty()
    interactive = show_progress and sys.stdout.isatty()
    selected = select_sources(app.config, sources)
    notifier = Notifier(app.config.notify)
    observers: list[Observer] = [notifier.source_outcome]
    metrics = None
    if metrics_textfile:
        from inventory.metrics import SyncMetrics  # prometheus_client only when asked for

        metrics = SyncMetrics()
        observers.append(metrics.observe)
    runner = SourceRunner.for_config(
        db,
        app.config,
        app.registry,
        allow_empty=allow_empty,
        lock_wait=wait,
        stop=stop,
        progress=_log_phase,
        observers=observers,
    )
    try:
        names = [source.name for source in selected]
        with (
            stop_on_signals(stop.set, runner.abort),
            failures_printed_once(),
            TerminalProgress(names) if show_progress else nullcontext() as display,
        ):
            if display is not None:
                runner.progress = display.phase
                runner.observers.append(display.finished)
            outcomes = runner.run_all(selected)
    finally:
        notifier.close()
    if interactive:
        from inventory.render import render_table

        columns = ("source", "status", "objects", "created", "updated", "removed", "unchanged", "failed", "time")
        render_table(summary_rows(outcomes), columns, title="sync")
    else:
        for outcome in outcomes:
            click.echo(outcome.describe())

    textfile_failed = False
    if metrics is not None and metrics_textfile:
        try:
            with db.session() as session:
                metrics.refresh_from_database(session)
            metrics.write_textfile(metrics_textfile)
        except OSError as exc:
            textfile_failed = True
            reason = exc.strerror or exc
            message = f"cannot write --metrics-textfile {metrics_textfile}: {reason} (the sync itself was committed)"
            click.echo(message, err=True)

    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        click.echo(failure_line(outcome), err=True)
    click.echo(f"database: {db.display_url}", err=not interactive)
    skipped = len(selected) - len(outcomes)
    if stop.is_set() and skipped:
        click.echo(f"stopped by a signal: {skipped} source(s) not synced", err=True)
    # Sources left unsynced by a signal are not a success: a timer or CI must see it.
    if failed or textfile_failed or (stop.is_set() and skipped):
        raise SystemExit(1)


def _sync_loop(
    app: AppContext,
    sources: tuple[str, ...],
    *,
    interval: float | None,
    jitter: float | None,
    max_backoff: float,
    metrics_port: int | None,
    metrics_address: str,
    max_cycles: int | None,
) -> None:
    from inventory.audit.head import check_audit_key
    from inventory.loop import SyncLoop
    from inventory.metrics import SyncMetrics
    from inventory.notify import Notifier
    from inventory.sdnotify import sd_notify

    # A service's log is its only output: one line per sync, whatever -v says.
    for name in ("inventory.loop", "inventory.cli.sync"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    if interval is not None and interval <= 0:
        raise UsageError("--interval must be more than 0")
    db = app.database()
    check_audit_key(db)  # a loop beside others on one database: the same audit key, or stop here
    metrics = SyncMetrics()
    if metrics_port is not None:
        try:
            server = metrics.serve(metrics_port, metrics_address)
        except OSError as exc:
            raise UsageError(
                f"--metrics-port {metrics_port}: cannot listen on {metrics_address}: {exc.strerror}"
            ) from None
        app.cleanups.append(server.shutdown)
        log.info("serving metrics on http://%s:%d/metrics", metrics_address, server.server_port)
    notifier = Notifier(app.config.notify)
    app.cleanups.append(notifier.close)
    loop = SyncLoop(
        db,
        app.config,
        app.registry,
        names=sources,
        interval=interval,
        jitter=jitter,
        max_backoff=max_backoff,
        metrics=metrics,
        notifier=notifier,
        progress=_log_phase,
        # A bounded run (tests, soak runs) polls every source: following one has no cycles to count.
        follow=max_cycles is None,
    )
    log.info(
        "sync loop started: %d source(s) polled, %d followed live, pid %s",
        len(loop.schedule),
        len(loop.live),
        os.getpid(),
    )

    def stop() -> None:
        sd_notify("STOPPING=1")
        loop.request_stop()

    with stop_on_signals(stop, loop.abort):
        sd_notify("READY=1", f"STATUS=syncing {len(loop.schedule) + len(loop.live)} source(s)")
        cycles = loop.run(max_cycles=max_cycles)
    log.info("sync loop stopped after %d cycle(s)", cycles)


COMMANDS = [sync_command]
