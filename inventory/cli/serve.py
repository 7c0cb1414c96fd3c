"""`inventory serve` (REST API, MCP over HTTP, web UI) and `inventory mcp` (MCP on stdio, as the OS user)."""

from __future__ import annotations

from typing import Any

import click

from inventory.cli.context import AppContext
from inventory.cli.sync import STOP_GRACE_SECONDS
from inventory.errors import UsageError


def _server_state_parts(app: AppContext) -> tuple[Any, Any, Any]:
    """The database, the tool runner and the refresher `inventory serve` and `inventory mcp` share with the CLI."""
    from inventory.cli.policy import build_runner
    from inventory.server.refresh import Refresher

    db = app.database()
    # Requests, refreshes and the loop run on many threads: the SDKs are imported here, once, before any.
    app.registry.load_sdks(source.type for source in app.config.sources)
    runner = build_runner(app)
    # A source a refresh finds failing is told to the notify targets, as `inventory sync` tells them.
    observers = [runner.notifier.source_outcome] if runner.notifier is not None else []
    return db, runner, Refresher(db, app.config, app.registry, observers=observers)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--metrics/--no-metrics", default=False, show_default=True, help="Also serve Prometheus metrics at /metrics."
)
@click.option("--sync", "run_sync", is_flag=True, help="Also run the sync loop (as `inventory sync`) in this process.")
@click.option(
    "--http/--no-http",
    "listen_http",
    default=True,
    show_default=True,
    help="Listen on --host:--port; --no-http: only on the Unix socket (--socket or the config's server.socket).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Larger request bodies are refused (413) before they are read.",
)
@click.pass_obj
def serve_command(
    app: AppContext, host: str, port: int, metrics: bool, run_sync: bool, listen_http: bool, max_body_bytes: int
) -> None:
    """The REST API (/api/v1, OpenAPI at /api/docs), MCP over Streamable HTTP (/mcp), the web UI (/) and /health.

    Callers authenticate with tokens from `inventory tokens create NAME --group G`; their groups decide what
    they may read, call and approve, and the database's applied policy (`inventory policy apply`) decides every call.
    With --socket PATH (or the config's server.socket; conventionally /run/inventory/inventory.sock) the same
    server also listens on a Unix socket, where each caller is the OS user the kernel names, with no token:
    the CLI's tool, approvals, tokens and audit commands of other users go through it."""
    from inventory.audit.head import check_audit_key
    from inventory.server import create_app
    from inventory.server.auth import TokenAuthenticator
    from inventory.server.limits import RequestLimits
    from inventory.server.local import bind_unix_listener
    from inventory.server.run import bind_listener, serve_forever

    socket_path = app.server_socket()
    if not listen_http and socket_path is None:
        raise UsageError("--no-http needs a socket to listen on: --socket PATH or the config's server.socket")
    # A busy port or socket fails here, before any setup or "serving on".
    listeners = [bind_listener(host, port)] if listen_http else []
    if socket_path is not None:
        listeners.append(bind_unix_listener(socket_path, app.config.server_socket_mode))
        app.cleanups.append(lambda: socket_path.unlink(missing_ok=True))
    for listener in listeners:
        app.cleanups.append(listener.close)
    db, runner, refresher = _server_state_parts(app)
    # One of several replicas maybe: with another audit key it would write entries the others cannot verify.
    check_audit_key(db)
    authenticator = TokenAuthenticator(db, runner.current_principals)
    application = create_app(
        db,
        authenticator=authenticator,
        runner=runner,
        refresher=refresher,
        metrics=metrics,
        logical_services=app.config.services,
        limits=RequestLimits(max_body_bytes=max_body_bytes),
    )
    loop = _start_sync_loop(app, db, getattr(application.state, "metrics", None), runner.notifier) if run_sync else None
    where = [f"http://{host}:{port}"] if listen_http else []
    if socket_path is not None:
        where.append(f"unix:{socket_path} (callers by OS user)")
    click.echo(f"inventory serving on {' and '.join(where)} (API /api/v1, MCP /mcp, web UI /)", err=True)
    try:
        serve_forever(application, host, port, *listeners)
    finally:
        refresher.stop()
        if loop is not None:
            sync_loop, thread = loop
            sync_loop.request_stop()  # the source in progress finishes (its transaction commits or rolls back whole)
            thread.join(timeout=STOP_GRACE_SECONDS)
            if thread.is_alive():  # as `inventory sync` does when its grace runs out: stop now
                sync_loop.abort(f"stopped by the server's shutdown: not finished {STOP_GRACE_SECONDS:g}s after it")
                thread.join(timeout=15)


def _start_sync_loop(app: AppContext, db: Any, metrics: Any, notifier: Any) -> tuple[Any, Any]:
    """The loop of `inventory sync` on a thread of this process: one container serves and syncs."""
    import logging
    import threading

    from inventory.loop import SyncLoop

    # One line per sync, as `inventory sync` logs them: with several replicas, the log says which one synced what.
    loop_log = logging.getLogger("inventory.loop")
    if loop_log.getEffectiveLevel() > logging.INFO:
        loop_log.setLevel(logging.INFO)

    sync_loop = SyncLoop(db, app.config, app.registry, metrics=metrics.sync if metrics else None, notifier=notifier)
    thread = threading.Thread(target=sync_loop.run, name="sync-loop", daemon=True)
    thread.start()
    return sync_loop, thread


@click.command("mcp")
@click.pass_obj
def mcp_command(app: AppContext) -> None:
    """MCP on stdin/stdout for a local agent; every call acts as the OS user, under the policy and the audit log."""
    from inventory.server.mcp_server import run_stdio
    from inventory.server.state import ServerState

    principal = app.principal()  # the OS user, with the groups the applied policy gives them; never the agent's word
    db, runner, refresher = _server_state_parts(app)
    state = ServerState(
        db=db,
        authenticator=lambda _token: None,
        runner=runner,
        refresher=refresher,
        logical_services=app.config.services,
    )
    run_stdio(state, principal)


COMMANDS = [serve_command, mcp_command]
