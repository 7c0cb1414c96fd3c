"""`inventory demo`: the whole thing on one machine with no infrastructure at hand.

Starts fake Proxmox VE, Kubernetes and Docker APIs on loopback (inventory.demo),
syncs them through the real connectors into an embedded SQLite database in
``--dir``, prints the report, changes the lab, syncs again and shows what
changed. The database stays, so that the queries the demo suggests work on it
afterwards. ``--churn`` keeps the lab changing while the loop follows each source
live (its watch: Kubernetes watches, Docker events, Proxmox tasks), and prints each
change as it is stored with who made it, until Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inventory.cli.context import AppContext, invoked_as
from inventory.errors import UsageError

if TYPE_CHECKING:
    from inventory.storage.database import Database
    from inventory.sync import SourceOutcome


def _heading(text: str) -> None:
    click.echo(f"\n== {text} ==")
    sys.stdout.flush()


def _print_outcomes(outcomes: list[SourceOutcome]) -> None:
    from inventory.cli.sync import summary_rows
    from inventory.render import render_table

    render_table(
        summary_rows(outcomes),
        ("source", "status", "objects", "created", "updated", "removed", "unchanged", "time", "error"),
    )


def shared_machines(db: Database) -> list[dict[str, Any]]:
    """Machines that more than one source sees (a VM that is a Kubernetes node), as the sync linked them."""
    from inventory.machine_links import stored_machines

    with db.session() as session:
        return stored_machines(session)


def _fresh_directory(directory: Path, *, force: bool) -> None:
    """The demo starts from an empty database (only files the demo itself writes are removed); an earlier
    demo's database is replaced only with --force or a yes on a terminal."""
    directory.mkdir(parents=True, exist_ok=True)
    database = directory / "inventory.db"
    if database.exists() and not force:
        where = _shown(database)
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError(
                f"{where} holds an earlier demo: pass --force to start afresh (or query it: "
                f"{invoked_as()} -c {_shown(directory / 'inventory.yaml')} hosts list)"
            )
        if not click.confirm(f"{where} holds an earlier demo. Replace it?", default=False, err=True):
            raise UsageError(f"kept {where}; pass --dir DIR for a demo beside it")
    for pattern in ("inventory.db", "inventory.db-wal", "inventory.db-shm", "inventory.db.*.sync.lock"):
        for path in directory.glob(pattern):
            path.unlink()


