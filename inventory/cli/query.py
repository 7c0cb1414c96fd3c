"""`inventory hosts|workloads|services list|show`, `inventory changes`, `inventory sources`, `inventory connectors`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from inventory.cli import OUTPUT_FORMATS, AppContext
from inventory.errors import UsageError

output_option = click.option(
    "-o", "--output", type=click.Choice(OUTPUT_FORMATS), default="table", show_default=True, help="Output format."
)

TABLE_COLUMNS = {
    "host": ("id", "source", "kind", "name", "status", "hostname", "addresses", "workloads"),
    "workload": ("id", "source", "kind", "namespace", "name", "status", "host"),
    "service": ("id", "source", "kind", "namespace", "name", "status", "members"),
}


def _filter_options(object_type: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--source", help="Only objects of this source."),
            click.option("--kind", help="Only this kind (e.g. pod, vm, node, container)."),
            click.option("--status", help="Only this status (case-insensitive)."),
            click.option("--name", help="Name glob, e.g. 'web-*'."),
            click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Label equals value (repeatable)."),
            click.option("--include-removed", is_flag=True, help="Also objects that are gone from their source."),
            click.option("--limit", type=click.IntRange(min=1), help="At most this many rows."),
            output_option,
        ]
        if object_type in ("workload", "service"):
            options.append(click.option("--namespace", help="Only this namespace."))
        if object_type == "workload":
            options.append(click.option("--host", help="Only workloads on this host (name or id)."))
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _make_group(object_type: str, plural: str) -> click.Group:
    @click.group(plural)
    def group() -> None:
        pass

    group.help = f"Query {plural}."

    @group.command("list")
    @_filter_options(object_type)
    @click.pass_obj
    def list_command(app: AppContext, output: str, labels: tuple[str, ...], **filters: Any) -> None:
        from inventory import queries
        from inventory.render import render_rows

        flt = queries.ObjectFilter(labels=queries.parse_labels(labels), **filters)
        with app.database().session() as session:
            rows = getattr(queries, f"list_{plural}")(session, flt)
        render_rows(rows, output, TABLE_COLUMNS[object_type])

    list_command.help = f"List {plural} (live ones unless --include-removed)."

    @group.command("show")
    @click.argument("ident", metavar="NAME|ID|SOURCE/KIND/EXTERNAL_ID")
    @click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    @click.pass_obj
    def show_command(app: AppContext, ident: str, output: str) -> None:
        from inventory.queries import show_object
        from inventory.render import render_document

        with app.database().session() as session:
            logical = [s for s in app.config.services if s.name == ident] if object_type == "service" else []
            if logical:
                from inventory.logical.status import evaluate

                # A name the config declares is that logical service; its rows stay reachable by id.
                render_document(evaluate(session, logical[0]).document(), output)
                return
            render_document(show_object(session, object_type, ident), output)

    show_command.help = f"One {object_type} with its links and recent changes."
    return group


@click.command("changes")
@click.option("--since", default="1d", show_default=True, help="How far back: a duration (1h, 7d) or an ISO time.")
@click.option("--until", help="Up to this duration ago or ISO time.")
@click.option("--source", help="Only this source.")
@click.option("--kind", help="Only this kind.")
@click.option("--type", "object_type", type=click.Choice(["host", "workload", "service"]), help="Only this object type.")
@click.option("--action", type=click.Choice(["created", "updated", "removed", "revived"]))
@click.option("--limit", type=click.IntRange(min=1))
@output_option
@click.pass_obj
def changes_command(app: AppContext, since: str, until: str | None, output: str, **filters: Any) -> None:
    """What changed: created, updated (fields old -> new), removed, revived."""
    from inventory.queries import list_changes
    from inventory.render import render_rows
    from inventory.timeutil import parse_since

    try:
        since_at = parse_since(since)
        until_at = parse_since(until) if until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with app.database().session() as session:
        rows = list_changes(session, since=since_at, until=until_at, **filters)
    render_rows(rows, output, ("at", "source", "action", "object_type", "kind", "name", "fields"))


@click.command("sources")
@output_option
@click.pass_obj
def sources_command(app: AppContext, output: str) -> None:
    """Sources in the database with their last run and live object counts."""
    from inventory.queries import list_sources
    from inventory.render import render_rows

    with app.database().session() as session:
        rows = list_sources(session)
    render_rows(rows, output, ("name", "type", "hosts", "workloads", "services", "last_status", "last_run_at", "last_error"))


@click.command("connectors")
@output_option
@click.pass_obj
def connectors_command(app: AppContext, output: str) -> None:
    """Installed connectors (entry point group inventory.connectors) and whether they load."""
    from inventory.render import render_rows

    render_rows(app.registry.status(), output, ("type", "status", "module", "error"))


COMMANDS = [
    _make_group("host", "hosts"),
    _make_group("workload", "workloads"),
    _make_group("service", "services"),
    changes_command,
    sources_command,
    connectors_command,
]
