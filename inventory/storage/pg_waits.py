"""Every wait for the PostgreSQL server bounded, and cut short on demand.

The server's own timeouts (``statement_timeout``) and TCP keepalives end a slow query and a
dropped network. They do not end a wait on a server that keeps its connections up and never
answers (a hung server, a stalled proxy or pooler in front of it): the kernel acknowledges
every packet, so libpq would wait for ever, holding the source's lock and the process with it.

Here every wait on a connection (a statement, a commit, a COPY block, a pipelined executemany,
the pool's ping) is watched: when the server has sent nothing and taken nothing for
``answer_timeout`` seconds, the connection is closed. A long batch that keeps answering is never
cut, however long it takes. ``Waits.cut`` ends every wait in progress from another thread (the
second SIGTERM: stop now). Shutting the socket down is what wakes the thread blocked on it; the
connection is then closed and the pool drops it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import weakref
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from inventory.timeutil import format_seconds

# psycopg's own interval between two checks for a signal while it waits (Ctrl-C stays prompt).
_SIGNAL_CHECK_INTERVAL = 0.1


class NoAnswer(psycopg.OperationalError):
    """The server did not answer in time, or the wait was cut short; the connection is closed."""


@dataclass
class _Waiting:
    connection: BoundedConnection
    last_activity: float
    cut_reason: str | None = None


class Waits:
    """The connections of one engine that are waiting for the server, and the bound on their silence."""

    def __init__(self, answer_timeout: float | None) -> None:
        self.answer_timeout = answer_timeout
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiting] = {}
        self._cut_reason: str | None = None
        if answer_timeout is not None:
            _watch(self)

    @property
    def cut_reason(self) -> str | None:
        return self._cut_reason

    def cut(self, reason: str) -> int:
        """End every wait in progress with ``reason`` (and refuse later ones); returns how many were cut."""
        with self._lock:
            self._cut_reason = reason
            waiting = list(self._waiting.values())
            for entry in waiting:
                entry.cut_reason = reason
                _shut_down(entry.connection)
        return len(waiting)

    def cut_silent(self, now: float) -> None:
        """Cut the waits on which the server has been silent for longer than ``answer_timeout``."""
        if self.answer_timeout is None:
            return
        with self._lock:
            for entry in self._waiting.values():
                if entry.cut_reason is None and now - entry.last_activity > self.answer_timeout:
                    entry.cut_reason = (
                        f"the database server did not answer within {format_seconds(self.answer_timeout)} "
                        "(answer_timeout); the connection was closed"
                    )
                    _shut_down(entry.connection)

    @contextmanager
    def waiting(self, connection: BoundedConnection) -> Iterator[_Waiting]:
        entry = _Waiting(connection, time.monotonic())
        with self._lock:
            if self._cut_reason is not None:
                raise NoAnswer(self._cut_reason)
            self._waiting[id(connection)] = entry
        try:
            yield entry
        finally:
            with self._lock:
                self._waiting.pop(id(connection), None)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose waits for a silent server end after ``waits.answer_timeout``."""

    waits: Waits = Waits(None)

    def wait(self, gen: Any, interval: float = _SIGNAL_CHECK_INTERVAL, timeout: float | None = None) -> Any:
        # ``timeout`` is a caller's own (notifies(timeout=...)): psycopg's meaning, untouched.
        entry: _Waiting | None = None
        try:
            with self.waits.waiting(self) as entry:
                return super().wait(_tracked(gen, entry), interval=interval, timeout=timeout)
        except NoAnswer:
            self.pgconn.finish()  # refused before it began: stopping now
            raise
        except psycopg.Error as exc:
            reason = entry.cut_reason if entry is not None else None
            if reason is None:
                raise
            # Half way through the protocol, after leaving the watched set: the connection cannot be used again.
            self.pgconn.finish()
            raise NoAnswer(reason) from exc


def _tracked(gen: Generator[Any, Any, Any], entry: _Waiting) -> Generator[Any, Any, Any]:
    """psycopg's generator, noting each time the socket was ready (the server sent or took something)."""
    try:
        state = next(gen)
    except StopIteration as finished:
        return finished.value
    while True:
        ready = yield state
        if ready:  # psycopg also resumes it with Ready.NONE every interval, to look for signals
            entry.last_activity = time.monotonic()
        try:
            state = gen.send(ready)
        except StopIteration as finished:
            return finished.value


def _shut_down(connection: BoundedConnection) -> None:
    """Shut the connection's socket down, if it still is the connection's (libpq may have closed it)."""
    try:
        fd = connection.pgconn.socket
        duplicate = os.dup(fd)
    except (psycopg.Error, OSError):
        return  # already closed
    try:
        try:
            same = connection.pgconn.socket == fd
        except psycopg.Error:
            same = False
        if same:
            with socket.socket(fileno=duplicate) as sock:
                duplicate = -1  # the socket object owns it now
                sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        if duplicate >= 0:
            os.close(duplicate)


# One thread for the process watches every engine's waits for silence.
_WATCHED: weakref.WeakSet[Waits] = weakref.WeakSet()
_WATCH_LOCK = threading.Lock()
_WATCH_PERIOD = 0.25
_watcher: threading.Thread | None = None


def _watch(waits: Waits) -> None:
    global _watcher
    with _WATCH_LOCK:
        _WATCHED.add(waits)
        if _watcher is None or not _watcher.is_alive():
            _watcher = threading.Thread(target=_watch_forever, name="pg-answer-watch", daemon=True)
            _watcher.start()


def _watch_forever() -> None:
    while True:
        time.sleep(_WATCH_PERIOD)
        now = time.monotonic()
        with _WATCH_LOCK:
            watched = list(_WATCHED)
        for waits in watched:
            waits.cut_silent(now)
