"""The web UI's overview pages: the home page an operator keeps open, and the host/workload/service lists.

Both are the library's own queries (``report.build_overview``, the declared list queries of
``listing.run_list``, the approvals list) rendered; the filters and sortable fields are the CLI's and
the API's (source, kind, status, namespace, labels, name), and pages follow keyset cursors, so a sync
writing meanwhile never shifts them.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from inventory import queries
from inventory.errors import InventoryError, UsageError
from inventory.server.auth import Permission
from inventory.server.state import server_state
from inventory.server.web_base import SEARCH_LIMIT, page, signed_in
from inventory.timeutil import utcnow

router = APIRouter(include_in_schema=False)

LIST_PAGE = 100
# Per list: the columns a page can show (the first ones shown unless the user picks), and their headings.
COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "hosts": (
        ("name", "Name"),
        ("source", "Source"),
        ("kind", "Kind"),
        ("status", "Status"),
        ("addresses", "Addresses"),
        ("workloads", "Workloads"),
        ("hostname", "Hostname"),
        ("machine_uuid", "Machine uuid"),
        ("external_id", "External id"),
        ("labels", "Labels"),
        ("changed_at", "Changed"),
    ),
    "workloads": (
        ("name", "Name"),
        ("source", "Source"),
        ("kind", "Kind"),
        ("namespace", "Namespace"),
        ("status", "Status"),
        ("host", "Host"),
        ("external_id", "External id"),
        ("labels", "Labels"),
        ("changed_at", "Changed"),
    ),
    "services": (
        ("name", "Name"),
        ("source", "Source"),
        ("kind", "Kind"),
        ("namespace", "Namespace"),
        ("status", "Status"),
        ("members", "Members"),
        ("external_id", "External id"),
        ("labels", "Labels"),
        ("changed_at", "Changed"),
    ),
}
DEFAULT_COLUMNS = {"hosts": 6, "workloads": 6, "services": 6}
HOME_ROWS = 10


@router.get("/")
def home(request: Request, q: str = "") -> HTMLResponse:
    """Search results when asked; else what an operator looks at first: health, what is down, today, approvals."""
    from inventory.report import build_overview

    principal, session = signed_in(request, Permission.READ)
    state = server_state(request)
    if q.strip():
        pattern = q.strip() if any(c in q for c in "*?") else f"*{q.strip()}*"
        flt = queries.ObjectFilter(name=pattern, limit=SEARCH_LIMIT)
        with state.db.read_session() as db_session:
            results = {
                plural: getattr(queries, f"list_{plural}")(db_session, flt)
                for plural in ("hosts", "workloads", "services")
            }
        return page(request, "search.html", principal, session, q=q, results=results, limit=SEARCH_LIMIT)
    today = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    with state.db.read_session() as db_session:
        report = build_overview(db_session, since=today)
        latest = queries.list_changes(db_session, since=today, limit=HOME_ROWS, newest_first=True)
    return page(
        request,
        "home.html",
        principal,
        session,
        report=report,
        latest=latest,
        changed_today=sum(row["total"] for row in report["changes"]),
        approvals=_pending_approvals(state),
        rows=HOME_ROWS,
    )


def _pending_approvals(state: Any) -> list[dict[str, Any]] | None:
    """Pending approvals, or None where this server runs no tools (nothing can be pending)."""
    if state.runner is None:
        return None
    from inventory.policy.approvals import list_approvals

    try:
        return list_approvals(state.tool_runner(), "pending")
    except InventoryError:
        return None


def _list_page(request: Request, plural: str, asked: dict[str, Any]) -> HTMLResponse:
    """One page of a list through the declared query (the API's and MCP's own): filters, sort, keyset cursor."""
    from inventory.listing import run_list, validate
    from inventory.query_params import LIST_QUERIES

    principal, session = signed_in(request, Permission.READ)
    known = dict(COLUMNS[plural])
    col = asked["col"]
    unknown = [c for c in col if c not in known]
    if unknown:
        raise UsageError(f"no column {', '.join(map(repr, unknown))} on this list (columns: {', '.join(known)})")
    shown = col or [key for key, _ in COLUMNS[plural][: DEFAULT_COLUMNS[plural]]]
    sortable = set(LIST_QUERIES[plural].sortable)
    values = {
        "source": asked["source"] or None,
        "kind": asked["kind"] or None,
        "status": asked["status"] or None,
        "name": asked["name"] or None,
        "label": asked["label"],
        "sort": asked["sort"] or None,
        "limit": LIST_PAGE,
        "cursor": asked["cursor"] or None,
    }
    if plural != "hosts":
        values["namespace"] = asked["namespace"] or None
    checked = validate(plural, values)
    state = server_state(request)
    with state.db.read_session() as db_session:
        listed = run_list(db_session, plural, checked)
        sources = queries.source_names(db_session)
    kept = {key: value for key, value in asked.items() if key not in ("cursor",)}
    query = [(key, value) for key, values_ in kept.items() for value in _values(values_) if value]

    def link(**changes: str) -> str:
        pairs = [(k, v) for k, v in query if k not in changes] + [(k, v) for k, v in changes.items() if v]
        return f"/{plural}?{urlencode(pairs)}"

    # Each sortable heading links to its sort: ascending first, descending when it already sorts ascending.
    sort_links = {key: link(sort=f"-{key}" if asked["sort"] == key else key) for key in shown if key in sortable}
    return page(
        request,
        "list.html",
        principal,
        session,
        plural=plural,
        rows=listed["items"],
        total=listed["total"],
        columns=[(key, known[key]) for key in shown],
        all_columns=COLUMNS[plural],
        shown=set(shown),
        sort=asked["sort"],
        sort_links=sort_links,
        sources=sources,
        asked=asked,
        first_page=link() if asked["cursor"] else None,
        next=link(cursor=listed["next_cursor"]) if listed["next_cursor"] else None,
    )


def _values(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _list_route(plural: str) -> None:
    def list_objects(
        request: Request,
        source: str = "",
        kind: str = "",
        status: str = "",
        namespace: str = "",
        label: list[str] = Query([]),
        name: str = "",
        col: list[str] = Query([]),
        sort: str = "",
        cursor: str = "",
    ) -> HTMLResponse:
        asked: dict[str, Any] = {
            "source": source,
            "kind": kind,
            "status": status,
            "namespace": namespace,
            "label": [value for value in label if value],
            "name": name,
            "col": col,
            "sort": sort,
            "cursor": cursor,
        }
        return _list_page(request, plural, asked)

    list_objects.__name__ = f"{plural}_list_page"
    router.add_api_route(f"/{plural}", list_objects, methods=["GET"])


for _plural in ("hosts", "workloads", "services"):
    _list_route(_plural)
