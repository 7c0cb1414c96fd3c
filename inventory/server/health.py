"""`GET /health`: without a token only ``{"status": "ok" | "degraded"}`` (200 / 503), for load balancers and
health checks; with the token of a principal allowed to read, also the process, the database (reachable, schema
revision) and the last sync per source. Source names, versions and error text are not for anonymous callers."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Response

from inventory import __version__
from inventory.errors import InventoryError
from inventory.server.auth import Permission, bearer_token
from inventory.server.models import HealthOut
from inventory.server.pagination import json_response
from inventory.server.state import ServerState, client_address, current_state, refuse_unknown_parameters

router = APIRouter()
# What /health says of each source: its latest run (status, error, warnings) and last success.
SOURCE_KEYS = ("name", "type", "last_status", "last_run_at", "last_success_at", "last_error", "warnings")


def health_report(state: ServerState) -> dict[str, Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from inventory.queries import list_sources
    from inventory.storage.database import SCHEMA_REVISION

    database: dict[str, Any] = {"url": state.db.display_url, "expected_revision": SCHEMA_REVISION}
    sources: list[dict[str, Any]] = []
    try:
        database["revision"] = state.db.current_revision()
        database["reachable"] = True
        with state.db.read_session() as session:
            sources = [{key: row[key] for key in SOURCE_KEYS} for row in list_sources(session)]
    except InventoryError as exc:
        database.update(reachable=False, error=str(exc))
    except SQLAlchemyError as exc:
        database.update(reachable=False, error=f"database error: {type(exc).__name__}")
    status = "ok" if database.get("reachable") and database.get("revision") == SCHEMA_REVISION else "degraded"
    process = {"pid": os.getpid(), "version": __version__, "uptime_seconds": round(time.time() - state.started_at, 3)}
    return {"status": status, "process": process, "database": database, "sources": sources}


@router.get(
    "/health", response_model=HealthOut, summary="Liveness and readiness; the details need a token allowed to read"
)
def health(
    request: Request, state: ServerState = Depends(current_state), authorization: str | None = Header(default=None)
) -> Response:
    refuse_unknown_parameters(request)
    report = health_report(state)
    status_code = 200 if report["status"] == "ok" else 503
    token = bearer_token(authorization)
    if token is None:
        return json_response({"status": report["status"]}, status_code=status_code)
    # A token that is sent must be good (401 / 403 / 429 otherwise), as everywhere else.
    state.authorize(token, Permission.READ, client_address(request.scope))
    return json_response(report, status_code=status_code)
