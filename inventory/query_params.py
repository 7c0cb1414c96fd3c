"""The parameters of every list query, declared once.

Each list query (hosts, workloads, services, changes) declares its parameters here: name, type,
help, default, bounds and which faces offer it. Everything else is generated from these
declarations: the click options of `inventory hosts list` / `get hosts` / `changes`
(inventory/cli/query.py), the pydantic model that validates the REST query string and the MCP
tools' input schemas (inventory/listing.py), and the OpenAPI document built from that model.

This module imports nothing heavy: the CLI reads it at start-up of `hosts list`, which loads
neither SQLAlchemy's ORM... nor pydantic until it queries (tests/test_startup.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ParamType = Literal["str", "int", "bool", "list"]  # list: a repeatable string (-l a -l b, ?label=a&label=b)
Completion = Literal["source", "kind"]


@dataclass(frozen=True)
class Param:
    """One parameter of a list query.

    ``cli``: the option's flags on the command line (None: not offered there; () : ``--NAME``);
    ``cli_dest``: the keyword the command receives when it is not ``name``.
    ``api``: offered by REST and MCP. ``api_default`` replaces ``default`` there (a page size).
    ``minimum``/``maximum`` bound an int (``maximum`` on REST and MCP only: the CLI may ask for all rows).
    """

    name: str
    type: ParamType
    help: str
    default: Any = None
    cli: tuple[str, ...] | None = ()
    cli_dest: str | None = None
    api: bool = True
    api_default: Any = None
    choices: tuple[str, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    metavar: str | None = None
    completion: Completion | None = None
    show_default: bool = False

    @property
    def flags(self) -> tuple[str, ...]:
        return self.cli or (f"--{self.name.replace('_', '-')}",)

    @property
    def dest(self) -> str:
        return self.cli_dest or self.name

    @property
    def default_on_api(self) -> Any:
        return self.default if self.api_default is None else self.api_default


@dataclass(frozen=True)
class ListQuery:
    """A list query: its parameters in the order the CLI shows them, its sortable fields and its row type."""

    name: str  # the plural: hosts, workloads, services, changes
    row: str  # the object type of its rows, or "change"
    summary: str
    params: tuple[Param, ...]
    sortable: tuple[str, ...]
    # The MCP tool that runs it: its name and what an agent reads of it.
    tool: str = ""
    tool_description: str = ""
    # Where the CLI's output options (-o, --columns, ...) sit among the generated ones: after this parameter.
    output_options_after: str = "limit"

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def cli_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.cli is not None)

    @property
    def api_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.api)


DEFAULT_PAGE = 100
MAX_PAGE = 1000

SOURCE = Param("source", "str", "Only objects of this source.", completion="source")
KIND = Param(
    "kind", "str", "Only this kind, any case or alias (pod/po, deploy, sts, vm/qemu, ct/lxc).", completion="kind"
)
STATUS = Param("status", "str", "Only this status (case-insensitive).")
NAME = Param("name", "str", "Name glob, e.g. 'web-*'.")
LABEL = Param(
    "label",
    "list",
    "Label selector as kubectl's: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k; commas AND.",
    cli=("-l", "--label"),
    metavar="SELECTOR",
)
INCLUDE_REMOVED = Param("include_removed", "bool", "Also objects that are gone from their source.", default=False)
LIMIT = Param(
    "limit",
    "int",
    "At most this many rows (REST and MCP: rows per page).",
    minimum=1,
    maximum=MAX_PAGE,
    api_default=DEFAULT_PAGE,
)
NAMESPACE = Param("namespace", "str", "Namespace or glob, e.g. 'app-*'.", cli=("-n", "--namespace"))
ALL_NAMESPACES = Param(
    "all_namespaces",
    "bool",
    "Every namespace (the default; as kubectl's -A).",
    default=False,
    cli=("-A", "--all-namespaces"),
    api=False,
)
HOST = Param("host", "str", "Only workloads on this host (name or id).")
# REST and MCP only: the CLI sorts its output with --sort-by and shows every row at once.
SORT = Param(
    "sort",
    "str",
    "Sort by these fields, -FIELD descending, e.g. -name,status (only the sortable fields; empty values last).",
    cli=None,
)
CURSOR = Param("cursor", "str", "next_cursor of the previous page (opaque).", cli=None)
FIELDS = Param("fields", "str", "Only these keys of each row, e.g. id,name,status.", cli=None)

_OBJECT_SORTABLE = ("id", "source", "kind", "external_id", "name", "status", "first_seen_at", "changed_at")
_PAGING = (SORT, CURSOR, FIELDS)

HOSTS = ListQuery(
    "hosts",
    "host",
    "List hosts",
    (SOURCE, KIND, STATUS, NAME, LABEL, INCLUDE_REMOVED, LIMIT, *_PAGING),
    (*_OBJECT_SORTABLE, "hostname"),
    "inventory_search_hosts",
    "Search hosts (nodes, hypervisors, VMs seen as machines) by filters.",
)
WORKLOADS = ListQuery(
    "workloads",
    "workload",
    "List workloads",
    (SOURCE, KIND, STATUS, NAME, LABEL, INCLUDE_REMOVED, LIMIT, NAMESPACE, ALL_NAMESPACES, HOST, *_PAGING),
    (*_OBJECT_SORTABLE, "namespace"),
    "inventory_search_workloads",
    "Search workloads (pods, VMs, LXC, containers) by filters.",
)
SERVICES = ListQuery(
    "services",
    "service",
    "List services",
    (SOURCE, KIND, STATUS, NAME, LABEL, INCLUDE_REMOVED, LIMIT, NAMESPACE, ALL_NAMESPACES, *_PAGING),
    (*_OBJECT_SORTABLE, "namespace"),
    "inventory_search_services",
    "Search services by filters.",
)
OBJECT_TYPES = ("host", "workload", "service")
ACTIONS = ("created", "updated", "removed", "revived")
CHANGES = ListQuery(
    "changes",
    "change",
    "What changed, oldest first",
    (
        Param(
            "since",
            "str",
            "How far back: a duration (1h, 7d) or an ISO time.",
            default="1d",
            show_default=True,
        ),
        Param("until", "str", "Up to this duration ago or ISO time."),
        Param("source", "str", "Only this source.", completion="source"),
        Param("kind", "str", "Only this kind, any case or alias.", completion="kind"),
        Param("type", "str", "Only this object type.", choices=OBJECT_TYPES, cli_dest="object_type"),
        Param("action", "str", "Only this action.", choices=ACTIONS),
        LIMIT,
        *_PAGING,
    ),
    ("at", "id", "source", "action", "object_type", "kind", "name", "external_id"),
    "inventory_recent_changes",
    "What changed (created, updated old -> new, removed, revived), oldest first.",
)

LIST_QUERIES: dict[str, ListQuery] = {q.name: q for q in (HOSTS, WORKLOADS, SERVICES, CHANGES)}
OBJECT_QUERIES: dict[str, ListQuery] = {q.row: q for q in (HOSTS, WORKLOADS, SERVICES)}
