"""The PostgreSQL runtime role (`inventory db grant ROLE --apply`): runs the service, cannot rewrite the audit log."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import POSTGRES_ADMIN_URL
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditRecord, append, verify_chain
from inventory.cli import cli
from inventory.storage.database import Database, open_database

ATTACKS = [
    "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
    "DELETE FROM audit_log WHERE seq = 1",
    "TRUNCATE audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
    "ALTER TABLE audit_log ADD COLUMN note text",
    "DROP TRIGGER audit_log_extend_head ON audit_log",
    "DROP TABLE audit_log",
    "CREATE TABLE audit_shadow (x int)",
    # Archiving is the owner's: the runtime role can neither record a checkpoint nor remove one.
    "INSERT INTO audit_checkpoints (first_seq, last_seq, entry_hash, archived_at, archived_by, archive_name, "
    "archive_sha256, mac) VALUES (1, 1, 'h', now(), 'mallory', 'f', 's', 'm')",
    "DELETE FROM audit_checkpoints",
]


@pytest.fixture
def runtime_role(postgres_url: str) -> Iterator[str]:
    role = f"inventory_rt_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        yield role
    finally:
        owner = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_the_runtime_role_appends_but_cannot_rewrite_the_log(
    postgres_url: str, runtime_role: str, tmp_path: Path
) -> None:
    owner_db = open_database(postgres_url, migrate=True)
    owner_db.dispose()
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": postgres_url}}))
    printed = CliRunner().invoke(cli, ["--config", str(config), "db", "grant", runtime_role])
    assert printed.exit_code == 0 and f'GRANT SELECT, INSERT ON audit_log TO "{runtime_role}";' in printed.output
    applied = CliRunner().invoke(cli, ["--config", str(config), "db", "grant", runtime_role, "--apply"])
    assert applied.exit_code == 0, applied.output

    runtime_url = make_url(postgres_url).set(username=runtime_role, password=None).render_as_string(hide_password=False)
    runtime = Database(runtime_url)
    attach(runtime, AuditSecrets(tmp_path / "audit.key"))
    try:
        runtime.ensure_schema()
        for i in range(3):
            append(
                runtime,
                AuditRecord(
                    event="tool_call", actor="alice", outcome="success", tool="docker.restart", target_name=f"c{i}"
                ),
            )
        for statement in ATTACKS:
            with pytest.raises(DBAPIError, match="permission denied|must be owner"):
                with runtime.engine.begin() as conn:
                    conn.execute(text(statement))
        with runtime.session() as session:
            result = verify_chain(session, audit_secrets=runtime.audit_secrets)  # type: ignore[attr-defined]
        assert result.ok and result.checked == 3
    finally:
        runtime.dispose()


def test_grant_refuses_a_role_name_that_is_not_an_identifier(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "db", "grant", 'x"; DROP TABLE hosts; --']
    )
    assert result.exit_code == 2 and "letters, digits and underscores" in result.output
