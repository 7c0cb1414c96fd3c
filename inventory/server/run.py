"""Running the application under uvicorn: in the foreground (`inventory serve`) or on a background thread.

uvicorn's own log config is not used: its records go through the root handler that
`inventory` installs, whose RedactingFilter masks secret-looking query parameters
(``token=``...). Headers, Authorization among them, are never part of an access line.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from inventory.errors import ListenFailed
from inventory.server.limits import H11_MAX_HEAD_BYTES
from inventory.server.local import peer_credentials, with_peer


class PeerCredentialsProtocol(H11Protocol):
    """uvicorn's h11 protocol; on a Unix socket connection, every request carries the peer's credentials
    (server/local.py), read once from the kernel when the connection is made."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:
            try:
                peer = peer_credentials(sock)
            except OSError:  # the peer is gone already: nothing to answer
                transport.close()
                return
            self.app = with_peer(self.app, peer)


def uvicorn_config(app: Any, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "log_config": None,
        "access_log": True,
        "server_header": False,
        "proxy_headers": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
        # h11 on purpose (not httptools where installed): its bound on a request's head is ours to set. The
        # subclass tells the Unix socket's callers apart (a TCP connection goes through it unchanged).
        "http": PeerCredentialsProtocol,
        "h11_max_incomplete_event_size": H11_MAX_HEAD_BYTES,
    }
    options.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **options)


def _stop_quietly(_signum: int, _frame: Any) -> None:
    raise SystemExit(0)


def bind_listener(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a busy port (or one this user may not take) is an error that says so,
    before anything claims to be serving. uvicorn listens on it."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ListenFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = "the port is busy (another process listens on it): stop it or pick another --port"
        if exc.errno != errno.EADDRINUSE:
            reason = exc.strerror or str(exc)
        raise ListenFailed(f"cannot listen on {host}:{port}: {reason}") from exc
    return sock


def serve_forever(app: Any, host: str, port: int, sock: socket.socket | None = None, *more: socket.socket) -> None:
    """Serve until SIGINT or SIGTERM; both end in a graceful shutdown and exit code 0.

    uvicorn shuts down gracefully on either signal, then raises it again for the handler
    that was there before: that handler is ours, so neither becomes a traceback or a kill.
    """
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    previous = {sig: signal.signal(sig, _stop_quietly) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sockets = [s for s in (sock, *more) if s is not None]
        uvicorn.Server(uvicorn_config(app, host, port)).run(sockets=sockets or None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class BackgroundServer:
    """The app under a real uvicorn on a free loopback port, on a thread (tests and benchmarks)."""

    def __init__(
        self, app: Any, host: str = "127.0.0.1", *, unix_socket: socket.socket | None = None, **overrides: Any
    ) -> None:
        # ``unix_socket``: also serve on it (bind_unix_listener), callers known by their uid.
        self._unix_socket = unix_socket
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(app, host, self.port, **overrides))
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self._socket, *([unix_socket] if unix_socket is not None else [])]},
            name="uvicorn",
            daemon=True,
        )

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()
        if self._unix_socket is not None:
            self._unix_socket.close()
