"""What every web page shares: templates, the signed-in check, the page response with its headers.

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

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from inventory.errors import InventoryError, UsageError
from inventory.server.auth import NotAuthenticated, Permission, Principal, authorize, may
from inventory.server.sessions import SessionStore, TokenReferences, WebSession

HERE = Path(__file__).parent
SESSION_COOKIE = "inventory_session"
SEARCH_LIMIT = 50

templates = Jinja2Templates(directory=str(HERE / "templates"))


class SignInRequired(InventoryError):
    """The browser has no live session: its handler redirects to the sign-in page."""


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.web_sessions
    return store


def references(request: Request) -> TokenReferences:
    references: TokenReferences = request.app.state.web_token_references
    return references


def signed_in(request: Request, permission: Permission) -> tuple[Principal, WebSession]:
    session = sessions(request).get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired()
    try:
        return authorize(references(request).by_reference, session.token_ref, permission), session
    except NotAuthenticated:
        sessions(request).drop(request.cookies.get(SESSION_COOKIE))
        raise SignInRequired() from None


def check_csrf(session: WebSession, submitted: str) -> None:
    if not hmac.compare_digest(session.csrf.encode(), submitted.encode()):
        raise UsageError("the form is stale or was not sent by this site (CSRF token mismatch); reload the page")


def page(
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
        status_code=status_code,
    )
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response
