"""Shared fixtures: a fresh database on SQLite and on a real PostgreSQL, and a CLI runner.

PostgreSQL is found at INVENTORY_TEST_POSTGRES (default: the local server,
trust auth). Where it is missing, tests that need it skip with the reason on a
laptop, and fail under CI (CI=true): CI never skips a real-component test.

Every test's ``db`` is a database of its own at the code's schema revision, a copy of one
migrated once per session (tests/database_copies.py): running every migration for each test
was a large share of the suite's time.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from database_copies import PostgresScratch, new_sqlite_identity
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from inventory.storage.database import Database, open_database

POSTGRES_ADMIN_URL = os.environ.get("INVENTORY_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_postgres_problem: str | bool | None = False  # False: not probed yet


def postgres_unavailable() -> str | None:
    """None when PostgreSQL answers, else why not (probed once per session)."""
    global _postgres_problem
    if _postgres_problem is False:
        try:
            engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _postgres_problem = None
        except Exception as exc:  # any failure to connect means "not available here"
            _postgres_problem = (
                f"PostgreSQL not reachable at {make_url(POSTGRES_ADMIN_URL).render_as_string()}: "
                f"{str(exc).splitlines()[0]}"
            )
    return _postgres_problem  # type: ignore[return-value]


def require_postgres() -> None:
    problem = postgres_unavailable()
    if problem:
        if IN_CI:
            pytest.fail(f"CI needs PostgreSQL: {problem}")
        pytest.skip(problem)


_postgres_scratch: PostgresScratch | None = None


def postgres_scratch() -> PostgresScratch:
    """The session's scratch databases on the PostgreSQL server (made on first use)."""
    global _postgres_scratch
    require_postgres()
    if _postgres_scratch is None:
        _postgres_scratch = PostgresScratch(POSTGRES_ADMIN_URL, prefix="inventory_test")
    return _postgres_scratch


@pytest.fixture(scope="session", autouse=True)
def _scratch_databases_dropped() -> Iterator[None]:
    """Every scratch database of the session is gone when it ends."""
    yield
    if _postgres_scratch is not None:
        _postgres_scratch.finish()
        assert not _postgres_scratch.failures, f"scratch databases not dropped: {_postgres_scratch.failures}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the code's revision, to copy."""
    path = tmp_path_factory.mktemp("template") / "inventory.db"
    open_database(f"sqlite:///{path}", migrate=True).dispose()
    assert not path.with_name(path.name + "-wal").exists(), "the template's WAL must be checkpointed into it"
    return path


def _wants_migrated(request: pytest.FixtureRequest) -> bool:
    wanting = {"db", "migrated_database_url", "migrated_postgres_url", "migrated_sqlite_url"}
    return bool(wanting & set(request.fixturenames))


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new empty PostgreSQL database, dropped afterwards; one at the code's revision for a test using ``db``
    or a ``migrated_*_url``."""
    scratch = postgres_scratch()
    database = scratch.migrated() if _wants_migrated(request) else scratch.empty()
    try:
        yield database.url
    finally:
        scratch.drop(database)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file in the test's directory: none yet, or one at the code's revision for a test using ``db`` or
    a ``migrated_*_url``."""
    path = tmp_path / "inventory.db"
    if _wants_migrated(request):
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


def copy_sqlite_template(template: Path, path: Path) -> None:
    shutil.copyfile(template, path)
    with sqlite3.connect(path) as connection:
        new_sqlite_identity(connection)
    connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each engine: every storage test runs on both."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def _at_head(url: str) -> str:
    # A copy is at the code's revision already; a database asked for by name at run time
    # (getfixturevalue) came before this fixture was known, and is migrated here.
    open_database(url, migrate=True).dispose()
    return url


@pytest.fixture
def migrated_database_url(database_url: str) -> str:
    """``database_url`` at the code's schema revision (a copy of the session's migrated database)."""
    return _at_head(database_url)


@pytest.fixture
def migrated_postgres_url(postgres_url: str) -> str:
    """``postgres_url`` at the code's schema revision."""
    return _at_head(postgres_url)


@pytest.fixture
def migrated_sqlite_url(request: pytest.FixtureRequest, sqlite_url: str, tmp_path: Path) -> str:
    """``sqlite_url`` at the code's schema revision."""
    if not (tmp_path / "inventory.db").exists():
        copy_sqlite_template(request.getfixturevalue("sqlite_template"), tmp_path / "inventory.db")
    return _at_head(sqlite_url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A fresh database at the code's schema revision."""
    database = open_database(database_url, migrate=True)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own config or database."""
    for name in list(os.environ):
        if name.startswith("INVENTORY_") and name != "INVENTORY_TEST_POSTGRES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
