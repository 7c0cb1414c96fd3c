"""Backups and restore on both engines: a consistent backup while a sync writes, an identical round trip, the audit
log across a restore (verified, told apart from a truncation), refusals, no password anywhere, scheduled backups.

PostgreSQL backups run the real pg_dump / pg_restore of the installed PostgreSQL: missing, they skip the test on a
laptop and fail it under CI."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import IN_CI, POSTGRES_ADMIN_URL
from server_support import TOKEN_ISSUER
from sqlalchemy import Connection, event, func, select, text
from sqlalchemy.engine import make_url
from sync_support import write_config, write_inventory
from test_audit_integrity import _disable_triggers as disable_audit_triggers

from inventory.audit.keys import secrets_for
from inventory.audit.restore import restores_file
from inventory.backup import pg_tools
from inventory.backup.manifest import Manifest, manifest_path
from inventory.backup.restore import restore_backup
from inventory.backup.schedule import ScheduledBackups, scheduled_files
from inventory.backup.take import create_backup
from inventory.cli import cli
from inventory.config import BackupSettings, load_config
from inventory.connector import ConnectorRegistry
from inventory.errors import UsageError
from inventory.locks import source_lock
from inventory.loop import SyncLoop
from inventory.storage.database import SCHEMA_REVISION, Database, open_database
from inventory.storage.migrate import upgrade
from inventory.storage.models import HostRow, SyncRun, WorkloadRow
from inventory.sync import sync_all
from inventory.testing.scratch_postgres import ScratchDatabase
from inventory.tokens import create_token

TABLES = ("sources", "sync_runs", "hosts", "workloads", "changes", "machine_links", "audit_log", "api_tokens")
ACTOR = "tester"


def require_pg_tools() -> None:
    for name in ("pg_dump", "pg_restore"):
        try:
            pg_tools.find_tool(name)
        except UsageError as exc:
            if IN_CI:
                pytest.fail(f"CI needs PostgreSQL's client tools: {exc}")
            pytest.skip(str(exc))


@pytest.fixture
def store(db: Database) -> Database:
    """The ``db`` fixture, with PostgreSQL's tools required where it is PostgreSQL."""
    if db.dialect == "postgresql":
        require_pg_tools()
    return db


def _backup_name(db: Database, stem: str = "backup") -> str:
    return f"{stem}.db.gz" if db.dialect == "sqlite" else f"{stem}.pgdump"


def _setup(tmp_path: Path, db: Database, hosts: int) -> Path:
    inventory = write_inventory(tmp_path / "lab.yaml", hosts)
    return write_config(tmp_path / "inventory.yaml", db.url, {"lab": inventory})


def _sync(db: Database, config_path: Path, hosts: int | None = None) -> None:
    if hosts is not None:
        write_inventory(config_path.parent / "lab.yaml", hosts)
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    outcomes = sync_all(db, config, registry)
    assert [outcome.status for outcome in outcomes] == ["success"]


def _contents(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        return {
            table: [tuple(row) for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))] for table in TABLES
        }


def _count(db: Database, model: Any) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _cli(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config_path), *args])


def _verify(config_path: Path) -> tuple[int, dict[str, Any]]:
    result = _cli(config_path, "audit", "verify", "-o", "json")
    return result.exit_code, json.loads(result.stdout)


@contextmanager
def _backup_inside_the_next_write(db: Database, path: Path) -> Iterator[list[Manifest]]:
    """Take a backup just before the next sync's write transaction commits (from inside it): it must not see it."""
    before = _count(db, WorkloadRow)
    taken: list[Manifest] = []

    # The engine's commit event comes before the database's COMMIT, whatever holds the connection (the sync
    # writes through a Core connection, the tool runner through a session).
    def just_before_commit(connection: Connection) -> None:
        if taken:
            return
        if connection.execute(select(func.count()).select_from(WorkloadRow)).scalar_one() > before:
            taken.append(create_backup(db, path))

    event.listen(db.engine, "commit", just_before_commit)
    try:
        yield taken
    finally:
        event.remove(db.engine, "commit", just_before_commit)


