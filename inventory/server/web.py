"""The web UI: server-rendered pages over the same library calls as the API; no JavaScript at all.

Sign-in takes an API token once; the browser then holds only a random session id in a cookie
(HttpOnly, SameSite=Strict, Secure over HTTPS). The session lives in the database
(``inventory/server/sessions.py``: the id's hash and a reference to the token, never the token),
so every replica knows it, and it is re-authorized through the token on every request, so a
revoked token ends its sessions. Every form carries the session's CSRF token; a POST without it
is refused.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from inventory import queries
from inventory.errors import InventoryError, UsageError
from inventory.redact import redact_text
from inventory.server.auth import Forbidden, NotAuthenticated, Permission, Principal, TooManyFailures, authorize, may
from inventory.server.errors import forbidden_response, http_error_response, inventory_error_response, status_of
from inventory.server.sessions import SESSION_IDLE_SECONDS, SessionStore, TokenReferences, WebSession, token_references
from inventory.server.state import client_address, server_state

HERE = Path(__file__).parent
SESSION_COOKIE = "inventory_session"
SEARCH_LIMIT = 50
CHANGES_PAGE = 200

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)


class SignInRequired(InventoryError):
    """The browser has no live session: its handler redirects to the sign-in page."""


def _sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.web_sessions
    return store


def _references(request: Request) -> TokenReferences:
    references: TokenReferences = request.app.state.web_token_references
    return references


def _signed_in(request: Request, permission: Permission) -> tuple[Principal, WebSession]:
    session = _sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired()
    try:
        return authorize(_references(request).by_reference, session.token_ref, permission), session
    except NotAuthenticated:
        _sessions(request).drop(request.cookies.get(SESSION_COOKIE))
        raise SignInRequired() from None


def _check_csrf(session: WebSession, submitted: str) -> None:
    if not hmac.compare_digest(session.csrf.encode(), submitted.encode()):
        raise UsageError("the form is stale or was not sent by this site (CSRF token mismatch); reload the page")


def _page(
    request: Request,
    template: str,
    principal: Principal | None,
    session: WebSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.update(
        principal=principal,
        csrf=session.csrf if session else "",
        may_approve=bool(principal and may(principal, Permission.APPROVE)),
        may_audit=bool(principal and may(principal, Permission.AUDIT)),
    )
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


# --- sign-in -------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "login.html", None, None)


@router.post("/login")
def login(request: Request, token: str = Form(...)) -> Response:
    state = server_state(request)
    try:
        state.authorize(token.strip(), Permission.READ, client_address(request.scope))
        # Only a token that signed in is named: the session keeps this reference, never the token.
        reference = _references(request).reference(token.strip())
        if reference is None:
            raise NotAuthenticated()
    except TooManyFailures as exc:
        page = _page(request, "login.html", None, None, status_code=429, error=str(exc).capitalize() + ".")
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except (NotAuthenticated, Forbidden):
        return _page(request, "login.html", None, None, status_code=401, error="That token is not valid here.")
    session_id, _session = _sessions(request).create(reference)
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
    _principal, session = _signed_in(request, Permission.READ)
    _check_csrf(session, csrf)
    _sessions(request).drop(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- pages ---------------------------------------------------------------------------------------


@router.get("/")
def search(request: Request, q: str = "") -> HTMLResponse:
    principal, session = _signed_in(request, Permission.READ)
    state = server_state(request)
    results: dict[str, list[dict[str, Any]]] = {}
    if q.strip():
        pattern = q.strip() if any(c in q for c in "*?") else f"*{q.strip()}*"
        flt = queries.ObjectFilter(name=pattern, limit=SEARCH_LIMIT)
        with state.db.session() as db_session:
            results = {
                plural: getattr(queries, f"list_{plural}")(db_session, flt)
                for plural in ("hosts", "workloads", "services")
            }
    with state.db.session() as db_session:
        sources = queries.list_sources(db_session)
    return _page(request, "search.html", principal, session, q=q, results=results, sources=sources, limit=SEARCH_LIMIT)


def _object_page(request: Request, object_type: str, ident: str) -> HTMLResponse:
    principal, session = _signed_in(request, Permission.READ)
    with server_state(request).db.session() as db_session:
        doc = queries.show_object(db_session, object_type, ident)
    # The library lists the newest changes first; a page reads old -> new.
    doc["changes"] = list(reversed(doc["changes"]))
    return _page(request, f"{object_type}.html", principal, session, obj=doc, object_type=object_type)


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
    from inventory.listing import run_list, validate

    principal, session = _signed_in(request, Permission.READ)
    state = server_state(request)
    values = {"since": since, "source": source or None, "type": type or None, "action": action or None}
    checked = validate("changes", {**values, "limit": CHANGES_PAGE, "cursor": cursor})
    with state.db.session() as db_session:
        page = run_list(db_session, "changes", checked, total=False)
    rows, next_cursor = page["items"], page["next_cursor"]
    with state.db.session() as db_session:
        sources = [s["name"] for s in queries.list_sources(db_session)]
    return _page(
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
        next_cursor=next_cursor,
    )


@router.get("/sources")
def sources_page(request: Request) -> HTMLResponse:
    principal, session = _signed_in(request, Permission.READ)
    with server_state(request).db.session() as db_session:
        sources = queries.list_sources(db_session)
    return _page(request, "sources.html", principal, session, sources=sources)


@router.get("/approvals")
def approvals_page(request: Request, status: str = "pending", notice: str = "") -> HTMLResponse:
    from inventory.policy.approvals import list_approvals

    principal, session = _signed_in(request, Permission.READ)
    if status not in ("pending", "approved", "rejected", "all"):
        raise UsageError(f"status must be pending, approved, rejected or all, not {status!r}")
    rows = list_approvals(server_state(request).tool_runner(), status)
    return _page(request, "approvals.html", principal, session, rows=rows, status=status, notice=notice)


@router.post("/approvals/{approval_id}")
def approvals_decide(
    request: Request, approval_id: int, decision: str = Form(...), csrf: str = Form(""), reason: str = Form("")
) -> Response:
    from inventory.policy.approvals import settle

    principal, session = _signed_in(request, Permission.APPROVE)
    _check_csrf(session, csrf)
    try:
        result = settle(server_state(request).tool_runner(), approval_id, principal, decision, reason or None)
        notice = f"approval {approval_id}: {result['outcome']}"
    except InventoryError as exc:
        notice = f"approval {approval_id}: {redact_text(str(exc))}"
    from urllib.parse import urlencode

    return RedirectResponse(f"/approvals?{urlencode({'notice': notice})}", status_code=303)


@router.get("/audit")
def audit_page(request: Request, actor: str = "", tool: str = "") -> HTMLResponse:
    from inventory.audit.log import AuditFilter, list_entries, verify_document

    principal, session = _signed_in(request, Permission.AUDIT)
    state = server_state(request)
    flt = AuditFilter(actor=actor or None, tool=tool or None, limit=200, newest_first=True)
    with state.db.session() as db_session:
        rows = list(reversed(list_entries(db_session, flt)))
    return _page(
        request, "audit.html", principal, session, rows=rows, verify=verify_document(state.db), actor=actor, tool=tool
    )


# --- wiring --------------------------------------------------------------------------------------


def install_web(app: FastAPI) -> None:
    state = app.state.inventory
    app.state.web_sessions = SessionStore(state.db)
    app.state.web_token_references = token_references(state.authenticator)
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
            return _page(request, "error.html", None, None, status_code=403, message=str(exc))
        return forbidden_response(exc)

    @app.exception_handler(InventoryError)
    async def inventory_error(request: Request, exc: InventoryError) -> Response:
        if wants_html(request):
            return _page(request, "error.html", None, None, status_code=status_of(exc), message=redact_text(str(exc)))
        return inventory_error_response(exc)

    from sqlalchemy.exc import SQLAlchemyError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from inventory.server.errors import DATABASE_AWAY, is_database_away, unexpected_error_response

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> Response:
        if wants_html(request):
            away = is_database_away(exc)
            message = DATABASE_AWAY if away else "the server failed to answer; see its log"
            return _page(request, "error.html", None, None, status_code=503 if away else 500, message=message)
        return unexpected_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request):
            message = "There is no such page." if exc.status_code == 404 else str(exc.detail)
            return _page(request, "error.html", None, None, status_code=exc.status_code, message=message)
        return http_error_response(exc)
