"""The web UI's overview pages: the home page an operator keeps open, and the host/workload/service lists.

Both are the library's own queries (``report.build_report``, ``queries.list_*``, the approvals
list) rendered; the filters are the CLI's and the API's (source, kind, status, namespace, labels,
name). Pages are numbered by offset; a page asks for one row more than it shows to know whether
another follows.
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
    from inventory.report import build_report

    principal, session = signed_in(request, Permission.READ)
    state = server_state(request)
    if q.strip():
        pattern = q.strip() if any(c in q for c in "*?") else f"*{q.strip()}*"
        flt = queries.ObjectFilter(name=pattern, limit=SEARCH_LIMIT)
        with state.db.session() as db_session:
            results = {
                plural: getattr(queries, f"list_{plural}")(db_session, flt)
                for plural in ("hosts", "workloads", "services")
            }
        return page(request, "search.html", principal, session, q=q, results=results, limit=SEARCH_LIMIT)
    today = datetime.combine(utcnow().date(), time.min, tzinfo=utcnow().tzinfo)
    with state.db.session() as db_session:
        report = build_report(db_session, since=today)
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


def _list_page(
    request: Request,
    plural: str,
    *,
    source: str,
    kind: str,
    status: str,
    namespace: str,
    label: list[str],
    name: str,
    col: list[str],
    page_number: int,
) -> HTMLResponse:
    principal, session = signed_in(request, Permission.READ)
    known = dict(COLUMNS[plural])
    unknown = [c for c in col if c not in known]
    if unknown:
        raise UsageError(f"no column {', '.join(map(repr, unknown))} on this list (columns: {', '.join(known)})")
    shown = col or [key for key, _ in COLUMNS[plural][: DEFAULT_COLUMNS[plural]]]
    filters: dict[str, Any] = {
        "source": source or None,
        "kind": kind or None,
        "status": status or None,
        "namespace": (namespace or None) if plural != "hosts" else None,
        "labels": queries.parse_labels(label),
        "name": name or None,
    }
    state = server_state(request)
    offset = (page_number - 1) * LIST_PAGE
    flt = queries.ObjectFilter(**filters, limit=LIST_PAGE + 1, offset=offset)
    with state.db.session() as db_session:
        rows = getattr(queries, f"list_{plural}")(db_session, flt)
        sources = [s["name"] for s in queries.list_sources(db_session)]
    asked: dict[str, Any] = {
        "source": source,
        "kind": kind,
        "status": status,
        "namespace": namespace,
        "label": label,
        "name": name,
        "col": col,
    }
    query = [(key, value) for key, values in asked.items() for value in _values(values) if value]

    def link(number: int) -> str:
        return f"/{plural}?{urlencode([*query, ('page', number)])}"

    return page(
        request,
        "list.html",
        principal,
        session,
        plural=plural,
        rows=rows[:LIST_PAGE],
        columns=[(key, known[key]) for key in shown],
        all_columns=COLUMNS[plural],
        shown=set(shown),
        sources=sources,
        asked=asked,
        first=offset + 1,
        previous=link(page_number - 1) if page_number > 1 else None,
        next=link(page_number + 1) if len(rows) > LIST_PAGE else None,
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
        page: int = Query(1, ge=1, le=100_000),
    ) -> HTMLResponse:
        return _list_page(
            request,
            plural,
            source=source,
            kind=kind,
            status=status,
            namespace=namespace,
            label=[value for value in label if value],
            name=name,
            col=col,
            page_number=page,
        )

    list_objects.__name__ = f"{plural}_list_page"
    router.add_api_route(f"/{plural}", list_objects, methods=["GET"])


for _plural in ("hosts", "workloads", "services"):
    _list_route(_plural)