def _shown(path: Path) -> Path:
    """A path as the user would type it here: relative to the working directory when under it."""
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("inventory-demo"),
    show_default=True,
    help="Where the demo writes its config, credentials and SQLite database (kept afterwards).",
)
@click.option("--force", is_flag=True, help="Replace an earlier demo's database in --dir without asking.")
@click.option(
    "--churn",
    is_flag=True,
    help="Keep changing the lab while the loop follows every source live; print each change and its cause, "
    "until Ctrl-C.",
)
@click.option("--interval", default="5s", show_default=True, help="With --churn: time between two changes of the lab.")
@click.option("--cycles", type=click.IntRange(min=1), help="With --churn: stop after this many changes of the lab.")
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), help="With --churn: serve Prometheus metrics on this port."
)
@click.pass_obj
def demo_command(
    app: AppContext,
    directory: Path,
    force: bool,
    churn: bool,
    interval: str,
    cycles: int | None,
    metrics_port: int | None,
) -> None:
    """Run a small homelab on loopback fakes and sync it through the real connectors: no infrastructure needed."""
    from inventory.config import load_config
    from inventory.connector import ConnectorRegistry
    from inventory.demo import DemoLab
    from inventory.queries import list_changes
    from inventory.render import render_table
    from inventory.storage.database import open_database
    from inventory.sync import sync_all
    from inventory.timeutil import parse_duration, utcnow

    try:
        every = parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--interval: {exc}") from exc
    if every <= 0:
        raise UsageError(f"--interval: must be more than 0 (got {interval!r})")
    directory = directory.resolve()
    _fresh_directory(directory, force=force)
    database_url = f"sqlite:///{directory / 'inventory.db'}"
    registry: ConnectorRegistry = app.registry
    click.echo(
        "inventory demo: a homelab on loopback fakes, synced through the real Proxmox, Kubernetes and Docker connectors"
    )
    with DemoLab(directory) as lab:
        config_path = lab.write_config(database_url)
        config = load_config(config_path, registry=registry)
        guests = len(lab.proxmox.cluster.guests)
        click.echo(f"  fake Proxmox VE API   {lab.proxmox.url}  (3 nodes, {guests} guests)")
        click.echo(
            f"  fake Kubernetes API   {lab.kubernetes.url}  (3 nodes on the VMs node-0000..2, "
            f"{len(lab.kubernetes.objects.items['pods'])} pods)"
        )
        click.echo(
            f"  fake Docker Engine    {lab.docker.url}  (in the LXC docker01, {len(lab.docker.containers)} containers)"
        )
        click.echo(f"  config                {config_path}")
        click.echo(f"  database              {database_url}")
        db = open_database(database_url, migrate=True)
        try:
            applied = _apply_policy(db, lab.write_policy())
            click.echo(f"  policy                {applied}")
            _heading("First sync")
            first = sync_all(db, config, registry)
            _print_outcomes(first)
            if churn:
                _churn_live(db, config, registry, lab, every=every, cycles=cycles, metrics_port=metrics_port)
            else:
                _report(db)
                machines = shared_machines(db)
                _heading(f"One machine, several sources ({len(machines)} machines seen by more than one source)")
                render_table(machines, ("machine", "matched_by", "machine_uuid", "seen_as"))
                _heading("The lab changes")
                mark = utcnow()
                for line in lab.churn(2) + lab.churn(3):
                    click.echo(f"  {line}")
                _heading("Second sync")
                second = sync_all(db, config, registry)
                _print_outcomes(second)
                _heading("What changed")
                with db.session() as session:
                    changes = list_changes(session, since=mark)
                render_table(changes, ("source", "action", "object_type", "kind", "name", "fields"))
        finally:
            db.dispose()
    failed = [o for o in first if not o.ok]
    _next_steps(config_path)
    if failed:
        raise SystemExit(1)


def _apply_policy(db: Database, path: Path) -> str:
    """The lab's policy, applied by its owner (the first apply is the audit key's owner's): it decides its calls."""
    from inventory.policy.applied import apply_policy
    from inventory.policy.registry import ToolRegistry
    from inventory.principals import system_principal

    known = ToolRegistry.discover().names()
    info = apply_policy(db, path.read_bytes(), system_principal(), label=str(path), known_tools=known)
    return f"{_shown(path)} (applied, sha256 {info.sha256[:12]})"


def _report(db: Database) -> None:
    from inventory.cli.report import print_report
    from inventory.report import build_report
    from inventory.timeutil import parse_since

    _heading("Report")
    with db.session() as session:
        report = build_report(session, since=parse_since("1d"))
    print_report(report, "table")


def _churn_live(
    db: Database,
    config: Any,
    registry: Any,
    lab: Any,
    *,
    every: float,
    cycles: int | None,
    metrics_port: int | None,
) -> None:
    import threading

    from inventory.cli.sync import stop_on_signals
    from inventory.loop import SyncLoop
    from inventory.metrics import SyncMetrics

    metrics = SyncMetrics()
    if metrics_port is not None:
        server = metrics.serve(metrics_port, "127.0.0.1")
        click.echo(f"metrics on http://127.0.0.1:{server.server_port}/metrics")

    def show(outcome: SourceOutcome) -> None:
        click.echo(
            f"  {outcome.describe()}" if outcome.status != "failed" else f"  {outcome.source}: FAILED {outcome.error}"
        )

    # Every demo source streams: the loop follows each live (a full sync, then its watch) and polls none.
    loop = SyncLoop(db, config, registry, jitter=0, metrics=metrics, coordinate=False, on_outcome=show)
    _heading("Live: following every source (Kubernetes watches, Docker events, Proxmox tasks)")
    runner = threading.Thread(target=loop.run, name="demo-loop", daemon=True)
    steps = 0
    with stop_on_signals(loop.request_stop, loop.abort):
        runner.start()
        if _until_watching(loop):
            _heading(f"Churn: the lab changes every {every:g}s; each change as stored, BY who made it (Ctrl-C stops)")
            last_id = _last_change_id(db)
            while not loop.stopping and (cycles is None or steps < cycles):
                steps += 1
                done = lab.churn(steps)
                for line in done:
                    click.echo(f"  ~ {line}")
                last_id = _show_changes(db, loop, last_id, every=every, sources={d.split(":")[0] for d in done})
        loop.request_stop()
        runner.join()
    click.echo(f"stopped after {steps} change(s) of the lab")


