"""The one engine factory, and the schema-revision gate in front of it."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError, SQLAlchemyError

from inventory.errors import SchemaOutOfDate, StorageError
from inventory.redact import error_reason, redact_text

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from inventory.storage.pg_waits import Waits

# The waits of each PostgreSQL engine, for Database.interrupt.
_ENGINE_WAITS: weakref.WeakKeyDictionary[Engine, Waits] = weakref.WeakKeyDictionary()

# The Alembic head this code expects; tests check it equals the newest revision in migrations/.
SCHEMA_REVISION = "0016_changes_time_order"

_WRITE_OPTION = "inventory_write"

# SQLite: seconds a writer waits for another writer's lock before "database is locked"
# (the URL's ``?timeout=`` overrides it).
SQLITE_BUSY_SECONDS = 30.0
# PostgreSQL: a database that stops answering (blackholed, partitioned) must fail the source within
# bounded time, and a lock must not outlive a vanished holder for long. libpq settings apply
# unless the URL names them; the server settings go in ``options`` unless the URL gives its own.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms: sent data unacknowledged this long ends the connection
}
# PostgreSQL: seconds the client waits for one answer of the server (a statement, a commit, a COPY
# block) before it closes the connection: a server that keeps TCP up and never answers is not ended
# by keepalives. Longer than statement_timeout, so that a slow but living server is never cut
# (the URL's ``?answer_timeout=`` overrides it; it never reaches libpq).
POSTGRES_ANSWER_TIMEOUT = 330.0
ANSWER_TIMEOUT_PARAMETER = "answer_timeout"
POSTGRES_SERVER_SETTINGS = {
    "statement_timeout": "5min",
    # A transaction left open by a client that went away ends, and its locks with it.
    "idle_in_transaction_session_timeout": "5min",
    # The server probes idle clients too: a session-level advisory lock of a vanished holder goes in ~1 min.
    "tcp_keepalives_idle": "30",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


def _normalize_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the supported driver; plain postgresql:// would pick psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return redact_text(url)


def _json_serializer(value: Any) -> str:
    from inventory.records import to_json_bytes

    return to_json_bytes(value).decode()


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    import orjson

    kwargs.setdefault("json_serializer", _json_serializer)
    kwargs.setdefault("json_deserializer", orjson.loads)
    url = _normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or exc
                raise StorageError(f"cannot create the directory of the SQLite database {database}: {reason}") from exc
        busy = float(parsed.query.get("timeout", SQLITE_BUSY_SECONDS))  # type: ignore[arg-type]
        engine = create_engine(url, connect_args={"timeout": busy}, **kwargs)
        _configure_sqlite(engine, busy)
        return engine
    connect_args = {key: value for key, value in POSTGRES_CONNECT_ARGS.items() if key not in parsed.query}
    if "options" not in parsed.query:
        connect_args["options"] = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SERVER_SETTINGS.items())
    answer_timeout = _answer_timeout(parsed)
    parsed = parsed.difference_update_query([ANSWER_TIMEOUT_PARAMETER])
    engine = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    _bound_answers(engine, answer_timeout)
    return engine


def _answer_timeout(parsed: URL) -> float:
    from inventory.timeutil import parse_duration

    given = parsed.query.get(ANSWER_TIMEOUT_PARAMETER)
    if given is None:
        return POSTGRES_ANSWER_TIMEOUT
    try:
        seconds = parse_duration(given if isinstance(given, str) else given[-1])
    except ValueError as exc:
        raise StorageError(f"database URL {describe_url(str(parsed))}: {ANSWER_TIMEOUT_PARAMETER}: {exc}") from None
    if seconds <= 0:
        raise StorageError(f"database URL {describe_url(str(parsed))}: {ANSWER_TIMEOUT_PARAMETER} must be more than 0")
    return seconds


def _bound_answers(engine: Engine, answer_timeout: float) -> None:
    """Every connection of the engine waits at most ``answer_timeout`` for the server (``pg_waits``)."""
    from inventory.storage.pg_waits import BoundedConnection, NoAnswer, Waits

    waits = Waits(answer_timeout)
    _ENGINE_WAITS[engine] = waits

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        if waits.cut_reason is not None:  # stopping now: no new connection (one under way ends by connect_timeout)
            raise NoAnswer(waits.cut_reason)
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.waits = waits
        return connection


# Bytes a SQLite WAL file is cut back to once checkpointed (PRAGMA journal_size_limit).
WAL_SIZE_LIMIT = 4 * 1024 * 1024


def _configure_sqlite(engine: Engine, busy_seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so that writers can BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # A WAL file keeps the size of the largest transaction it ever held (a first sync of a big cluster:
        # tens of MB) for as long as a connection stays open, which for the loop and the server is months;
        # past a checkpoint, the next writer truncates it to this.
        cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A writer takes the write lock up front: it reads max(id) to allocate ids, and
        # a lock upgrade in the middle of a transaction can fail with SQLITE_BUSY.
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine plus the knowledge of whether its schema matches this code."""

    def __init__(self, url: str, engine: Engine | None = None) -> None:
        self.url = _normalize_url(url)
        self.engine = engine or create_db_engine(self.url)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._lock_engine: Engine | None = None
        # PostgreSQL: a read needs no transaction of its own. Under READ COMMITTED each statement sees its own
        # snapshot anyway, and autocommit spares the BEGIN and the ROLLBACK, two of a short read's round trips.
        # SQLite keeps its BEGIN: there a transaction is what gives a read's statements one snapshot.
        self._read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return describe_url(self.url)

    # The ORM is imported where a session is made: the sync engine writes through Core connections
    # (``write_connection``), and a one-shot sync that never makes a session never pays for the ORM (~55 ms).
    # Threads making their first sessions at once import the same package from one entry point: the second
    # waits for the first's import lock (no cycle between them, unlike two SDKs imported side by side).
    def session(self) -> Session:
        from sqlalchemy.orm import Session

        return Session(self.engine, expire_on_commit=False)

    def read_session(self) -> Session:
        """A session for reads only (what serves a request): no transaction of its own on PostgreSQL.

        Nothing written in it is kept: writes go through ``write_session``.
        """
        from sqlalchemy.orm import Session

        return Session(self._read_engine, expire_on_commit=False)

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction commits at the end of the block, or rolls back whole."""
        from sqlalchemy.orm import Session

        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection whose transaction commits at the end of the block, or rolls back whole: how the sync
        engine writes (as ``write_session``: SQLite takes its write lock up front)."""
        with self._write_engine.begin() as connection:
            yield connection

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as exc:
            if _is_missing_database(exc):
                name = make_url(self.url).database
                raise StorageError(
                    f"database {self.display_url} does not exist on its server: "
                    f"create it (e.g. createdb {name or 'NAME'}), "
                    "then run `inventory db upgrade`"
                ) from exc
            if _is_missing_table(exc):
                return None
            raise StorageError(f"cannot read the schema revision of {self.display_url}: {error_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot connect to {self.display_url}: {error_reason(exc)}") from exc

    def ensure_schema(self, *, auto_migrate: bool | None = None) -> None:
        """Make sure the schema is at the code's revision.

        The embedded SQLite database is created and migrated on first use; any other
        database that is behind raises SchemaOutOfDate with the command to run.
        """
        current = self.current_revision()
        if current == SCHEMA_REVISION:
            return
        if auto_migrate is None:
            auto_migrate = self.dialect == "sqlite"
        if auto_migrate:
            from inventory.storage.migrate import upgrade

            log.info("migrating %s from %s to %s", self.display_url, current or "an empty database", SCHEMA_REVISION)
            upgrade(self)
            return
        state = f"at revision {current}" if current else "empty (no schema)"
        raise SchemaOutOfDate(
            f"database {self.display_url} is {state}, but this version of inventory needs {SCHEMA_REVISION}: "
            "run `inventory db upgrade`"
        )

    def interrupt(self, reason: str) -> int:
        """End every wait for the database server in progress, from any thread, and refuse later ones.

        For stopping now (a second SIGTERM): a thread blocked on a server that does not answer
        gets ``reason`` as its error at once. PostgreSQL only; SQLite waits are bounded by its busy
        timeout. Returns how many waits were cut.
        """
        engines = (self.engine, self._lock_engine) if self._lock_engine is not None else (self.engine,)
        cut = 0
        for engine in engines:
            waits = _ENGINE_WAITS.get(engine)
            cut += waits.cut(reason) if waits is not None else 0
        return cut

    @property
    def lock_engine(self) -> Engine:
        """The engine whose connections hold a session-level lock (PostgreSQL's advisory locks, inventory/locks.py).

        Unpooled: a source followed live holds its lock's connection for hours, and with the requests' pool
        (5 + 10 overflow) a dozen live sources would leave a request none to check out.
        """
        if self._lock_engine is None:
            from sqlalchemy.pool import NullPool

            self._lock_engine = create_db_engine(self.url, poolclass=NullPool)
        return self._lock_engine

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lock_engine is not None:
            self._lock_engine.dispose()


def _is_missing_database(exc: DBAPIError) -> bool:
    # PostgreSQL's invalid_catalog_name; its text also says "does not exist", like a missing table.
    message = str(exc.orig)
    return getattr(exc.orig, "sqlstate", None) == "3D000" or ('database "' in message and "does not exist" in message)


def _is_missing_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return (
        "no such table" in message or "does not exist" in message or "undefinedtable" in type(exc.orig).__name__.lower()
    )


def open_database(url: str, *, migrate: bool | None = None) -> Database:
    db = Database(url)
    db.ensure_schema(auto_migrate=migrate)
    return db


def as_connection(executor: Connection | Session) -> Connection:
    """The Core connection to write through: the caller's own, or the one in its session's transaction.

    The sync engine's writers (the store, reconcile's attribution, relinking) take either, so that a session's
    holder (a live watch, a tool call's re-read) and a one-shot sync share them.
    """
    return executor if isinstance(executor, Connection) else executor.connection()