def test_a_backup_taken_while_a_sync_writes_holds_the_state_before_it(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 30)
    _sync(db, config_path)
    before = _contents(db)
    during = tmp_path / _backup_name(db, "during")
    with _backup_inside_the_next_write(db, during) as taken:
        _sync(db, config_path, hosts=60)
    assert len(taken) == 1, "the backup ran inside the write transaction"
    after = _contents(db)
    after_backup = create_backup(db, tmp_path / _backup_name(db, "after"))

    restore_backup(db, during, actor=ACTOR, force=True)
    restored = _contents(db)
    assert {t: rows for t, rows in restored.items() if t != "audit_log"} == {
        t: rows for t, rows in before.items() if t != "audit_log"
    }
    assert restored["audit_log"][: len(before["audit_log"])] == before["audit_log"]
    assert _count(db, HostRow) == 30

    restore_backup(db, tmp_path / after_backup.file, actor=ACTOR, force=True)
    restored = _contents(db)
    assert {t: rows for t, rows in restored.items() if t != "audit_log"} == {
        t: rows for t, rows in after.items() if t != "audit_log"
    }
    # The counts are those of a whole run: the newest run's object count is what is stored.
    with db.session() as session:
        last_objects = session.execute(select(SyncRun.objects).order_by(SyncRun.id.desc()).limit(1)).scalar_one()
    assert last_objects == _count(db, HostRow) + _count(db, WorkloadRow) == 120


def test_restore_gives_back_objects_changes_audit_entries_and_tokens_identical(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 5)
    _sync(db, config_path)
    _sync(db, config_path, hosts=7)
    token = create_token(db, "ci", groups=("readers",), by=TOKEN_ISSUER)
    before = _contents(db)
    assert all(before[table] for table in ("hosts", "workloads", "changes", "audit_log", "api_tokens"))
    manifest = create_backup(db, tmp_path / _backup_name(db))
    assert manifest.audit_head is not None and manifest.audit_head.seq == len(before["audit_log"])
    assert (manifest.engine, manifest.schema_revision) == (db.dialect, SCHEMA_REVISION)

    _sync(db, config_path, hosts=2)  # history the backup does not hold
    db.dispose()
    result = _cli(config_path, "db", "restore", str(tmp_path / manifest.file), "--force")
    assert result.exit_code == 0, result.output
    after = _contents(db)
    assert {t: rows for t, rows in after.items() if t != "audit_log"} == {
        t: rows for t, rows in before.items() if t != "audit_log"
    }
    assert after["audit_log"][:-1] == before["audit_log"]
    from inventory.tokens import authenticate

    assert authenticate(db, token) is not None  # the same key still proves the same token


def test_audit_verify_passes_after_a_restore_and_says_so_while_a_truncation_still_fails(
    tmp_path: Path, store: Database
) -> None:
    db = store
    config_path = _setup(tmp_path, db, 3)
    for hosts in (3, 4):
        _sync(db, config_path, hosts=hosts)
    backup = tmp_path / _backup_name(db)
    create_backup(db, backup)  # audit entries 1..2
    for hosts in (5, 6, 7):
        _sync(db, config_path, hosts=hosts)  # entries 3..5, not in the backup
    db.dispose()

    result = _cli(config_path, "db", "restore", str(backup), "--force")
    assert result.exit_code == 0, result.output
    code, report = _verify(config_path)
    assert (code, report["ok"], report["last_seq"]) == (0, True, 3)
    [restore] = report["restores"]
    assert "up to entry 2; entries 3..5 of the previous log are not in this database" in restore
    text_report = _cli(config_path, "audit", "verify")
    assert "restore: entry 3: restored at" in text_report.stdout

    # Someone with database access removes the restore entry and what followed: still a truncation.
    _sync(db, config_path, hosts=8)  # entry 4
    disable_audit_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 3"))
    code, report = _verify(config_path)
    assert (code, report["problem"]["kind"]) == (1, "truncated")


