"""`inventory db restore FILE`: a backup into the configured database, checked before it replaces anything.

In order: the manifest must be signed by this audit key and describe the file
(``backup/manifest.py``); the backup's schema revision must be one this code knows (a newer
one is refused, an older one is migrated forward); a target that holds anything is replaced
only with ``force`` (or a yes on a terminal); no sync may be running (every source's sync
lock is taken for the whole restore).

SQLite: the backup is unpacked into a temporary file beside the database, checked
(``PRAGMA quick_check``, its revision, its audit chain under the key ending at the
manifest's head), migrated if older, then renamed over the database; a database another
process has open is refused.

PostgreSQL: ``pg_restore --clean --if-exists --single-transaction`` (all or nothing), without
owners or grants (run ``inventory db grant ROLE --apply`` again); a target at another schema
revision is emptied first. Then the migration and the audit check.

Last, ``audit/restore.record_restore`` appends the restore to the audit log and beside the head.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.exc import SQLAlchemyError

from inventory.audit.keys import AuditSecrets, attach, database_key, legacy_key_path, secrets_for
from inventory.audit.restore import RestoreNote, record_restore, verify_backup_log
from inventory.backup.manifest import Manifest, manifest_database_id, read_manifest
from inventory.backup.pg_tools import find_tool, run_tool, tool_environment, tool_url
from inventory.backup.take import GZIP, sqlite_file
from inventory.errors import StorageError, UsageError
from inventory.locks import FileSourceLock, SourceLock, lock_file_path, make_lock
from inventory.redact import error_reason
from inventory.storage.database import SCHEMA_REVISION, Database
from inventory.storage.migrate import upgrade

# What makes a database worth keeping: anything synced, audited or issued.
CONTENT_TABLES = ("sources", "changes", "audit_log", "api_tokens")
# A restore's DROP TABLE waits this long for readers and writers of other sessions, then fails whole.
PG_LOCK_TIMEOUT = "30s"

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class RestoreOutcome:
    manifest: Manifest
    migrated_from: str | None  # the backup's revision when it was migrated forward
    replaced: dict[str, int]  # what the target held before
    note: RestoreNote


def known_revisions() -> list[str]:
    """Every schema revision this code knows, oldest first."""
    from alembic.script import ScriptDirectory

    from inventory.storage.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def check_revision(manifest: Manifest) -> None:
    if manifest.schema_revision not in known_revisions():
        raise UsageError(
            f"the backup is at schema revision {manifest.schema_revision}, which this version of inventory does not "
            f"know (it is at {SCHEMA_REVISION}): restore it with the newer version of inventory that wrote it"
        )


def database_contents(db: Database) -> dict[str, int]:
    """Rows per content table of the target (empty: nothing there, or no database yet)."""
    if db.dialect == "sqlite" and not sqlite_file(db).is_file():
        return {}
    try:
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            return {
                table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in CONTENT_TABLES
                if table in tables
            }
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read {db.display_url}: {error_reason(exc)}") from exc


def _backup_secrets(db: Database, backup: Path) -> AuditSecrets:
    """The key of the database the backup was taken from: the config's, else the one its id names (the target
    may be a new, empty database with an id of its own), else the per-user key of versions before ids."""
    if getattr(db, "audit_secrets", None) is not None and not getattr(db, "audit_secrets_by_identity", False):
        return secrets_for(db)  # the config names the key
    head_file = getattr(db, "audit_head_file", None)
    identity = manifest_database_id(backup)
    if identity is not None:
        found = database_key(identity, head_file=head_file)
    elif legacy_key_path().exists():
        found = AuditSecrets(legacy_key_path(), head_file)
    else:
        return secrets_for(db)
    attach(db, found)
    return found


def restore_backup(
    db: Database,
    path: str | os.PathLike[str],
    *,
    actor: str,
    force: bool = False,
    confirm: Confirm | None = None,
    sources: Iterable[str] = (),
) -> RestoreOutcome:
    """Restore the backup at ``path`` into ``db``; ``sources`` are the configured names whose sync locks to hold."""
    backup = Path(path)
    audit_secrets = _backup_secrets(db, backup)
    manifest = read_manifest(backup, audit_secrets)
    if manifest.engine != db.dialect:
        raise UsageError(
            f"{backup} is a {manifest.engine} backup and {db.display_url} is {db.dialect}: a backup restores into the "
            "engine it was taken from (README: Moving to a new machine)"
        )
    check_revision(manifest)
    if db.dialect == "postgresql":
        db.current_revision()  # a database missing on its server is named, with the createdb to run
    replaced = database_contents(db)
    if any(replaced.values()) and not force:
        held = ", ".join(f"{count} {table}" for table, count in replaced.items() if count)
        question = f"{db.display_url} holds {held}: replace it with the backup taken at {manifest.taken_at}?"
        if confirm is None or not confirm(question):
            raise UsageError(f"{db.display_url} is not empty ({held}): pass --force to replace it with the backup")
    with ExitStack() as held_locks:
        for lock in _sync_locks(db, sources):
            held_locks.enter_context(_held(lock))
        if db.dialect == "sqlite":
            _restore_sqlite(db, backup, manifest, audit_secrets)
        else:
            _restore_postgres(db, backup, manifest, audit_secrets, replaced)
    note = record_restore(
        db, audit_secrets, taken_at=manifest.taken_at, backup_head=manifest.audit_head, actor=actor, backup=backup.name
    )
    migrated_from = manifest.schema_revision if manifest.schema_revision != SCHEMA_REVISION else None
    return RestoreOutcome(manifest, migrated_from, replaced, note)


# --- no sync while restoring ------------------------------------------------------------------


def _sync_locks(db: Database, sources: Iterable[str]) -> list[SourceLock]:
    names = set(sources)
    if db.dialect == "sqlite":
        database = sqlite_file(db)
        paths = {lock_file_path(database, name): name for name in names}
        # Sources synced here once but no longer configured have a lock file too.
        for found in database.parent.glob(f"{database.name}.*.sync.lock"):
            paths.setdefault(found, found.name[len(database.name) + 1 : -len(".sync.lock")])
        return [FileSourceLock(lock_path, name) for lock_path, name in sorted(paths.items())]
    try:
        with db.engine.connect() as conn:
            if "sources" in inspect(conn).get_table_names():
                names.update(conn.execute(text("SELECT name FROM sources")).scalars())
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read {db.display_url}: {error_reason(exc)}") from exc
    return [make_lock(db, name) for name in sorted(names)]


@contextmanager
def _held(lock: SourceLock) -> Iterator[None]:
    if not lock.try_acquire():
        who = lock.holder() or "another process"
        raise UsageError(
            f"a sync is running ({who}): stop `inventory sync` / `inventory serve --sync` before restoring"
        )
    try:
        yield
    finally:
        lock.release()


# --- SQLite -----------------------------------------------------------------------------------


def _restore_sqlite(db: Database, backup: Path, manifest: Manifest, audit_secrets: AuditSecrets) -> None:
    target = sqlite_file(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.restore-", dir=target.parent)
    os.close(fd)
    staged = Path(name)
    try:
        if manifest.compression == GZIP:
            with gzip.open(backup, "rb") as packed, open(staged, "wb") as plain:
                shutil.copyfileobj(packed, plain, 1 << 20)
        else:
            shutil.copyfile(backup, staged)
        _check_staged(staged, manifest)
        _migrate_and_verify(Database(f"sqlite:///{staged}"), manifest, audit_secrets, before_swap=True)
        with closing(sqlite3.connect(staged, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it to rename along
        db.dispose()  # this process's own connections to the old file
        _swap_in(staged, target, db.display_url)
    except (OSError, gzip.BadGzipFile, EOFError) as exc:
        raise StorageError(f"restore of {backup} into {db.display_url} failed: {exc}") from None
    finally:
        staged.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)


def _check_staged(staged: Path, manifest: Manifest) -> None:
    try:
        with closing(sqlite3.connect(staged)) as conn:
            checked = conn.execute("PRAGMA quick_check").fetchone()[0]
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        raise UsageError(f"the backup does not open as a SQLite database: {exc}") from None
    if checked != "ok":
        raise UsageError(f"the backup is damaged: SQLite's quick_check says {checked}")
    if not revision or revision[0] != manifest.schema_revision:
        found = revision[0] if revision else None
        raise UsageError(f"the backup holds revision {found}, its manifest says {manifest.schema_revision}")


def _swap_in(staged: Path, target: Path, display_url: str) -> None:
    """Rename the staged file over the database, refusing while another process has it open."""
    if not target.exists():
        os.replace(staged, target)
    else:
        with closing(sqlite3.connect(target, timeout=1, isolation_level=None)) as conn:
            # Leaving WAL mode needs every other connection gone; it also folds and removes the -wal file,
            # which would otherwise be replayed into the restored file.
            try:
                mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
                conn.execute("BEGIN EXCLUSIVE")
            except sqlite3.OperationalError:
                mode = "busy"
            if mode != "delete":
                raise UsageError(
                    f"another process has {display_url} open (`inventory serve`, `inventory sync`?): stop it, "
                    "then restore"
                )
            os.replace(staged, target)
            conn.execute("ROLLBACK")
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- PostgreSQL -------------------------------------------------------------------------------


def _restore_postgres(
    db: Database, backup: Path, manifest: Manifest, audit_secrets: AuditSecrets, replaced: dict[str, int]
) -> None:
    url, password = tool_url(db.url)
    try:
        with db.engine.connect() as conn:
            major = int(conn.execute(text("SHOW server_version_num")).scalar_one()) // 10000
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot connect to {db.display_url}: {error_reason(exc)}") from exc
    tool = find_tool("pg_restore", major)
    if replaced and db.current_revision() != manifest.schema_revision:
        _empty_postgres(db)  # --clean drops what the backup holds; a table of another revision would stay
    with tool_environment(password) as env:
        env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c lock_timeout={PG_LOCK_TIMEOUT}".strip()
        run_tool(
            [
                str(tool),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                "--dbname",
                url,
                str(backup),
            ],
            env,
            what=f"restore of {backup} into {db.display_url}",
            secret=password,
        )
    _migrate_and_verify(db, manifest, audit_secrets, before_swap=False)


def _empty_postgres(db: Database) -> None:
    try:
        with db.engine.begin() as conn:
            for table in inspect(conn).get_table_names():
                conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
            # Every trigger function of the schema, whichever revision made it (a backup of an older revision
            # is migrated forward after the restore, and its migrations create their functions anew).
            functions = conn.execute(
                text(
                    "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc p "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = current_schema() AND p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype"
                )
            ).scalars()
            for function in list(functions):
                conn.execute(text(f"DROP FUNCTION IF EXISTS {function} CASCADE"))
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot empty {db.display_url} before the restore: {error_reason(exc)}") from exc


# --- both -------------------------------------------------------------------------------------


def _migrate_and_verify(db: Database, manifest: Manifest, audit_secrets: AuditSecrets, *, before_swap: bool) -> None:
    """Migrate the restored copy forward if it is older, then check its audit log against the manifest's head."""
    attach(db, audit_secrets)
    try:
        if manifest.schema_revision != SCHEMA_REVISION:
            upgrade(db)
        with db.session() as session:
            result = verify_backup_log(session, audit_secrets, manifest.audit_head)
    finally:
        if before_swap:
            db.dispose()
    if not result.ok:
        assert result.problem is not None
        where = "nothing was replaced" if before_swap else "the database now holds it; `audit verify` will fail"
        raise StorageError(f"the backup's audit log does not verify: {result.problem.message} ({where})")
