"""`inventory report`: counts, changes in a period, and what looks wrong."""

from __future__ import annotations

import sys
from typing import Any

import click

from inventory.cli.context import AppContext
from inventory.errors import UsageError


@click.command("report")
@click.option(
    "--since", default="1d", show_default=True, help="Changes in this period: a duration (1h, 7d) or an ISO time."
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.pass_obj
def report_command(app: AppContext, since: str, output: str) -> None:
    """Per source counts by kind and status, changes, failed/stopped workloads, idle hosts,
    services with no running member."""
    from inventory.documents import report_document

    with app.database().session() as session:
        try:
            report = report_document(session, since, app.config.services)
        except UsageError as exc:
            raise UsageError(f"--{exc}") from None
    print_report(report, output)


def print_report(report: dict[str, Any], output: str) -> None:
    from inventory.render import format_time, render_table, to_json
    from inventory.report import SECTIONS, section_count, section_rows, to_markdown

    if output == "json":
        click.echo(to_json(report))
    elif output == "markdown":
        click.echo(to_markdown(report))
    else:
        click.echo(f"Inventory report, changes since {format_time(report['since'])}")
        for title, key, columns in SECTIONS:
            if key not in report and key != "kinds":
                continue
            rows = section_rows(report, key)
            click.echo(f"\n{title}: {section_count(key, rows)}" if key != "sources" else f"\n{title}")
            if rows:
                sys.stdout.flush()
                render_table(rows, columns)


COMMANDS = [report_command]