def test_an_old_database_put_back_without_restore_fails_and_a_forged_restore_record_too(
    tmp_path: Path, store: Database
) -> None:
    db = store
    config_path = _setup(tmp_path, db, 3)
    _sync(db, config_path)
    backup = tmp_path / _backup_name(db)
    create_backup(db, backup)
    _sync(db, config_path, hosts=4)
    # The old state put back with the engine's own tools, no restore record: a truncation.
    disable_audit_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 2"))
    code, report = _verify(config_path)
    assert (code, report["problem"]["kind"]) == (1, "truncated")

    # A restore record written without the key does not pass for one, even with the database's own head
    # rolled back to match (as the tables' owner could): only the record is left to lie.
    _roll_back_database_head(db, 1)
    head_file = secrets_for(db).head_file
    line = {"backup_seq": 1, "entry": {"seq": 1, "entry_hash": "0" * 64}, "mac": "f" * 64}
    restores_file(secrets_for(db)).write_text(json.dumps(line) + "\n")
    head_file.write_text(json.dumps({"seq": 1, "entry_hash": _head_hash(db, 1)}))
    code, report = _verify(config_path)
    assert (code, report["problem"]["kind"]) == (1, "forged")
    assert "not signed with the audit key" in report["problem"]["message"]


def _roll_back_database_head(db: Database, seq: int) -> None:
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_head_forward_only"))
        conn.execute(
            text(
                "UPDATE audit_head SET seq = a.seq, entry_hash = a.entry_hash, mac = a.mac "
                "FROM (SELECT seq, entry_hash, mac FROM audit_log WHERE seq = :s) AS a"
            ),
            {"s": seq},
        )


def _head_hash(db: Database, seq: int) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(text("SELECT entry_hash FROM audit_log WHERE seq = :s"), {"s": seq}).scalar_one())


def test_refusals_leave_the_database_as_it_was(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 3)
    _sync(db, config_path)
    backup = tmp_path / _backup_name(db)
    manifest = create_backup(db, backup)
    _sync(db, config_path, hosts=4)
    before = _contents(db)
    db.dispose()

    not_empty = _cli(config_path, "db", "restore", str(backup))
    assert not_empty.exit_code == 2
    assert "is not empty (1 sources" in not_empty.output and "--force" in not_empty.output

    manifest_file = manifest_path(backup)
    original = manifest_file.read_text()
    future = Manifest(**{**manifest.__dict__, "schema_revision": "0099_future"})
    future.write(backup, secrets_for(db))  # signed: as a newer inventory would write it
    newer = _cli(config_path, "db", "restore", str(backup), "--force")
    assert newer.exit_code == 2 and "0099_future, which this version of inventory does not know" in newer.output

    manifest_file.write_text(original.replace(manifest.taken_at, "2020-01-01T00:00:00+00:00"))
    edited = _cli(config_path, "db", "restore", str(backup), "--force")
    assert edited.exit_code == 2 and "not signed by the audit key" in edited.output

    manifest_file.write_text(original)
    with open(backup, "ab") as data:
        data.write(b"\0")
    swapped = _cli(config_path, "db", "restore", str(backup), "--force")
    assert swapped.exit_code == 2 and "not the one its manifest describes" in swapped.output
    assert _contents(db) == before


def test_a_running_sync_or_an_open_sqlite_database_refuses_the_restore(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 3)
    _sync(db, config_path)
    backup = tmp_path / _backup_name(db)
    create_backup(db, backup)
    with source_lock(db, "lab"), pytest.raises(UsageError, match="a sync is running"):
        restore_backup(db, backup, actor=ACTOR, force=True, sources=["lab"])
    if db.dialect == "sqlite":
        with closing(sqlite3.connect(make_url(db.url).database or "")) as other:
            other.execute("SELECT count(*) FROM hosts").fetchone()
            with pytest.raises(UsageError, match="another process has .* open"):
                restore_backup(db, backup, actor=ACTOR, force=True)
    restore_backup(db, backup, actor=ACTOR, force=True, sources=["lab"])


