"""The ASGI application: REST API v1, /health, /mcp, the web UI and /metrics on one port."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from inventory import __version__
from inventory.principals import PrincipalSettings
from inventory.server.auth import Authenticator, FailedAttempts, TokenAuthenticator
from inventory.server.limits import LimitsMiddleware, RequestLimits
from inventory.server.state import ServerState
from inventory.storage.database import Database

if TYPE_CHECKING:
    from inventory.policy.execute import ToolRunner
    from inventory.server.refresh import Refresher


def create_app(
    db: Database,
    *,
    authenticator: Authenticator | None = None,
    runner: ToolRunner | None = None,
    refresher: Refresher | None = None,
    mcp: bool = True,
    web: bool = True,
    metrics: bool = False,
    logical_services: Sequence[Any] = (),
    limits: RequestLimits | None = None,
    failed_attempts: FailedAttempts | None = None,
) -> FastAPI:
    """One application over one database.

    ``authenticator`` turns a bearer token into a principal (or None); by default the tokens of
    ``inventory tokens``, with the applied policy's ``principals.users`` adding groups. ``limits`` bound each
    request's URL, headers and body (server/limits.py); ``failed_attempts`` slows token guessing per address.
    """
    # Imported as modules of the package, not from it: the package's __init__ imports this module.
    import inventory.server.api_inventory as api_inventory
    import inventory.server.api_stream as api_stream
    import inventory.server.api_tokens as api_tokens
    import inventory.server.api_tools as api_tools
    import inventory.server.errors as errors
    import inventory.server.health as health

    if authenticator is None:
        authenticator = TokenAuthenticator(db, runner.current_principals if runner is not None else None)
    state = ServerState(
        db=db,
        authenticator=authenticator,
        runner=runner,
        refresher=refresher,
        logical_services=logical_services,
        failed_attempts=failed_attempts or FailedAttempts(),
        principals=runner.principals if runner is not None else PrincipalSettings(),
    )
    from inventory.server.openapi import OPENAPI_URL, install_openapi

    app = FastAPI(title="inventory", version=__version__, docs_url=None, openapi_url=OPENAPI_URL, redoc_url=None)
    app.state.inventory = state
    app.add_middleware(LimitsMiddleware, limits=limits or RequestLimits())
    errors.install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(api_stream.router)  # before /changes/{...}-shaped routes could claim its path
    app.include_router(api_inventory.router)
    app.include_router(api_tools.router)
    app.include_router(api_tokens.router)
    install_openapi(app)
    if mcp:
        from inventory.server.mcp_server import mount_mcp

        mount_mcp(app, state)
    if web:
        from inventory.server.web import install_web

        install_web(app)
    if metrics:
        from inventory.server.metrics import install_metrics

        install_metrics(app)
    return app
