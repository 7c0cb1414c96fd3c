"""A loopback SSH server standing in for a remote Docker host reached as ``ssh://user@host``.

What a Docker client runs on the far side of ssh is ``docker system
dial-stdio``: the session's stdin and stdout become a connection to the
engine's API socket. This server (paramiko's server side) accepts one public
key and that one command, and bridges the session to a local engine's unix
socket, so that the SDK's ssh transport is tested over a real SSH connection.

    server = SSHDockerServer(engine_socket, authorized_key).start()
    ... ssh://admin@127.0.0.1:{server.port} ...
    server.stop()
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

DIAL_STDIO = b"docker system dial-stdio"
_CHUNK = 65536


def _copy(source_read: Any, target_write: Any, on_end: Any) -> None:
    try:
        while True:
            data = source_read(_CHUNK)
            if not data:
                break
            target_write(data)
    except (OSError, EOFError):  # either side hung up: the session is over
        pass
    finally:
        try:
            on_end()
        except (OSError, EOFError):
            pass


class SSHDockerServer:
    """Accepts ``authorized_key`` only, runs only ``docker system dial-stdio``; counts SSH connections."""

    def __init__(
        self, engine_socket: str | Path, authorized_key: paramiko.PKey, host_key: paramiko.PKey | None = None
    ) -> None:
        import paramiko

        self.engine_socket = str(engine_socket)
        self.authorized_key = authorized_key
        self.host_key = host_key or paramiko.ECDSAKey.generate()
        self.connections = 0
        self.commands: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._transports: list[paramiko.Transport] = []
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def start(self) -> SSHDockerServer:
        threading.Thread(target=self._accept, name="ssh-docker-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for transport in self._transports:
            transport.close()

    def _accept(self) -> None:
        import paramiko

        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            transport = paramiko.Transport(conn)
            transport.add_server_key(self.host_key)
            self._transports.append(transport)
            try:
                # With an event, negotiation runs in the transport's own thread: a client that
                # hangs up (an unknown host key) ends that transport, not this loop.
                transport.start_server(event=threading.Event(), server=self._interface())
            except (paramiko.SSHException, OSError, EOFError):
                transport.close()

    def _interface(self) -> paramiko.ServerInterface:
        import paramiko

        server = self

        class Interface(paramiko.ServerInterface):
            def get_allowed_auths(self, username: str) -> str:
                return "publickey"

            def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
                return paramiko.common.AUTH_SUCCESSFUL if key == server.authorized_key else paramiko.common.AUTH_FAILED

            def check_channel_request(self, kind: str, chanid: int) -> int:
                return (
                    paramiko.common.OPEN_SUCCEEDED
                    if kind == "session"
                    else paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
                )

            def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
                server.commands.append(command)
                if command != DIAL_STDIO:
                    return False
                threading.Thread(target=server._bridge, args=(channel,), name="ssh-docker-bridge", daemon=True).start()
                return True

        return Interface()

    def _bridge(self, channel: paramiko.Channel) -> None:
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            engine.connect(self.engine_socket)
        except OSError:
            channel.send_exit_status(1)
            channel.close()
            return

        def engine_done() -> None:
            channel.send_exit_status(0)
            channel.close()

        def channel_done() -> None:
            try:
                engine.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        upstream = threading.Thread(target=_copy, args=(channel.recv, engine.sendall, channel_done), daemon=True)
        upstream.start()
        _copy(engine.recv, channel.sendall, engine_done)
        upstream.join(timeout=5)
        engine.close()