def test_an_older_backup_is_migrated_forward(tmp_path: Path, database_url: str) -> None:
    db = Database(database_url)
    try:
        if db.dialect == "postgresql":
            require_pg_tools()
        upgrade(db, "0004_stale_details")
        from inventory.audit.log import AuditRecord, append

        append(db, AuditRecord(event="token", actor=ACTOR, outcome="created", target="token:x"))
        backup = tmp_path / _backup_name(db)
        assert create_backup(db, backup).schema_revision == "0004_stale_details"
        upgrade(db)
        _setup(tmp_path, db, 2)
        _sync(db, tmp_path / "inventory.yaml")
        outcome = restore_backup(db, backup, actor=ACTOR, force=True)
        assert outcome.migrated_from == "0004_stale_details"
        assert db.current_revision() == SCHEMA_REVISION
        assert _count(db, HostRow) == 0
        with db.engine.connect() as conn:
            events = list(conn.execute(text("SELECT event FROM audit_log ORDER BY seq")).scalars())
        assert events == ["token", "restore"]
    finally:
        db.dispose()


def test_missing_postgresql_tools_are_named(
    tmp_path: Path, migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = open_database(migrated_postgres_url, migrate=True)
    db.dispose()
    config_path = _setup(tmp_path, db, 1)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(pg_tools, "PG_INSTALL_DIRS", (str(tmp_path / "no-postgresql/*/bin"),))
    result = _cli(config_path, "db", "backup", str(tmp_path / "x.pgdump"))
    assert result.exit_code == 2
    assert "pg_dump not found (looked in PATH" in result.output and "postgresql-client" in result.output
    assert not (tmp_path / "x.pgdump").exists()


def test_the_database_password_reaches_no_output_and_no_command_line(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_pg_tools()
    password = "Hunter2:pass\\word"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    open_database(url, migrate=True).dispose()
    config_path = write_config(tmp_path / "inventory.yaml", url, {"lab": write_inventory(tmp_path / "lab.yaml", 2)})
    seen: list[tuple[list[str], dict[str, str], int]] = []
    real_run = subprocess.run

    def recording_run(args: list[str], **kwargs: Any) -> Any:
        env = kwargs["env"]
        passfile = Path(env["PGPASSFILE"])
        seen.append((list(args), dict(env), stat.S_IMODE(passfile.stat().st_mode)))
        assert passfile.read_text().strip() == "*:*:*:*:Hunter2\\:pass\\\\word"
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)
    outputs = [_cli(config_path, "sync", "--once")]
    outputs.append(_cli(config_path, "db", "backup", str(tmp_path / "b.pgdump")))
    outputs.append(_cli(config_path, "db", "restore", str(tmp_path / "b.pgdump"), "--force"))
    assert [result.exit_code for result in outputs] == [0, 0, 0], [result.output for result in outputs]
    broken = make_url(url).set(database="no_such_database_here").render_as_string(hide_password=False)
    outputs.append(CliRunner().invoke(cli, ["--database-url", broken, "db", "backup", str(tmp_path / "c.pgdump")]))
    assert outputs[-1].exit_code == 1
    assert [Path(args[0]).name for args, _env, _mode in seen] == ["pg_dump", "pg_restore"]
    for args, env, mode in seen:
        assert mode == 0o600
        assert not any("Hunter2" in arg for arg in args)
        assert "PGPASSWORD" not in env and not any("Hunter2" in value for value in env.values())
        assert not Path(env["PGPASSFILE"]).exists()
    for result in outputs:
        assert "Hunter2" not in result.output
    assert "Hunter2" not in manifest_path(tmp_path / "b.pgdump").read_text()


def test_scheduled_backups_keep_the_newest_and_a_failure_is_only_a_warning(
    tmp_path: Path, store: Database, caplog: pytest.LogCaptureFixture
) -> None:
    db = store
    config_path = _setup(tmp_path, db, 2)
    _sync(db, config_path)
    backups = ScheduledBackups(db, BackupSettings(dir=str(tmp_path / "backups"), interval=3600, keep=3))
    start = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert backups.seconds_until_due(start) == 0
    for hour in range(5):
        assert backups.run_once(start + timedelta(hours=hour)) is not None
    kept = [path.name for _at, path in scheduled_files(tmp_path / "backups")]
    extension = "db.gz" if db.dialect == "sqlite" else "pgdump"
    assert kept == [f"inventory-20261201T0{h}0000Z.{extension}" for h in (5, 6, 7)]
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(
        [*kept, *(f"{name}.manifest.json" for name in kept)]
    )
    assert backups.seconds_until_due(start + timedelta(hours=4, minutes=30)) == 1800

    (tmp_path / "not-a-dir").write_text("")
    broken = ScheduledBackups(db, BackupSettings(dir=str(tmp_path / "not-a-dir"), interval=3600, keep=3))
    with caplog.at_level(logging.WARNING):
        assert broken.run_once(start) is None
    assert "scheduled backup to" in caplog.text and "failed" in caplog.text


def test_the_sync_loop_takes_the_scheduled_backup(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 2)
    with open(config_path, "a", encoding="utf-8") as config_file:
        config_file.write("backup: {dir: backups, interval: 1d, keep: 2}\n")
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry, database_url=db.url)
    assert config.backup.dir == str(tmp_path / "backups")
    loop = SyncLoop(db, config, registry, coordinate=False)
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not scheduled_files(tmp_path / "backups") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.request_stop()
        thread.join(timeout=60)
    [(_at, path)] = scheduled_files(tmp_path / "backups")
    assert manifest_path(path).is_file()


