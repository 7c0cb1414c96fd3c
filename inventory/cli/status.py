"""`inventory status`: is every source fresh? For people, for monitoring and for CI (exit code)."""

from __future__ import annotations

from typing import Any

import click

from inventory.cli.context import OUTPUT_FORMATS, AppContext
from inventory.errors import UsageError


def status_rows(app: AppContext) -> list[dict[str, Any]]:
    from inventory.report import source_status

    configured = [(s.name, s.type) for s in app.config.sources if s.enabled]
    with app.database().session() as session:
        return source_status(session, configured)


def warning_summary(warnings: list[str]) -> str:
    """A table cell: the one warning, or how many, then the first ("(3) node pve2: offline; ..."): the count
    first, so that a terminal's cut keeps it."""
    if len(warnings) <= 1:
        return warnings[0] if warnings else ""
    return f"({len(warnings)}) {warnings[0]}"


@click.command("status")
@click.option(
    "--max-age",
    metavar="DURATION",
    help="Exit 1 when a configured source's last successful sync is older than this (e.g. 15m), or never happened.",
)
@click.option(
    "-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True, help="Output format."
)
@click.pass_obj
def status_command(app: AppContext, max_age: str | None, output: str) -> None:
    """Per source: last successful sync, its age, object counts, the last run's warnings and error.

    A run that read nothing (``forbidden``: every part of the source refused to its credentials),
    failed or was partial is no success: with --max-age the source goes stale from its last success.
    """
    from inventory.render import printable, render_rows
    from inventory.timeutil import parse_duration

    limit = None
    if max_age is not None:
        try:
            limit = parse_duration(max_age)
        except ValueError as exc:
            raise UsageError(f"--max-age: {exc}") from None
    rows = status_rows(app)
    columns = ("source", "type", "last_status", "last_success_at", "age", "hosts", "workloads", "services")
    if output in ("table", "wide"):  # one cell per source: how many warnings and the first, then each in full
        shown = [{**row, "warnings": warning_summary(row["warnings"])} for row in rows]
        render_rows(shown, output, (*columns, "warnings", "last_error", "live"))
        for row in rows:  # on stderr, as STALE lines are: a terminal cuts the table, a pipe keeps its columns
            for warning in row["warnings"]:
                click.echo(f"WARNING source {row['source']!r}: {printable(warning)}", err=True)
    else:  # JSON, YAML: every warning, as a list
        render_rows(rows, output, (*columns, "last_error", "warnings", "watching_since", "drift_repaired"))
    if limit is None:
        return
    # Sources still in the database but gone from the config are history, not a monitoring failure.
    watched = [r for r in rows if r["configured"]] or rows
    stale = [r for r in watched if r["age_seconds"] is None or r["age_seconds"] > limit]
    for row in stale:
        when = "never synced successfully" if row["age_seconds"] is None else f"last successful sync {row['age']} ago"
        # Why the runs since did not count: a forbidden run names what to grant.
        last = f"; last run {row['last_status']}: {row['last_error']}" if row["last_error"] else ""
        click.echo(f"STALE source {row['source']!r}: {when} (--max-age {max_age}){last}", err=True)
    if not watched:
        click.echo("STALE no sources configured or synced", err=True)
    if stale or not watched:
        raise SystemExit(1)


COMMANDS = [status_command]
