"""One audit key and head per database, named by the database's id (not one per OS user).

Two demo databases of one OS user each keep their own head: a tail cut off one is reported
for that one only. The per-user key of older versions is adopted by the database it signed;
a database signed by a key that cannot be found gets no new key but a clear error.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml
from click.testing import CliRunner, Result
from sqlalchemy import text
from sync_support import child_env, run_inventory

from inventory.audit.identity import database_id
from inventory.audit.keys import AuditSecrets, attach, legacy_key_path
from inventory.audit.log import AuditRecord, append
from inventory.cli import cli
from inventory.storage.database import Database, open_database
from inventory.storage.migrate import upgrade


def test_two_demo_databases_each_keep_their_own_key_and_head(tmp_path: Path) -> None:
    data = tmp_path / "home" / ".local" / "share"
    env = child_env(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(data), KUBECONFIG="", DOCKER_HOST="")
    for name in ("first", "second"):
        made = run_inventory("demo", "--dir", name, cwd=tmp_path, env=env, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
    keys = sorted((data / "inventory" / "audit").glob("*.key"))
    assert len(keys) == 2 and not (data / "inventory" / "audit.key").exists()
    for name in ("first", "second"):
        verified = run_inventory("-c", f"{name}/inventory.yaml", "audit", "verify", cwd=tmp_path, env=env)
        assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stdout + verified.stderr

    # Cut the first database's tail as its file's owner can: triggers dropped, the database's head set back to
    # the entry now last (its mac is that entry's). Only the head file, kept outside the database, tells.
    conn = sqlite3.connect(tmp_path / "first" / "inventory.db")
    with conn:
        for trigger in ("audit_log_no_delete", "audit_head_forward_only"):
            conn.execute(f"DROP TRIGGER {trigger}")
        last = conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (last - 2,))
        seq, entry_hash, mac = conn.execute(
            "SELECT seq, entry_hash, mac FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        conn.execute("UPDATE audit_head SET seq = ?, entry_hash = ?, mac = ?", (seq, entry_hash, mac))
    conn.close()
    first = run_inventory("-c", "first/inventory.yaml", "audit", "verify", cwd=tmp_path, env=env)
    assert first.returncode == 1 and "FAILED" in first.stderr, first.stdout + first.stderr
    assert f"entry {last} (the head recorded in" in first.stderr and "were removed" in first.stderr, first.stderr
    second = run_inventory("-c", "second/inventory.yaml", "audit", "verify", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stdout + second.stderr


def _older_version_database(url: str, key: AuditSecrets, entries: int) -> None:
    """A database as versions before 0012 left it: signed with the one per-user key, its head file beside it."""
    db = Database(url)
    attach(db, key)
    try:
        upgrade(db, "0011_fixed_search_path")
        for i in range(entries):
            append(
                db,
                AuditRecord(
                    event="tool_call", actor="alice", outcome="success", tool="docker.restart", target_name=f"c{i}"
                ),
            )
    finally:
        db.dispose()


def _invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_the_per_user_key_of_older_versions_is_adopted_by_the_database_it_signed(
    database_url: str, tmp_path: Path
) -> None:
    legacy = AuditSecrets(legacy_key_path())
    _older_version_database(database_url, legacy, 3)
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
    assert _invoke(config, "db", "upgrade").exit_code == 0
    verified = _invoke(config, "audit", "verify")
    assert verified.exit_code == 0 and "ok: 3 entries" in verified.output, verified.output
    db = open_database(database_url)
    try:
        identity = database_id(db)
    finally:
        db.dispose()
    assert identity is not None
    adopted = legacy.key_file.parent / "audit" / f"{identity}.key"
    assert adopted.read_bytes() == legacy.key_file.read_bytes() and (adopted.stat().st_mode & 0o777) == 0o600
    assert (adopted.parent / f"{identity}.head").read_text() == legacy.head_file.read_text()
    # From now on it appends and verifies under its own name.
    assert _invoke(config, "tokens", "list").exit_code == 0
    applied = _invoke(config, "policy", "show")
    assert applied.exit_code == 0, applied.output


def test_a_database_signed_by_a_key_not_found_gets_no_new_key(database_url: str, tmp_path: Path) -> None:
    elsewhere = AuditSecrets(tmp_path / "elsewhere" / "audit.key")
    _older_version_database(database_url, elsewhere, 2)
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": database_url}}))
    assert _invoke(config, "db", "upgrade").exit_code == 0
    refused = _invoke(config, "audit", "verify")
    assert refused.exit_code == 2, refused.output
    assert "holds audit entries signed by a key that is neither at" in refused.output
    assert "audit.key_file" in refused.output and "Traceback" not in refused.output
    assert list((legacy_key_path().parent / "audit").glob("*.key")) == []
    # Named in the config, the key verifies it.
    config.write_text(
        yaml.safe_dump({"database": {"url": database_url}, "audit": {"key_file": str(elsewhere.key_file)}})
    )
    assert _invoke(config, "audit", "verify").exit_code == 0


def test_the_identity_never_changes(database_url: str) -> None:
    db = open_database(database_url, migrate=True)
    try:
        before = database_id(db)
        assert before and len(before) == 32
        for statement in ("UPDATE database_identity SET database_id = 'x'", "DELETE FROM database_identity"):
            try:
                with db.engine.begin() as conn:
                    conn.execute(text(statement))
            except Exception as exc:
                assert "database_identity never changes" in str(exc)
            else:
                raise AssertionError(f"{statement} was not refused")
        assert database_id(db) == before
    finally:
        db.dispose()


def test_a_backup_restores_into_a_new_database_under_its_own_key(sqlite_url: str, tmp_path: Path) -> None:
    """The manifest names the database's id: the restore picks that key, not the new target's."""
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": sqlite_url}}))
    assert _invoke(config, "policy", "apply", _policy_file(tmp_path)).exit_code == 0
    backup = tmp_path / "backup.db.gz"
    taken = _invoke(config, "db", "backup", str(backup))
    assert taken.exit_code == 0, taken.output
    assert len(yaml.safe_load(backup.with_name(backup.name + ".manifest.json").read_text())["database_id"]) == 32
    elsewhere = tmp_path / "new" / "inventory.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'new' / 'inventory.db'}"}}))
    restored = _invoke(elsewhere, "db", "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    verified = _invoke(elsewhere, "audit", "verify")
    assert verified.exit_code == 0 and verified.output.startswith("ok: "), verified.output
    assert _invoke(elsewhere, "policy", "show").output.startswith("policy 1 in force")


def _policy_file(tmp_path: Path) -> str:
    from policy_support import admin_principals

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"principals": admin_principals()}))
    return str(path)