# Sources named by the lab's churn lines, by the config's source names.
_CHURN_SOURCES = {"proxmox": "pve", "kubernetes": "k3s", "docker": "docker01"}
# How long the demo waits for the watches to start, and for a change to be stored.
WATCH_START_SECONDS = 60.0
CHANGE_WAIT_SECONDS = 10.0


def _until_watching(loop: Any) -> bool:
    """Wait for every live source's watch to run (after its full sync) and to have written its first reading (each
    watch reads everything first): a change made before that is found by comparison, its cause only inferred.
    False when stopped or one never does."""
    import time

    deadline = time.monotonic() + WATCH_START_SECONDS
    while not loop.stopping and time.monotonic() < deadline:
        if all(live.stats.state == "watching" and live.stats.deltas > 0 for live in loop.live):
            return True
        time.sleep(0.1)
    if not loop.stopping:
        waiting = ", ".join(f"{live.name} ({live.stats.state})" for live in loop.live if live.stats.state != "watching")
        click.echo(f"  not following {waiting} after {WATCH_START_SECONDS:g}s: stopping", err=True)
    return False


def _last_change_id(db: Database) -> int:
    from sqlalchemy import func, select

    from inventory.storage.models import Change

    with db.session() as session:
        return int(session.scalar(select(func.max(Change.id))) or 0)


def _show_changes(db: Database, loop: Any, last_id: int, *, every: float, sources: set[str]) -> int:
    """Print the change rows stored after ``last_id`` for ``every`` seconds, and at least until each source that
    changed has a row (at most CHANGE_WAIT_SECONDS): the demo shows each change with its cause as it lands."""
    import time
    from datetime import UTC, datetime

    from inventory.queries import list_changes
    from inventory.render import describe_diff

    started = time.monotonic()
    waiting = {_CHURN_SOURCES[s] for s in sources if s in _CHURN_SOURCES}
    while not loop.stopping:
        with db.session() as session:
            rows = list_changes(session, since=datetime(1970, 1, 1, tzinfo=UTC), after_id=last_id)
        for row in rows:
            last_id = max(last_id, row["id"])
            waiting.discard(row["source"])
            changed = describe_diff(row["diff"], joined=row["members_joined"], left=row["members_left"], cut=True)
            name = f"{row['namespace']}/{row['name']}" if row["namespace"] else row["name"]
            click.echo(
                f"    {row['source']:<9} {row['action']:<8} {row['object_type']:<8} {row['kind']:<15} {name:<32} "
                f"{changed or '-'}  BY {row['by']}"
            )
        elapsed = time.monotonic() - started
        if elapsed >= every and (not waiting or elapsed >= CHANGE_WAIT_SECONDS):
            break
        time.sleep(0.2)
    return last_id


def _next_steps(config_path: Path) -> None:
    prefix = f"{invoked_as()} -c {_shown(config_path)}"
    click.echo("\nThe database stays; try:")
    for command in (
        "hosts list",
        "workloads list --status stopped",
        "workloads list --source k3s --kind pod",
        "services list",
        "hosts list --name 'node-*'",
        "changes --since 1h",
        "report -o markdown",
        "status",
    ):
        click.echo(f"  {prefix} {command}")


COMMANDS = [demo_command]
