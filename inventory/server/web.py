"""The web UI: server-rendered pages over the same library calls as the API (web_base.py holds what
every page shares: sessions, CSRF, headers; web_overview.py the home page and the lists).

The one script (static/live.js) only adds change rows the server renders to tables that follow
a change stream (``/changes/stream``, server-sent events); every page works without it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from inventory import queries
from inventory.errors import InventoryError, UsageError
from inventory.redact import redact_text
from inventory.server.auth import Forbidden, NotAuthenticated, Permission, TooManyFailures
from inventory.server.errors import forbidden_response, http_error_response, inventory_error_response, status_of
from inventory.server.sessions import SESSION_IDLE_SECONDS, SessionStore, token_references
from inventory.server.state import client_address, server_state
from inventory.server.web_base import (
    HERE,
    SESSION_COOKIE,
    SignInRequired,
    check_csrf,
    page,
    references,
    sessions,
    signed_in,
    templates,
)
from inventory.server.web_overview import router as overview

CHANGES_PAGE = 200
router = APIRouter(include_in_schema=False)


# --- sign-in -------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", None, None)


@router.post("/login")
def login(request: Request, token: str = Form(...)) -> Response:
    state = server_state(request)
    try:
        state.authorize(token.strip(), Permission.READ, client_address(request.scope))
        # Only a token that signed in is named: the session keeps this reference, never the token.
        reference = references(request).reference(token.strip())
        if reference is None:
            raise NotAuthenticated()
    except TooManyFailures as exc:
        slowed = page(request, "login.html", None, None, status_code=429, error=str(exc).capitalize() + ".")
        slowed.headers["Retry-After"] = str(exc.retry_after)
        return slowed
    except (NotAuthenticated, Forbidden):
        return page(request, "login.html", None, None, status_code=401, error="That token is not valid here.")
    session_id, _session = sessions(request).create(reference)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_IDLE_SECONDS,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    _principal, session = signed_in(request, Permission.READ)
    check_csrf(session, csrf)
    sessions(request).drop(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- pages ---------------------------------------------------------------------------------------


def _object_page(request: Request, object_type: str, ident: str) -> HTMLResponse:
    from inventory.impact import impact_of

    principal, session = signed_in(request, Permission.READ)
    impact = graph = None
    with server_state(request).db.read_session() as db_session:
        doc = queries.show_object(db_session, object_type, ident)
        live = doc.get("removed_at") is None
        if live and object_type in ("host", "workload"):
            impact = impact_of(db_session, object_type, doc["id"]).as_dict()
        if live and object_type == "host":
            from inventory.machine_graph import machine_graph
            from inventory.server.web_graph import layout

            graph = layout(machine_graph(db_session, doc["id"]))
    # Newest first, as the changes page: new rows arrive on top.
    live_url = _live_url(doc["changes"], object_type=object_type, object_id=doc["id"])
    return page(
        request,
        f"{object_type}.html",
        principal,
        session,
        obj=doc,
        object_type=object_type,
        live_url=live_url,
        impact=impact,
        graph=graph,
    )


def _live_url(rows: list[dict[str, Any]], **filters: Any) -> str:
    """The change stream a page's table follows: its filters, resumed after the newest row it shows."""
    query = {key: value for key, value in filters.items() if value}
    newest = max((row["id"] for row in rows), default=None)
    if newest is not None:
        query["last_event_id"] = newest
    return "/changes/stream" + (f"?{urlencode(query)}" if query else "")


@router.get("/hosts/{ident:path}")
def host_page(request: Request, ident: str) -> HTMLResponse:
    return _object_page(request, "host", ident)


@router.get("/workloads/{ident:path}")
def workload_page(request: Request, ident: str) -> HTMLResponse:
    return _object_page(request, "workload", ident)


@router.get("/services/{ident:path}")
def service_page(request: Request, ident: str) -> HTMLResponse:
    return _object_page(request, "service", ident)


@router.get("/changes")
def changes_page(
    request: Request, since: str = "1d", source: str = "", type: str = "", action: str = "", cursor: str | None = None
) -> HTMLResponse:
    """The changes timeline, newest first, in keyset pages; only the first page grows live (the others
    hold older rows)."""
    from inventory.listing import run_list, validate
    from inventory.query_params import ACTIONS, OBJECT_TYPES

    principal, session = signed_in(request, Permission.READ)
    state = server_state(request)
    values = {"since": since, "source": source or None, "type": type or None, "action": action or None}
    checked = validate("changes", {**values, "sort": "-at", "limit": CHANGES_PAGE, "cursor": cursor})
    with state.db.read_session() as db_session:
        listed = run_list(db_session, "changes", checked, total=False)
        sources = queries.source_names(db_session)
    rows, next_cursor = listed["items"], listed["next_cursor"]
    asked = {"since": since, "source": source, "type": type, "action": action}
    older = (
        "/changes?" + urlencode({**{k: v for k, v in asked.items() if v}, "cursor": next_cursor})
        if next_cursor
        else None
    )
    filters = {"source": source or None, "object_type": type or None, "action": action or None}
    return page(
        request,
        "changes.html",
        principal,
        session,
        rows=rows,
        since=since,
        source=source,
        type=type,
        action=action,
        sources=sources,
        object_types=OBJECT_TYPES,
        actions=ACTIONS,
        older=older,
        live_url=_live_url(rows, **filters) if cursor is None else None,
    )


