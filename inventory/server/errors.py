"""Errors as JSON with the same words as the CLI: ``{"error": {"type": ..., "message": ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

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


def inventory_error_response(exc: InventoryError) -> JSONResponse:
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
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse(error_body("UsageError", problems), status_code=400)
