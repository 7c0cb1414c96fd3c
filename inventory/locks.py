"""One sync of a source at a time, across processes and machines.

PostgreSQL: a session-level advisory lock per source (``pg_try_advisory_lock``)
taken on a dedicated connection that is held for the whole sync. The server
drops it when that connection ends, so a process killed with ``kill -9`` never
leaves a source locked. The holder is found in ``pg_locks`` joined to
``pg_stat_activity``; the lock connection carries ``application_name``
``inventory pid@host`` so that the answer names a process, not just a backend.

SQLite: a file lock (``flock``, through fcntl) beside the database file, one
per source; the holder writes ``pid@host`` into it so that a second process can
say who holds it. The kernel drops a ``flock`` when its process dies, so a crash
never leaves a stale lock either.

Each lock has a purpose: ``sync`` (every full sync, and every delta a live source writes: they
never overlap) and ``watch`` (held by a live source for its whole watch session, inventory/live.py,
so that one process of several follows a source). ``still_held`` tells a holder whether a lock it
took long ago is still its own (a PostgreSQL session that ended took it with it).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Protocol

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from inventory.errors import SourceLockHeld, StorageError
from inventory.redact import error_reason
from inventory.storage.database import Database

# How often a waiting process asks again; a lock is held for a whole sync (seconds to minutes).
POLL_SECONDS = 0.2


def process_identity() -> str:
    """``pid@hostname``: enough for an operator to find the holder of a lock."""
    return f"{os.getpid()}@{socket.gethostname()}"


# What a lock is for: ``sync`` is taken by every full sync and every delta write (they never overlap);
# ``watch`` is held for a whole watch session (inventory/live.py), so one process follows a source's changes.
LOCK_PURPOSES = ("sync", "watch")


def advisory_key(source: str, purpose: str = "sync") -> int:
    """A stable signed 64-bit key per source name and purpose (the type of pg_advisory_lock's argument)."""
    digest = hashlib.blake2b(f"inventory-{purpose}:{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SourceLock(Protocol):
    def try_acquire(self) -> bool: ...

    def holder(self) -> str | None: ...

    def release(self) -> None: ...

    def still_held(self) -> bool:
        """Whether the lock is still ours (a PostgreSQL session that ended took its lock with it)."""
        ...


class PostgresSourceLock:
    """A session-level advisory lock on a connection of its own, held until release."""

    def __init__(self, db: Database, source: str, purpose: str = "sync") -> None:
        self.db = db
        self.source = source
        self.key = advisory_key(source, purpose)
        self._connection: Connection | None = None
        self._held = False

    def _connect(self) -> Connection:
        if self._connection is None:
            connection = self.db.lock_engine.connect()
            # Autocommit: the lock belongs to the session, and no transaction should stay open
            # on this connection for the minutes a sync can take.
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            connection.execute(
                text("SELECT set_config('application_name', :name, false)"),
                {"name": f"inventory {process_identity()}"[:63]},
            )
            self._connection = connection
        return self._connection

    def try_acquire(self) -> bool:
        try:
            self._held = bool(
                self._connect().execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
            )
            return self._held
        except SQLAlchemyError as exc:
            self._close()
            raise StorageError(
                f"source {self.source!r}: cannot take the sync lock in {self.db.display_url}: {error_reason(exc)}"
            ) from exc

    def holder(self) -> str | None:
        # A bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1.
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        query = text(
            """
            SELECT a.pid, a.application_name, host(a.client_addr) AS client, a.state_change
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        )
        try:
            row = self._connect().execute(query, {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}).first()
        except SQLAlchemyError:
            return None
        if row is None:
            return None
        name = row.application_name or "a client"
        where = f" from {row.client}" if row.client else ""
        return f"{name} (PostgreSQL backend pid {row.pid}{where})"

    def still_held(self) -> bool:
        if self._connection is None or not self._held:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            self._held = False  # the session (and the lock with it) is gone: a restart, a cut connection
            self._connection.invalidate()
            self._connection = None
            return False
        return True

    def release(self) -> None:
        if self._connection is not None and self._held:
            self._held = False
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            except SQLAlchemyError:
                # Never hand a connection that may still hold the lock back to the pool: closing
                # it for real ends the session, and the server drops the lock with it.
                self._connection.invalidate()
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except SQLAlchemyError:
                pass
            self._connection = None


class FileSourceLock:
    """An flock beside the SQLite file holding ``pid@host`` of the process that syncs the source."""

    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.source = source
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        # Its own open file description each time: two locks of one process exclude each other too.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        # flock is advisory: the note goes through the locked descriptor, and a waiting process
        # reads it to say who holds the lock.
        note = process_identity().encode()
        try:
            # A lock taken again and again by one process (a live source's every delta) finds its own note there.
            if os.pread(fd, len(note) + 1, 0) != note:
                os.ftruncate(fd, 0)
                os.pwrite(fd, note, 0)
        except OSError:
            pass  # the lock holds without the note; the holder is then reported as unknown
        return True

    def holder(self) -> str | None:
        try:
            found = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        return f"process {found}" if found else None

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor of the open file description drops the flock


class ThreadSourceLock:
    """An in-memory SQLite database lives in one process: a thread lock is enough."""

    _locks: ClassVar[dict[str, threading.Lock]] = {}
    _guard = threading.Lock()

    def __init__(self, source: str, purpose: str = "sync") -> None:
        with self._guard:
            self._lock = self._locks.setdefault(f"{purpose}:{source}", threading.Lock())
        self._held = False

    def still_held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        self._held = self._lock.acquire(blocking=False)
        return self._held

    def holder(self) -> str | None:
        return f"this process ({process_identity()})"

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release()


def lock_file_path(database_file: Path, source: str, purpose: str = "sync") -> Path:
    # Source names allow ':' and '@'; keep the file name portable anyway.
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", source)
    return database_file.with_name(f"{database_file.name}.{safe}.{purpose}.lock")


def make_lock(db: Database, source: str, purpose: str = "sync") -> SourceLock:
    if purpose not in LOCK_PURPOSES:
        raise ValueError(f"no {purpose!r} lock (one of {', '.join(LOCK_PURPOSES)})")
    if db.dialect == "postgresql":
        return PostgresSourceLock(db, source, purpose)
    if db.dialect == "sqlite":
        database = make_url(db.url).database
        if database and database != ":memory:":
            return FileSourceLock(lock_file_path(Path(database).resolve(), source, purpose), source)
        return ThreadSourceLock(source, purpose)
    raise StorageError(f"no sync lock for the {db.dialect} dialect")


@contextmanager
def source_lock(db: Database, source: str, *, wait: float = 0.0, stop: threading.Event | None = None) -> Iterator[None]:
    """Hold the sync lock of ``source`` for the block; raise SourceLockHeld after ``wait`` seconds.

    ``stop`` ends the wait early (a signal asked the process to finish).
    """
    lock = make_lock(db, source)
    started = time.monotonic()
    try:
        while not lock.try_acquire():
            waited = time.monotonic() - started
            if waited >= wait or (stop is not None and stop.is_set()):
                raise SourceLockHeld(source, lock.holder(), waited)
            pause = min(POLL_SECONDS, wait - waited)
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)
        yield
    finally:
        lock.release()
