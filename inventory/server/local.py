"""The server's Unix socket: local users connect as themselves, told apart by the kernel, with no token.

``inventory serve --socket PATH`` (or the config's ``server.socket``) listens on a Unix socket beside
(or instead of) its TCP port. The same application answers both: on the socket, each connection's
peer credentials (``SO_PEERCRED``: the uid of the process that connected, which it cannot choose)
name the caller, and the ``require`` dependency (server/state.py) makes that OS user the principal,
with the groups ``principals.users`` gives them, exactly as the CLI does in direct mode. A bearer
token sent on the socket is not looked at. Over TCP nothing changes: a token, and its groups' doors.

The uid travels in the ASGI scope under ``PEER_SCOPE_KEY``, put there by ``run.PeerCredentialsProtocol``
(uvicorn's h11 protocol, which wraps the application per connection); a client cannot set a scope
key, so a TCP request can never claim a uid. Linux only (``SO_PEERCRED``).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inventory.errors import ConfigError, ListenFailed

# Where a packaged service puts it (systemd's RuntimeDirectory=inventory); named only in docs and help.
DEFAULT_SOCKET = "/run/inventory/inventory.sock"
PEER_SCOPE_KEY = "inventory.peer"


@dataclass(frozen=True)
class PeerCredentials:
    """Who is at the other end of a Unix socket connection, as the kernel recorded it when they connected."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials:
    """The peer of a connected Unix socket (``SO_PEERCRED``)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # not Linux: the socket would have no way to tell its callers apart
        raise ConfigError("a server socket needs SO_PEERCRED (Linux)", key="server.socket")
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return PeerCredentials(pid, uid, gid)


def peer_of(scope: MutableMapping[str, Any]) -> PeerCredentials | None:
    """The peer credentials of a request that came in on the socket (None: over TCP)."""
    peer = scope.get(PEER_SCOPE_KEY)
    return peer if isinstance(peer, PeerCredentials) else None


def with_peer(app: Any, peer: PeerCredentials) -> Any:
    """``app`` for one connection on the Unix socket: each of its requests carries ``peer`` in its scope."""

    async def app_with_peer(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        scope[PEER_SCOPE_KEY] = peer
        await app(scope, receive, send)

    return app_with_peer


def bind_unix_listener(path: str | os.PathLike[str], mode: int) -> socket.socket:
    """The server's Unix socket, bound now with ``mode``: a path that is taken, or a directory we may not write,
    is an error that says so before anything claims to be serving. A stale socket (no one listening) is replaced;
    a live one, or anything that is not a socket, is never touched."""
    path = Path(path)
    if not hasattr(socket, "SO_PEERCRED"):
        raise ListenFailed(f"cannot listen on {path}: the server socket needs SO_PEERCRED (Linux)")
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise ListenFailed(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    if existing is not None:
        if not stat.S_ISSOCK(existing.st_mode):
            raise ListenFailed(f"cannot listen on {path}: it exists and is not a socket")
        if _answers(path):
            raise ListenFailed(f"cannot listen on {path}: another server listens on it (stop it or pick another)")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bound under a umask that leaves it closed, then opened to ``mode``: no moment where it is wider.
        previous = os.umask(0o177)
        try:
            sock.bind(str(path))
        finally:
            os.umask(previous)
        os.chmod(path, mode)
    except OSError as exc:
        sock.close()
        raise ListenFailed(f"cannot listen on {path}: {exc.strerror or exc}") from exc
    return sock


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


__all__ = [
    "DEFAULT_SOCKET",
    "PEER_SCOPE_KEY",
    "PeerCredentials",
    "bind_unix_listener",
    "peer_credentials",
    "peer_of",
    "with_peer",
]
