"""`inventory db backup FILE`: a consistent copy of the database, taken while syncs go on.

SQLite: Python's online backup API (``sqlite3.Connection.backup``) in one step, so the copy
is one read transaction: every committed sync before it, none after. Written gzip-compressed
when FILE ends in ``.gz``, else as a plain SQLite file (in rollback-journal mode, so that the
one file is the whole database).

PostgreSQL: ``pg_dump --format=custom`` inside a snapshot this process exports
(``pg_export_snapshot``): the schema revision and audit head in the manifest are read in the
very snapshot the dump is taken in.

Either way the data is written to a hidden partial file and renamed into place, then the
signed manifest (``backup/manifest.py``) beside it.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from inventory.audit.identity import database_id
from inventory.audit.keys import AuditHead, secrets_for
from inventory.backup.manifest import Manifest, file_digest
from inventory.backup.pg_tools import find_tool, run_tool, tool_environment, tool_url
from inventory.errors import StorageError, UsageError
from inventory.redact import error_reason
from inventory.storage.database import Database

GZIP = "gzip"
PLAIN = "none"
PG_CUSTOM = "pg_dump custom"
_HEAD_SQL = "SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_REVISION_SQL = "SELECT version_num FROM alembic_version"


def sqlite_file(db: Database) -> Path:
    database = make_url(db.url).database
    if not database or database == ":memory:":
        raise UsageError(f"{db.display_url} lives in memory: there is nothing on disk to back up or restore")
    return Path(database).resolve()


@dataclass(frozen=True)
class _Taken:
    revision: str
    head: AuditHead | None
    compression: str


def create_backup(db: Database, path: str | os.PathLike[str], *, now: datetime | None = None) -> Manifest:
    """Back up ``db`` to ``path`` (and ``path``.manifest.json); returns the manifest written."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{target} is a directory: name the backup file")
    taken_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the directory of {target}: {exc.strerror}") from None
    partial = target.with_name(f".{target.name}.partial")
    try:
        taken = _sqlite(db, partial, target) if db.dialect == "sqlite" else _postgres(db, partial, target)
        size, sha256 = file_digest(partial)
        os.replace(partial, target)
    except OSError as exc:
        raise StorageError(f"cannot write the backup {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    audit_secrets = secrets_for(db)  # once the database is known to be there: its id names the key
    audit_secrets.key()  # the manifest is signed with it: created now on a database that never needed it yet
    manifest = Manifest(
        engine=db.dialect,
        schema_revision=taken.revision,
        taken_at=taken_at,
        audit_head=taken.head,
        file=target.name,
        size=size,
        sha256=sha256,
        compression=taken.compression,
        database=db.display_url,
        database_id=database_id(db),
    )
    manifest.write(target, audit_secrets)
    return manifest


def _head(row: Any) -> AuditHead | None:
    return AuditHead(int(row[0]), str(row[1])) if row else None


def _sqlite(db: Database, partial: Path, target: Path) -> _Taken:
    source = sqlite_file(db)
    if not source.is_file():
        raise UsageError(f"no database at {source}: nothing to back up")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".inventory-backup-") as scratch:
        copy = Path(scratch) / "copy.db"
        try:
            with closing(sqlite3.connect(source, timeout=30)) as live, closing(sqlite3.connect(copy)) as out:
                live.backup(out)  # pages=-1: one step, one read transaction, a consistent copy
                out.execute("PRAGMA journal_mode=DELETE")
                revision = _revision(out.execute(_REVISION_SQL).fetchone(), db)
                head = _head(out.execute(_HEAD_SQL).fetchone())
        except sqlite3.Error as exc:
            raise StorageError(f"backup of {db.display_url} failed: {exc}") from None
        if target.name.endswith(".gz"):
            with open(copy, "rb") as plain, gzip.open(partial, "wb", compresslevel=6) as packed:
                shutil.copyfileobj(plain, packed, 1 << 20)
            return _Taken(revision, head, GZIP)
        shutil.move(copy, partial)
        return _Taken(revision, head, PLAIN)


def _revision(row: Any, db: Database) -> str:
    if not row or not row[0]:
        raise UsageError(f"{db.display_url} has no schema yet: nothing to back up")
    return str(row[0])


def _postgres(db: Database, partial: Path, target: Path) -> _Taken:
    if target.name.endswith(".gz"):
        raise UsageError(
            f"{target}: a PostgreSQL backup is a pg_dump custom archive, compressed already: name it e.g. .pgdump"
        )
    url, password = tool_url(db.url)
    try:
        with db.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                # pg_dump imports the snapshot while this transaction waits for it, idle.
                conn.execute(text("SET LOCAL idle_in_transaction_session_timeout = 0"))
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                major = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
                try:
                    revision = _revision(conn.execute(text(_REVISION_SQL)).first(), db)
                except SQLAlchemyError:
                    raise UsageError(f"{db.display_url} has no schema yet: nothing to back up") from None
                head = _head(conn.execute(text(_HEAD_SQL)).first())
                tool = find_tool("pg_dump", major)
                with tool_environment(password) as env:
                    run_tool(
                        [str(tool), "--format=custom", f"--snapshot={snapshot}", f"--file={partial}", "--dbname", url],
                        env,
                        what=f"backup of {db.display_url}",
                        secret=password,
                    )
    except SQLAlchemyError as exc:
        raise StorageError(f"backup of {db.display_url} failed: {error_reason(exc)}") from exc
    return _Taken(revision, head, PG_CUSTOM)
