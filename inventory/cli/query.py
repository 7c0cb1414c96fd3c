"""`inventory hosts|workloads|services list|show`, `inventory changes`, `inventory sources`, `inventory connectors`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from inventory.cli.context import OUTPUT_FORMATS, AppContext
from inventory.cli.setup import complete_source_names
from inventory.errors import UsageError

if TYPE_CHECKING:
    from inventory.render import View

output_option = click.option(
    "-o",
    "--output",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="Output format (wide: more columns).",
)


def _column_list(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def list_output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """-o, --columns, --no-headers, -q, --sort-by: every list command shows its rows the same ways."""
    for option in reversed(
        [
            output_option,
            click.option(
                "--columns",
                callback=_column_list,
                metavar="FIELD,...",
                help="Show these fields (table, wide, CSV): name,status,...",
            ),
            click.option("--no-headers", is_flag=True, help="No header line (table, wide, CSV)."),
            click.option("-q", "--quiet", "ids_only", is_flag=True, help="Only the ids, one a line (for xargs)."),
            click.option("--sort-by", metavar="FIELD", help="Sort the rows by this field (empty values last)."),
        ]
    ):
        func = option(func)
    return func


def _view(options: dict[str, Any]) -> View:
    from inventory.render import View

    return View(
        columns=options.pop("columns"),
        headers=not options.pop("no_headers"),
        ids_only=options.pop("ids_only"),
        sort_by=options.pop("sort_by"),
    )


TABLE_COLUMNS = {
    "host": ("id", "source", "kind", "name", "status", "hostname", "addresses", "workloads"),
    "workload": ("id", "source", "kind", "namespace", "name", "status", "host"),
    "service": ("id", "source", "kind", "namespace", "name", "status", "members"),
}
WIDE_COLUMNS = {
    "host": (*TABLE_COLUMNS["host"], "machine", "external_id", "machine_uuid", "mac_addresses", "labels", "changed_at"),
    "workload": (*TABLE_COLUMNS["workload"], "external_id", "host_id", "parent_id", "labels", "changed_at"),
    "service": (*TABLE_COLUMNS["service"], "external_id", "labels", "changed_at"),
}


def object_fields(object_type: str) -> tuple[str, ...]:
    """The keys of a listed object, as the object-type table declares them (CSV header, --columns, --sort-by)."""
    from inventory.schema import SCHEMA  # SQLAlchemy is loaded by the commands that query, not at start-up

    return SCHEMA[object_type].output_keys


CHANGE_FIELDS = (
    "id",
    "at",
    "source",
    "action",
    "object_type",
    "object_id",
    "kind",
    "namespace",
    "external_id",
    "name",
    "diff",
    "fields",
)
SOURCE_FIELDS = (
    "name",
    "type",
    "identity",
    "hosts",
    "workloads",
    "services",
    "last_status",
    "last_run_at",
    "last_success_at",
    "last_error",
    "warnings",
)


def _filter_options(object_type: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
            click.option("--source", shell_complete=complete_source_names, help="Only objects of this source."),
            click.option("--kind", help="Only this kind, any case or alias (pod/po, deploy, sts, vm/qemu, ct/lxc)."),
            click.option("--status", help="Only this status (case-insensitive)."),
            click.option("--name", help="Name glob, e.g. 'web-*'."),
            click.option(
                "-l",
                "--label",
                "labels",
                multiple=True,
                metavar="SELECTOR",
                help="Label selector as kubectl's: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k; commas AND.",
            ),
            click.option("--include-removed", is_flag=True, help="Also objects that are gone from their source."),
            click.option("--limit", type=click.IntRange(min=1), help="At most this many rows."),
            list_output_options,
        ]
        if object_type in ("workload", "service"):
            options.append(click.option("--namespace", help="Namespace or glob, e.g. 'app-*'."))
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

        view = _view(filters)
        flt = queries.ObjectFilter(labels=queries.parse_labels(labels), **filters)
        with app.database().session() as session:
            rows = getattr(queries, f"list_{plural}")(session, flt)
        columns = TABLE_COLUMNS[object_type]
        render_rows(rows, output, columns, wide=WIDE_COLUMNS[object_type], fields=object_fields(object_type), view=view)

    list_command.help = f"List {plural} (live ones unless --include-removed)."

    @group.command("show")
    @click.argument("ident", metavar="NAME|NAMESPACE/NAME|ID|SOURCE/KIND/EXTERNAL_ID")
    @click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    @click.option("--source", shell_complete=complete_source_names, help="The object of this source.")
    @click.option(
        "--include-removed", is_flag=True, hidden=object_type != "host", help="Also the removed workloads, apart."
    )
    @click.pass_obj
    def show_command(app: AppContext, ident: str, output: str, source: str | None, include_removed: bool) -> None:
        from inventory.queries import show_object
        from inventory.render import render_document

        with app.database().session() as session:
            declared = object_type == "service" and not source
            logical = [s for s in app.config.services if s.name == ident] if declared else []
            if logical:
                from inventory.logical.status import evaluate

                # A name the config declares is that logical service; its rows stay reachable by id.
                render_document(evaluate(session, logical[0]).document(), output)
                return
            doc = show_object(session, object_type, ident, source=source, include_removed=include_removed)
            render_document(doc, output)

    show_command.help = f"One {object_type} with its links and recent changes."
    return group


@click.command("changes")
@click.option("--since", default="1d", show_default=True, help="How far back: a duration (1h, 7d) or an ISO time.")
@click.option("--until", help="Up to this duration ago or ISO time.")
@click.option("--source", shell_complete=complete_source_names, help="Only this source.")
@click.option("--kind", help="Only this kind, any case or alias.")
@click.option(
    "--type", "object_type", type=click.Choice(["host", "workload", "service"]), help="Only this object type."
)
@click.option("--action", type=click.Choice(["created", "updated", "removed", "revived"]))
@click.option("--limit", type=click.IntRange(min=1))
@list_output_options
@click.pass_obj
def changes_command(app: AppContext, since: str, until: str | None, output: str, **filters: Any) -> None:
    """What changed: created, updated (fields old -> new), removed, revived."""
    from inventory.queries import list_changes
    from inventory.render import render_rows
    from inventory.timeutil import parse_since

    view = _view(filters)
    try:
        since_at = parse_since(since)
        until_at = parse_since(until) if until else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with app.database().session() as session:
        rows = list_changes(session, since=since_at, until=until_at, **filters)
    if output in ("table", "wide"):
        from inventory.render import describe_diff

        # A table shows each changed field as old -> new; JSON, YAML and CSV keep the diff itself.
        rows = [{**row, "changed": describe_diff(row["diff"])} for row in rows]
    columns = ("at", "source", "action", "object_type", "kind", "namespace", "name", "changed")
    render_rows(rows, output, columns, wide=(*columns, "object_id", "external_id"), fields=CHANGE_FIELDS, view=view)


@click.command("sources")
@list_output_options
@click.pass_obj
def sources_command(app: AppContext, output: str, **options: Any) -> None:
    """Sources in the database with their last run and live object counts."""
    from inventory.queries import list_sources
    from inventory.render import render_rows

    with app.database().session() as session:
        rows = list_sources(session)
    columns = ("name", "type", "hosts", "workloads", "services", "last_status", "last_run_at", "last_error")
    render_rows(rows, output, columns, wide=SOURCE_FIELDS, fields=SOURCE_FIELDS, view=_view(options))


@click.command("connectors")
@list_output_options
@click.pass_obj
def connectors_command(app: AppContext, output: str, **options: Any) -> None:
    """Installed connectors (entry point group inventory.connectors) and whether they load."""
    from inventory.render import render_rows

    columns = ("type", "status", "module", "error")
    render_rows(app.registry.status(), output, columns, fields=columns, view=_view(options))


COMMANDS = [
    _make_group("host", "hosts"),
    _make_group("workload", "workloads"),
    _make_group("service", "services"),
    changes_command,
    sources_command,
    connectors_command,
]
