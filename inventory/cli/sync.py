"""`inventory sync`: run the configured sources into the database."""

from __future__ import annotations

import click

from inventory.cli import AppContext
from inventory.errors import UsageError


def _summary(outcome) -> str:  # type: ignore[no-untyped-def]
    r = outcome.result
    if r is None:
        return f"{outcome.source}: {outcome.status}"
    counts = f"{r.created} created, {r.updated} updated, {r.removed} removed, {r.revived} revived, {r.unchanged} unchanged"
    return f"{outcome.source}: {outcome.status}, {outcome.objects} objects ({counts}) in {outcome.duration:.2f}s"


@click.command("sync")
@click.option("--once", is_flag=True, help="Sync every source once and exit: 0 all synced, 1 a source failed, 2 usage/config error.")
@click.option("-s", "--source", "sources", multiple=True, metavar="NAME", help="Only these sources (repeatable).")
@click.option("--allow-empty", is_flag=True, help="Accept a complete answer with no objects of a type that had some (else nothing is removed).")
@click.pass_obj
def sync_command(app: AppContext, once: bool, sources: tuple[str, ...], allow_empty: bool) -> None:
    """Sync sources into the inventory."""
    from inventory.sync import select_sources, sync_all

    config = app.config
    if not config.sources:
        where = f"in {config.path}" if config.path else "(no config file found: write ./inventory.yaml, see config/inventory.example.yaml)"
        raise UsageError(f"no sources configured {where}")
    select_sources(config, sources)  # unknown names are a usage error before anything is written
    if not once:
        raise UsageError("the scheduled loop is not available yet; run `inventory sync --once` from cron or a systemd timer")
    db = app.database()
    outcomes = sync_all(db, config, app.registry, names=sources, allow_empty=allow_empty)
    failed = [o for o in outcomes if not o.ok]
    for outcome in outcomes:
        click.echo(_summary(outcome))
    for outcome in failed:
        click.echo(f"FAILED {outcome.error}", err=True)
    if failed:
        raise SystemExit(1)
