"""Errors as JSON with the same words as the CLI: ``{"error": {"type": ..., "message": ...}}``.

Every error the API answers has this shape, whatever raised it: our errors, an unknown route (404)
or method (405), a request that does not validate (400), a database that is away (503) and
anything unexpected (500, its text kept out of the answer).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from inventory.errors import Ambiguous, ConfigError, InventoryError, NotFound, SourceError, StorageError, UsageError
from inventory.redact import redact_text
from inventory.server.auth import Forbidden, NotAuthenticated, TooManyFailures

# Checked in order: the first class an error is an instance of gives its status.
_STATUS: list[tuple[type[Exception], int]] = [
    (NotFound, 404),
    (Ambiguous, 409),
    (UsageError, 400),
    (ConfigError, 500),
    (StorageError, 503),
    (SourceError, 502),
]


def status_of(exc: InventoryError) -> int:
    from inventory.policy.execute import PolicyDenied, ToolFailed

    if isinstance(exc, PolicyDenied):
        return 403
    if isinstance(exc, ToolFailed):
        return 502
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 500)


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": redact_text(message)}}


# The database's own errors: connection refused or lost, a server shutting down, an answer that timed out.
DATABASE_AWAY = "the database is not reachable now; try again shortly"


def is_database_away(exc: BaseException) -> bool:
    """A SQLAlchemy error that says the database cannot answer (not a bug in a statement)."""
    from sqlalchemy.exc import DBAPIError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, (OperationalError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def unexpected_error_response(exc: BaseException) -> JSONResponse:
    if is_database_away(exc):
        return JSONResponse(error_body("DatabaseUnavailable", DATABASE_AWAY), status_code=503)
    return JSONResponse(error_body("InternalError", "the server failed to answer; see its log"), status_code=500)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (no route, method not allowed) in our shape."""
    kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
    message = "no such route" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(error_body(kind, message), status_code=exc.status_code, headers=exc.headers)


def validation_message(exc: RequestValidationError) -> str:
    """What is wrong with a request, by parameter: an unknown one is named as such."""
    unknown = [str(e["loc"][-1]) for e in exc.errors() if e.get("type") == "extra_forbidden"]
    problems = [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors() if e.get("type") != "extra_forbidden"
    ]
    if unknown:
        problems.insert(0, f"unknown query parameter(s): {', '.join(unknown)}")
    return "; ".join(problems)


def inventory_error_response(exc: InventoryError) -> JSONResponse:
    if exc.__cause__ is not None and is_database_away(exc.__cause__):
        # Our own words for a database that cannot answer (reading its id, say): the one 503 every route gives.
        return unexpected_error_response(exc.__cause__)
    return JSONResponse(error_body(type(exc).__name__, str(exc)), status_code=status_of(exc))


def forbidden_response(exc: Forbidden) -> JSONResponse:
    return JSONResponse(error_body("Forbidden", str(exc)), status_code=403)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InventoryError)
    async def inventory_error(_request: Request, exc: InventoryError) -> JSONResponse:
        return inventory_error_response(exc)

    @app.exception_handler(NotAuthenticated)
    async def not_authenticated(_request: Request, _exc: NotAuthenticated) -> JSONResponse:
        body = error_body("NotAuthenticated", "a valid token is required: Authorization: Bearer <token>")
        return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(TooManyFailures)
    async def too_many_failures(_request: Request, exc: TooManyFailures) -> JSONResponse:
        return JSONResponse(
            error_body("TooManyFailures", str(exc)), status_code=429, headers={"Retry-After": str(exc.retry_after)}
        )

    @app.exception_handler(Forbidden)
    async def forbidden(_request: Request, exc: Forbidden) -> JSONResponse:
        return forbidden_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("UsageError", validation_message(exc)), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(exc)

    from sqlalchemy.exc import SQLAlchemyError

    @app.exception_handler(SQLAlchemyError)
    async def database_error(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # Answered here rather than by the last-resort handler below, which would also re-raise it.
        return unexpected_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error_response(exc)
