"""Databases at the code's schema revision without running the migrations for each test.

Each engine's schema is migrated once per session into a template; a test's database starts as
a copy of it (PostgreSQL's CREATE DATABASE ... TEMPLATE, a file copy for SQLite) and gets a
database id of its own, as migration 0012 gives every database. PostgreSQL copies are made a
couple ahead on a thread, and scratch databases are dropped on one (DROP DATABASE waits for a
checkpoint): no test waits for either. ``finish`` waits for every drop; what went wrong is
reported then.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import uuid
from datetime import UTC, datetime

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from inventory.storage.database import open_database
from inventory.testing.scratch_postgres import ScratchDatabase

_IDENTITY_GUARD = "database_identity_no_update"


def new_sqlite_identity(connection: sqlite3.Connection) -> None:
    """Give a copy of the SQLite template a random id of its own.

    The row is guarded by triggers; SQLite cannot switch triggers off for one connection, so the
    update trigger is dropped and made again from its own text (the file is the test's alone)."""
    (guard,) = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (_IDENTITY_GUARD,)
    ).fetchone()
    connection.execute(f"DROP TRIGGER {_IDENTITY_GUARD}")
    connection.execute(
        "UPDATE database_identity SET database_id = ?, created_at = ?",
        # As SQLAlchemy stores a DateTime on SQLite.
        (uuid.uuid4().hex, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
    )
    connection.execute(guard)


def new_postgres_identity(url: str) -> None:
    """Give a copy of the PostgreSQL template a random id of its own (as a superuser).

    The row's guard triggers are ordinary triggers, which a session in replica mode does not fire."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SET session_replication_role = replica"))
            conn.execute(
                text("UPDATE database_identity SET database_id = :id, created_at = :now"),
                {"id": uuid.uuid4().hex, "now": datetime.now(UTC)},
            )
            conn.commit()
    finally:
        engine.dispose()


class PostgresScratch:
    """Scratch databases on one PostgreSQL server: empty ones, copies of a migrated template, and their drops."""

    AHEAD = 2  # copies made before they are asked for

    def __init__(self, admin_url: str, prefix: str) -> None:
        self.admin_url = admin_url
        self.prefix = prefix
        self.failures: list[str] = []
        self._drops: queue.Queue[ScratchDatabase | None] = queue.Queue()
        self._dropper = threading.Thread(target=self._drop_each, name="drop-scratch-databases", daemon=True)
        self._dropper.start()
        self._template: ScratchDatabase | None = None
        self._copies: queue.Queue[ScratchDatabase | BaseException] = queue.Queue(maxsize=self.AHEAD)
        self._stop = threading.Event()
        self._copier: threading.Thread | None = None

    def empty(self) -> ScratchDatabase:
        return ScratchDatabase(self.admin_url, prefix=self.prefix)

    def migrated(self, timeout: float = 120.0) -> ScratchDatabase:
        """A database of its own at the code's revision."""
        if self._copier is None:
            self._template = ScratchDatabase(self.admin_url, prefix=f"{self.prefix}_template")
            open_database(self._template.url, migrate=True).dispose()  # nobody stays connected: it is copied
            self._copier = threading.Thread(target=self._copy_ahead, name="copy-template-database", daemon=True)
            self._copier.start()
        try:
            copy = self._copies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no copy of the template database within {timeout:.0f} s") from None
        if isinstance(copy, BaseException):
            raise AssertionError(f"copying the template database failed: {copy!r}") from copy
        return copy

    def _copy_ahead(self) -> None:
        assert self._template is not None
        while not self._stop.is_set():
            try:
                copy = ScratchDatabase(self.admin_url, prefix=self.prefix, template=self._template.name)
                new_postgres_identity(copy.url)
            except Exception as exc:  # the test asking for the next copy fails with it
                self._copies.put(exc)
                return
            while True:
                try:
                    self._copies.put(copy, timeout=0.5)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        self.drop(copy)
                        return

    def drop(self, scratch: ScratchDatabase) -> None:
        """Dropped soon, on the drop thread."""
        self._drops.put(scratch)

    def _drop_each(self) -> None:
        while (scratch := self._drops.get()) is not None:
            try:
                scratch.drop()
            except Exception as exc:  # reported by finish
                self.failures.append(f"{scratch.name}: {exc}")

    def finish(self, timeout: float = 300.0) -> None:
        """Drop every copy not handed out and the template, and wait for all drops."""
        self._stop.set()
        if self._copier is not None:
            self._copier.join(timeout)
        while not self._copies.empty():
            left = self._copies.get()
            if isinstance(left, ScratchDatabase):
                self.drop(left)
        if self._template is not None:
            self.drop(self._template)
        self._drops.put(None)
        self._dropper.join(timeout)
        if self._dropper.is_alive():
            self.failures.append(f"scratch databases still being dropped after {timeout:.0f} s")
