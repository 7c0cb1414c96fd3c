"""`inventory hosts|workloads|services list|show`, `inventory changes`, `inventory sources`, `inventory connectors`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from inventory.cli.context import OUTPUT_FORMATS, AppContext
from inventory.cli.setup import complete_source_names
from inventory.errors import UsageError
from inventory.query_params import CHANGES, OBJECT_QUERIES, ListQuery, Param

if TYPE_CHECKING:
    from inventory.render import View


class ListOutput(click.ParamType):
    """-o of list commands: the plain formats, kubectl's ``name``, ``jsonpath=TEMPLATE``, ``custom-columns=SPEC``."""

    name = "format"
    FORMATS = (*OUTPUT_FORMATS, "name")
    PREFIXES = ("jsonpath=", "custom-columns=")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if text in self.FORMATS or (text.startswith(self.PREFIXES) and text.partition("=")[2]):
            return text
        choices = ", ".join([*self.FORMATS, "jsonpath=TEMPLATE", "custom-columns=SPEC"])
        self.fail(f"{text!r} is not one of {choices}", param, ctx)

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(f) for f in (*self.FORMATS, *self.PREFIXES) if f.startswith(incomplete)]


output_option = click.option(
    "-o",
    "--output",
    type=ListOutput(),
    default="table",
    show_default=True,
    help="Output format: table, wide (more columns), json, csv, yaml, name, jsonpath=TEMPLATE, "
    "custom-columns=HEADER:.field,...",
)