@router.get("/changes/stream")
async def changes_stream(
    request: Request,
    source: str = "",
    object_type: str = "",
    action: str = "",
    object_id: int | None = None,
    last_event_id: str | None = None,
) -> Response:
    """The rows a page's table adds as changes are stored, rendered as the page renders them."""
    from sse_starlette import EventSourceResponse

    from inventory.query_params import ACTIONS, OBJECT_TYPES
    from inventory.server.streaming import PING_SECONDS, change_events, open_feed, resume_point

    signed_in(request, Permission.READ)
    if object_type not in ("", *OBJECT_TYPES) or action not in ("", *ACTIONS):
        raise UsageError("object_type or action is not one the changes page offers")
    after = resume_point(request, last_event_id)
    filters: dict[str, Any] = {
        "source": source or None,
        "object_type": object_type or None,
        "action": action or None,
        "object_id": object_id,
    }
    feed = await open_feed(server_state(request).db, filters, after)
    row_macro = templates.env.get_template("macros.html").module.change_row  # type: ignore[attr-defined]
    with_object = object_id is None
    return EventSourceResponse(
        change_events(request, feed, lambda row: str(row_macro(row, with_object))), ping=PING_SECONDS
    )


@router.get("/sources")
def sources_page(request: Request) -> HTMLResponse:
    principal, session = signed_in(request, Permission.READ)
    with server_state(request).db.read_session() as db_session:
        sources = queries.list_sources(db_session)
    return page(request, "sources.html", principal, session, sources=sources)


@router.get("/approvals")
def approvals_page(request: Request, status: str = "pending", notice: str = "") -> HTMLResponse:
    from inventory.policy.approvals import explain_approval, list_approvals

    principal, session = signed_in(request, Permission.READ)
    if status not in ("pending", "approved", "rejected", "all"):
        raise UsageError(f"status must be pending, approved, rejected or all, not {status!r}")
    runner = server_state(request).tool_runner()
    rows = list_approvals(runner, status)
    # A pending call is explained before anyone decides it: why, what it takes along, the target now.
    for row in rows:
        if row["status"] == "pending":
            row["explained"] = explain_approval(runner, row)
    return page(request, "approvals.html", principal, session, rows=rows, status=status, notice=notice)


@router.post("/approvals/{approval_id}")
def approvals_decide(
    request: Request,
    approval_id: int,
    decision: str = Form(...),
    csrf: str = Form(""),
    reason: str = Form(""),
    confirm: str = Form(""),
) -> Response:
    from inventory.policy.approvals import list_approvals, settle
    from inventory.policy.classes import ToolClass

    principal, session = signed_in(request, Permission.APPROVE)
    check_csrf(session, csrf)
    runner = server_state(request).tool_runner()
    asked = next((row for row in list_approvals(runner, "pending") if row["id"] == approval_id), None)
    destructive = asked is not None and asked["class"] == ToolClass.DESTRUCTIVE
    if decision == "approve" and destructive and confirm != "yes":
        # The form asks for the tick; a request without it (a script, a crafted form) is refused here too.
        notice = f"approval {approval_id}: not approved: a DESTRUCTIVE call needs the confirmation ticked"
        return RedirectResponse(f"/approvals?{urlencode({'notice': notice})}", status_code=303)
    try:
        result = settle(server_state(request).tool_runner(), approval_id, principal, decision, reason or None)
        notice = f"approval {approval_id}: {result['outcome']}"
    except InventoryError as exc:
        notice = f"approval {approval_id}: {redact_text(str(exc))}"
    return RedirectResponse(f"/approvals?{urlencode({'notice': notice})}", status_code=303)


@router.get("/audit")
def audit_page(request: Request, actor: str = "", tool: str = "") -> HTMLResponse:
    from inventory.audit.log import AuditFilter, list_entries
    from inventory.audit.verify import verify_report

    principal, session = signed_in(request, Permission.AUDIT)
    state = server_state(request)
    flt = AuditFilter(actor=actor or None, tool=tool or None, limit=200, newest_first=True)
    with state.db.read_session() as db_session:
        rows = list(reversed(list_entries(db_session, flt)))
    return page(
        request, "audit.html", principal, session, rows=rows, verify=verify_report(state.db), actor=actor, tool=tool
    )


# --- wiring --------------------------------------------------------------------------------------


def install_web(app: FastAPI) -> None:
    state = app.state.inventory
    app.state.web_sessions = SessionStore(state.db)
    app.state.web_token_references = token_references(state.authenticator)
    app.include_router(overview)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(SignInRequired)
    async def sign_in(_request: Request, _exc: SignInRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith(("/api/", "/mcp", "/health", "/metrics"))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if wants_html(request):
            return page(request, "error.html", None, None, status_code=403, message=str(exc))
        return forbidden_response(exc)

    @app.exception_handler(InventoryError)
    async def inventory_error(request: Request, exc: InventoryError) -> Response:
        if exc.__cause__ is not None and isinstance(exc.__cause__, SQLAlchemyError):
            return await database_error(request, exc.__cause__)
        if wants_html(request):
            return page(request, "error.html", None, None, status_code=status_of(exc), message=redact_text(str(exc)))
        return inventory_error_response(exc)

    from inventory.server.errors import DATABASE_AWAY, is_database_away, unexpected_error_response

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> Response:
        # The database is away or refused (a restart, a full disk): a page that says so, never a bare 500.
        if wants_html(request):
            away = is_database_away(exc)
            message = DATABASE_AWAY if away else "the server failed to answer; see its log"
            return page(
                request, "error.html", None, None, status_code=503 if away else 500, message=message, retry=away
            )
        return unexpected_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request):
            message = {404: "there is no such page", 405: "that page cannot be used that way"}.get(
                exc.status_code, str(exc.detail)
            )
            return page(request, "error.html", None, None, status_code=exc.status_code, message=message)
        return http_error_response(exc)