def test_backup_errors_are_clear(tmp_path: Path, sqlite_url: str) -> None:
    config_path = tmp_path / "inventory.yaml"
    config_path.write_text(f"database: {{url: '{sqlite_url}'}}\nbackup: {{keep: 0}}\n")
    bad_keep = CliRunner().invoke(cli, ["--config", str(config_path), "db", "backup", str(tmp_path / "x.db")])
    assert bad_keep.exit_code == 2 and "backup.keep" in bad_keep.output
    config_path.write_text(f"database: {{url: '{sqlite_url}'}}\n")
    no_database = _cli(config_path, "db", "backup", str(tmp_path / "x.db"))
    assert no_database.exit_code == 2 and "nothing to back up" in no_database.output
    assert not os.path.exists(make_url(sqlite_url).database or "")
    missing = _cli(config_path, "db", "restore", str(config_path))
    assert missing.exit_code == 2 and "manifest is missing" in missing.output


def test_moving_to_a_new_machine_restores_into_an_empty_database_without_force(tmp_path: Path, store: Database) -> None:
    db = store
    config_path = _setup(tmp_path, db, 4)
    _sync(db, config_path)
    before = _contents(db)
    backup = tmp_path / _backup_name(db)
    create_backup(db, backup)
    # The new machine: the same config with another database, never synced; the key and head copied (shared here).
    with ExitStack() as new_server:
        if db.dialect == "sqlite":
            new_url = f"sqlite:///{tmp_path / 'new-machine' / 'inventory.db'}"
        else:
            new_url = new_server.enter_context(ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_test")).url
        new_config = write_config(tmp_path / "new.yaml", new_url, {"lab": tmp_path / "lab.yaml"})
        result = _cli(new_config, "db", "restore", str(backup))
        assert result.exit_code == 0, result.output
        new_db = Database(new_url)
        try:
            moved = _contents(new_db)
        finally:
            new_db.dispose()
        assert {t: rows for t, rows in moved.items() if t != "audit_log"} == {
            t: rows for t, rows in before.items() if t != "audit_log"
        }
        assert moved["audit_log"][:-1] == before["audit_log"]
        code, report = _verify(new_config)
        assert (code, report["ok"]) == (0, True)