def complete_kinds(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of --kind: the words the installed connectors declare."""
    from click.shell_completion import CompletionItem

    try:
        from inventory.queries import kind_vocabulary

        words = sorted(kind_vocabulary().words())
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [CompletionItem(word) for word in words if word.startswith(incomplete.lower())]


def complete_object_names(object_type: str) -> Callable[[click.Context, click.Parameter, str], list[Any]]:
    """Shell completion of an object's name, read from the database the command line's config names."""

    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        root = ctx.find_root()
        app = AppContext(config_path=root.params.get("config_path"), database_url=root.params.get("database_url"))
        try:
            from sqlalchemy.engine import make_url

            from inventory.queries import object_names

            url = make_url(app.config.database_url)
            if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
                return []  # completing a word must not create a database file
            with app.database(check_schema=False).session() as session:
                names = object_names(session, object_type, incomplete)
        except Exception:  # no config, no database: nothing to offer, and never a traceback
            return []
        finally:
            app.close()
        return [CompletionItem(name) for name in names]

    return complete


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
            click.option(
                "--sort-by",
                metavar="[-]FIELD",
                help="Sort the rows by this field, -FIELD descending (empty values last).",
            ),
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
    "watching_since",
    "drift_repaired",
)


_COMPLETIONS: dict[str, Callable[..., list[Any]]] = {"source": complete_source_names, "kind": complete_kinds}


def _click_option(param: Param) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A declared query parameter (inventory/query_params.py) as a click option."""
    kwargs: dict[str, Any] = {"help": param.help}
    if param.type == "bool":
        kwargs["is_flag"] = True
    elif param.type == "list":
        kwargs["multiple"] = True
    elif param.type == "int":
        kwargs["type"] = click.IntRange(min=param.minimum)
    elif param.choices:
        kwargs["type"] = click.Choice(list(param.choices))
    if param.type != "bool" and param.default is not None:
        kwargs["default"] = param.default
        kwargs["show_default"] = param.show_default
    if param.metavar:
        kwargs["metavar"] = param.metavar
    if param.completion:
        kwargs["shell_complete"] = _COMPLETIONS[param.completion]
    return click.option(*param.flags, param.dest, **kwargs)


def query_options(query: ListQuery) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of a list command, generated from its query's declared parameters, with the output options."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = []
        for param in query.cli_params:
            options.append(_click_option(param))
            if param.name == query.output_options_after:
                options.append(list_output_options)
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _make_list_command(object_type: str, plural: str, name: str) -> click.Command:
    @click.command(name)
    @query_options(OBJECT_QUERIES[object_type])
    @click.pass_obj
    def list_command(app: AppContext, output: str, label: tuple[str, ...], **filters: Any) -> None:
        from inventory import queries
        from inventory.render import render_rows

        view = _view(filters)
        if filters.pop("all_namespaces", False):
            if filters.get("namespace"):
                raise UsageError("-A/--all-namespaces and -n/--namespace ask for different things: give one")
        flt = queries.ObjectFilter(labels=queries.parse_labels(label), **filters)
        with app.database().session() as session:
            rows = getattr(queries, f"list_{plural}")(session, flt)
        columns = TABLE_COLUMNS[object_type]
        render_rows(
            rows,
            output,
            columns,
            wide=WIDE_COLUMNS[object_type],
            fields=object_fields(object_type),
            view=view,
            resource=object_type,
            typed_ids=True,
        )

    list_command.help = f"List {plural} (live ones unless --include-removed)."
    return list_command


def _make_show_command(object_type: str, name: str) -> click.Command:
    @click.command(name)
    @click.argument(
        "ident",
        metavar=f"NAME|NAMESPACE/NAME|{object_type.upper()}/ID|SOURCE/KIND/EXTERNAL_ID",
        shell_complete=complete_object_names(object_type),
    )
    @click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
    @click.option("--source", shell_complete=complete_source_names, help="The object of this source.")
    @click.option(
        "--include-removed", is_flag=True, hidden=object_type != "host", help="Also the removed workloads, apart."
    )
    @click.option(
        "-n",
        "--namespace",
        hidden=object_type == "host",
        help="The object of this namespace (NAME is then its name, as kubectl's -n).",
    )
    @click.pass_obj
    def show_command(
        app: AppContext, ident: str, output: str, source: str | None, include_removed: bool, namespace: str | None
    ) -> None:
        from inventory.queries import show_object
        from inventory.render import render_document

        if namespace:
            if object_type == "host":
                raise UsageError("hosts have no namespace: drop -n/--namespace")
            ident = f"{namespace}/{ident}"

        with app.database().session() as session:
            declared = object_type == "service" and not source
            logical = [s for s in app.config.services if s.name == ident] if declared else []
            if logical:
                from inventory.logical.status import evaluate

                # A name the config declares is that logical service; its rows stay reachable by id.
                render_document(evaluate(session, logical[0]).document(), output)
                return
            doc = show_object(
                session, object_type, ident, source=source, include_removed=include_removed, shared_ids_ambiguous=True
            )
            render_document(doc, output)

    show_command.help = (
        f"One {object_type} with its links and recent changes. A bare number that is also another type's id "
        f"is ambiguous: write {object_type}/ID."
    )
    return show_command


def _make_group(object_type: str, plural: str) -> click.Group:
    group = click.Group(plural, help=f"Query {plural}.")
    group.add_command(_make_list_command(object_type, plural, "list"))
    group.add_command(_make_show_command(object_type, "show"))
    return group


PLURALS = {"host": "hosts", "workload": "workloads", "service": "services"}


class _AliasGroup(click.Group):
    """`get`/`describe`: one subcommand per object type, under its plural and singular names (kubectl's habit)."""

    def __init__(self, name: str, aliases: dict[str, str], **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.aliases = aliases

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


def _get_group() -> click.Group:
    group = _AliasGroup(
        "get",
        {**PLURALS, "change": "changes", "source": "sources"},
        help="kubectl's habit: `get hosts|workloads|services [NAME]` lists (with NAME: shows), `get changes`.",
    )
    for object_type, plural in PLURALS.items():
        group.add_command(
            _GetObjects(
                object_type, _make_list_command(object_type, plural, plural), _make_show_command(object_type, plural)
            )
        )
    group.add_command(changes_command)
    group.add_command(sources_command)
    return group


class _GetObjects(click.Command):
    """`get hosts` lists; `get hosts NAME` shows that one (kubectl: `get pod NAME`), with the options of each."""

    def __init__(self, object_type: str, lister: click.Command, shower: click.Command) -> None:
        # NAME is declared for --help and shell completion; make_context hands a call with it to show.
        name = click.Argument(
            ["ident"], metavar="[NAME]", required=False, shell_complete=complete_object_names(object_type)
        )
        super().__init__(
            lister.name, help=f"{lister.help} With NAME: that one (as show).", params=[*lister.params, name]
        )
        self.lister, self.shower = lister, shower

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if extra.get("resilient_parsing") or {"-h", "--help"} & set(args):
            # Shell completion and --help read this command's own params (the list's options and NAME).
            return super().make_context(info_name, args, parent=parent, **extra)
        positional = [a for a in args if not a.startswith("-")]
        takes_value = {o for p in self.lister.params if isinstance(p, click.Option) and not p.is_flag for o in p.opts}
        # A bare word that is not an option's value names one object: hand the call to show.
        values = {args[i + 1] for i, a in enumerate(args[:-1]) if a in takes_value}
        chosen = self.shower if any(p not in values for p in positional) else self.lister
        return chosen.make_context(info_name, args, parent=parent, **extra)


def _describe_group() -> click.Group:
    group = _AliasGroup(
        "describe",
        {plural: singular for singular, plural in PLURALS.items()},
        help="kubectl's habit: `describe host|workload|service NAME` (as `hosts show NAME`).",
    )
    for object_type in PLURALS:
        group.add_command(_make_show_command(object_type, object_type))
    return group


@click.command("changes")
@query_options(CHANGES)
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="After the list, print each change as it is stored, until interrupted (-o json: one object a line).",
)
@click.pass_obj
def changes_command(app: AppContext, since: str, until: str | None, output: str, watch: bool, **filters: Any) -> None:
    """What changed: created, updated (fields old -> new), removed, revived, and by whom (BY)."""
    from inventory.queries import list_changes
    from inventory.timeutil import parse_period

    view = _view(filters)
    try:
        since_at, until_at = parse_period(since, until)
        assert since_at is not None  # --since has a default
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if watch and until_at is not None:
        raise UsageError("--watch follows changes from now on: it cannot end at --until")
    db = app.database()
    feed = _change_feed(db, filters) if watch else None  # made first: what is stored while listing is not lost
    with db.session() as session:
        rows = list_changes(session, since=since_at, until=until_at, **filters)
    if feed is not None and output == "json":
        _json_lines(rows)  # a watch's output is one stream of JSON lines, the listed rows included
    else:
        _show_changes(rows, output, view)
    if feed is not None:
        feed.mark_seen(rows)
        _watch_changes(feed, output, view)


def _show_changes(rows: list[dict[str, Any]], output: str, view: Any) -> None:
    from inventory.queries import CHANGE_KEYS
    from inventory.render import render_rows

    if output in ("table", "wide"):
        from inventory.render import describe_diff

        # A table shows each changed field as old -> new; JSON, YAML and CSV keep the diff itself.
        cut = output == "table" and sys.stdout.isatty()
        rows = [
            {
                **row,
                "changed": describe_diff(row["diff"], joined=row["members_joined"], left=row["members_left"], cut=cut),
            }
            for row in rows
        ]
    columns = ("at", "source", "action", "object_type", "kind", "namespace", "name", "changed", "by")
    wide = (*columns, "object_id", "external_id")
    render_rows(rows, output, columns, wide=wide, fields=CHANGE_KEYS, view=view, resource="change")


def _change_feed(db: Any, filters: dict[str, Any]) -> Any:
    from inventory.change_feed import ChangeFeed

    return ChangeFeed(db, {key: value for key, value in filters.items() if key != "limit"})


def _json_lines(rows: list[dict[str, Any]]) -> None:
    from inventory.records import to_json_bytes

    for row in rows:
        sys.stdout.write(to_json_bytes(row).decode() + "\n")


def _watch_changes(feed: Any, output: str, view: Any) -> None:
    """kubectl's -w: the rows stored from now on, as they come; a table's header only once."""
    import dataclasses
    import threading

    # The list printed the header (an empty list too): rows that follow come under it.
    following = dataclasses.replace(view, headers=False)
    stop = threading.Event()
    try:
        for row in feed.follow(stop):
            if output == "json":
                _json_lines([row])
            else:
                _show_changes([row], output, following)
            sys.stdout.flush()
    except KeyboardInterrupt:
        stop.set()


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
    render_rows(rows, output, columns, wide=SOURCE_FIELDS, fields=SOURCE_FIELDS, view=_view(options), resource="source")


@click.command("connectors")
@list_output_options
@click.pass_obj
def connectors_command(app: AppContext, output: str, **options: Any) -> None:
    """Installed connectors (entry point group inventory.connectors) and whether they load."""
    from inventory.render import render_rows

    columns = ("type", "status", "module", "error")
    rows = app.registry.status()
    render_rows(rows, output, columns, fields=columns, view=_view(options), resource="connector", name_key="type")


COMMANDS = [
    _make_group("host", "hosts"),
    _make_group("workload", "workloads"),
    _make_group("service", "services"),
    changes_command,
    sources_command,
    connectors_command,
    _get_group(),
    _describe_group(),
]
