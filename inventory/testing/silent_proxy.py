"""A loopback TCP proxy in front of a real server that can fall silent, as a hung server or a stalled proxy does.

While it forwards, it is invisible. Once silent, it keeps every connection open and accepts new ones,
but nothing passes in either direction: the kernel still acknowledges what the client sends, so
neither TCP keepalives nor ``tcp_user_timeout`` end the client's wait; only a bound of the client's
own does.
"""

from __future__ import annotations

import selectors
import socket
import threading
from types import TracebackType
from typing import Self


class SilentProxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        # Set once something is held while silent (a client's question, or a server's answer): from then on a
        # client waits on an answer that never comes.
        self.held = threading.Event()
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        self._spawn(self._accept)
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def go_silent(self) -> None:
        self.silent.set()

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)
        with self._lock:
            for sock in self._sockets:
                sock.close()
        self._listener.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._keep(client)
            if self.silent.is_set():
                self.held.set()
                continue  # accepted, never answered: the client's startup waits for nothing
            upstream = socket.create_connection(self.target)
            self._keep(upstream)
            self._spawn(self._pump, client, upstream)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector:
            for end in peers:
                selector.register(end, selectors.EVENT_READ, end)
            while not self._closing.is_set():
                if self.silent.is_set():  # read nothing more, forward nothing more; keep both ends open
                    if selector.select(timeout=0.1):
                        self.held.set()
                        self._closing.wait(0.1)  # never read, what is ready stays ready
                    continue
                for key, _ in selector.select(timeout=0.1):
                    sock: socket.socket = key.data
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if self.silent.is_set():
                        self.held.set()
                        continue  # fell silent while this was on its way: dropped
                    try:
                        peers[sock].sendall(data)
                    except OSError:
                        return
