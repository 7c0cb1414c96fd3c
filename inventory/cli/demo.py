"""`inventory demo`: the whole thing on one machine with no infrastructure at hand.

Starts fake Proxmox VE, Kubernetes and Docker APIs on loopback (inventory.demo),
syncs them through the real connectors into an embedded SQLite database in
``--dir``, prints the report, changes the lab, syncs again and shows what
changed. The database stays, so that the queries the demo suggests work on it
afterwards. ``--churn`` keeps the lab changing under the sync loop until Ctrl-C.
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
@click.option("--churn", is_flag=True, help="Keep changing the lab and syncing it in the loop, until Ctrl-C.")
@click.option("--interval", default="5s", show_default=True, help="With --churn: time between two syncs of a source.")
@click.option("--cycles", type=click.IntRange(min=1), help="With --churn: stop after this many cycles.")
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
    from inventory.timeutil import utcnow

    directory = directory.resolve()
    _fresh_directory(directory, force=force)
    database_url = f"sqlite:///{directory / 'inventory.db'}"
    registry: ConnectorRegistry = app.registry
    click.echo(
        "inventory demo: a homelab on loopback fakes, synced through the real Proxmox, Kubernetes and Docker connectors"
    )
    with DemoLab(directory) as lab:
        config_path = lab.write_config(database_url, interval=interval)
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
                _churn_loop(db, config, registry, lab, cycles=cycles, metrics_port=metrics_port)
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


def _churn_loop(
    db: Database, config: Any, registry: Any, lab: Any, *, cycles: int | None, metrics_port: int | None
) -> None:
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

    # No jitter: every cycle syncs every source, so that each change shows in the next cycle.
    loop = SyncLoop(db, config, registry, jitter=0, metrics=metrics, coordinate=False, on_outcome=show)
    # The first sync happened already: every source is next due one interval from now.
    for scheduled in loop.schedule:
        scheduled.next_due = loop.clock() + scheduled.interval
    _heading(f"Churn: the lab changes before every cycle; syncs every {config.sync.interval:g}s (Ctrl-C stops)")
    step = 0
    with stop_on_signals(loop.request_stop, loop.abort):
        while not loop.stopping and (cycles is None or loop.cycles < cycles):
            step += 1
            for line in lab.churn(step):
                click.echo(f"  ~ {line}")
            loop.run(max_cycles=loop.cycles + 1)
    click.echo(f"stopped after {loop.cycles} cycle(s)")


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
