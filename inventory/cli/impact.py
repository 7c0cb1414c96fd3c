"""`inventory impact TARGET`: what breaks if this host or workload goes (thin over inventory.impact)."""

from __future__ import annotations

import click

from inventory.cli.context import AppContext


@click.command("impact")
@click.argument("target", metavar="[host:|workload:]NAME|ID|SOURCE/KIND/EXTERNAL_ID")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.pass_obj
def impact_command(app: AppContext, target: str, output: str) -> None:
    """What goes with TARGET: the hosts other sources see on the same machine, every workload on them,
    and the services that lose members (first those left without a ready one).

    A bare name is looked up as a Proxmox guest first, then as a host, then as any workload."""
    from inventory.documents import impact_as_document
    from inventory.impact import impact
    from inventory.render import printable, render_document, render_table

    with app.database().session() as session:
        result = impact(session, target)
        document = impact_as_document(session, result, app.config.services)
    if output != "table":
        render_document(document, output)
        return
    click.echo(printable(result.summary()))  # it names the target and what goes with it, as their sources spell them
    if document.get("logical_services"):
        names = ", ".join(s["name"] + (f" (SLO {s['slo']})" if s["slo"] else "") for s in document["logical_services"])
        click.echo(printable(f"Logical services it reaches: {names}"))
    for section, columns in (
        ("hosts", ("id", "source", "kind", "name", "status", "via")),
        ("services", ("id", "source", "kind", "namespace", "name", "members", "lost", "left_running", "down")),
        ("workloads", ("id", "source", "kind", "namespace", "name", "status", "via")),
    ):
        if document[section]:
            click.echo()
            render_table(document[section], columns, title=section.capitalize())


COMMANDS = [impact_command]
