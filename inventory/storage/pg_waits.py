"""Every wait for the PostgreSQL server bounded, and cut short on demand.

The server's own timeouts (``statement_timeout``) and TCP keepalives end a slow query and a
dropped network. They do not end a wait on a server that keeps its connections up and never
answers (a hung server, a stalled proxy or pooler in front of it): the kernel acknowledges
every packet, so libpq would wait for ever, holding the source's lock and the process with it.

Here every wait on a connection (a statement, a commit, a COPY block, the pool's ping) gives
up after ``answer_timeout`` seconds and closes that connection, and ``Waits.cut`` ends the waits
in progress from another thread (the second SIGTERM: stop now). Shutting the socket down is
what wakes a thread blocked on it; the connection is closed and the pool drops it.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors

from inventory.timeutil import format_seconds

# psycopg's own interval between two checks for a signal while it waits (Ctrl-C stays prompt).
_SIGNAL_CHECK_INTERVAL = 0.1


class NoAnswer(psycopg.OperationalError):
    """The server did not answer in time, or the wait was cut short; the connection is closed."""


class Waits:
    """The connections of one engine that are waiting for the server, and the bound on each wait."""

    def __init__(self, answer_timeout: float | None) -> None:
        self.answer_timeout = answer_timeout
        self._lock = threading.Lock()
        self._waiting: dict[int, BoundedConnection] = {}
        self._cut_reason: str | None = None

    @property
    def cut_reason(self) -> str | None:
        return self._cut_reason

    def cut(self, reason: str) -> int:
        """End every wait in progress with ``reason`` (and refuse later ones); returns how many were cut."""
        with self._lock:
            self._cut_reason = reason
            waiting = list(self._waiting.values())
            for connection in waiting:
                connection.cut_reason = reason
                # Under the lock: a connection still registered has not left its wait, so its socket is its own.
                _shut_down(connection)
        return len(waiting)

    @contextmanager
    def waiting(self, connection: BoundedConnection) -> Iterator[None]:
        with self._lock:
            if self._cut_reason is not None:
                connection.pgconn.finish()
                raise NoAnswer(self._cut_reason)
            self._waiting[id(connection)] = connection
        try:
            yield
        finally:
            with self._lock:
                self._waiting.pop(id(connection), None)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits for the server end after ``waits.answer_timeout``."""

    waits: Waits = Waits(None)
    cut_reason: str | None = None

    def wait(self, gen: Any, interval: float = _SIGNAL_CHECK_INTERVAL, timeout: float | None = None) -> Any:
        limit = self.waits.answer_timeout if timeout is None else timeout
        with self.waits.waiting(self):
            try:
                return super().wait(gen, interval=interval, timeout=limit)
            except errors._WaitTimeout as exc:
                # Half way through the protocol: the connection cannot be used again.
                self.pgconn.finish()
                raise NoAnswer(
                    f"the database server did not answer within {format_seconds(limit or 0)} "
                    "(answer_timeout); the connection was closed"
                ) from exc
            except psycopg.Error as exc:
                if self.cut_reason is None:
                    raise
                self.pgconn.finish()
                raise NoAnswer(self.cut_reason) from exc


def _shut_down(connection: BoundedConnection) -> None:
    try:
        fd = connection.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
    except (psycopg.Error, OSError):
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
