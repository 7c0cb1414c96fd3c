"""The PostgreSQL runtime role (`inventory db grant ROLE --apply`): runs the service (sync, tool calls, approvals,
tokens), cannot rewrite the audit log, the decision state or the schema."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import POSTGRES_ADMIN_URL
from policy_support import apply_policy
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditRecord, append, verify_chain
from inventory.cli import cli
from inventory.storage.database import Database, open_database
from inventory.tokens import authenticate

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
    # The head every replica checks: moved by the owner's trigger only, never back, never away.
    "UPDATE audit_head SET seq = 1",
    "DELETE FROM audit_head",
    "TRUNCATE audit_head",
    "ALTER TABLE audit_head DISABLE TRIGGER USER",
    "DROP TRIGGER audit_log_advance_head ON audit_log",
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
    assert (
        printed.exit_code == 0
        and f'GRANT SELECT, INSERT ON applied_policies, audit_log, token_revocations TO "{runtime_role}";'
        in printed.output
    )
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


# What the runtime role may not do, though it settles approvals and revokes tokens: rewrite what decides.
DECISION_ATTACKS = [
    "UPDATE approvals SET requester = 'carol'",
    "UPDATE approvals SET tool = 'proxmox.delete', arguments = '{}'",
    "UPDATE api_tokens SET groups = '[\"admins\"]'",
    "UPDATE api_tokens SET name = 'carol', name_key = 'carol'",
    "DELETE FROM approvals",
    "DELETE FROM api_tokens",
    "DELETE FROM token_revocations",
    "UPDATE token_revocations SET token_id = 999",
    "DROP TABLE hosts",
    "ALTER TABLE approvals DROP COLUMN mac",
    "DROP TRIGGER token_revocations_no_update_delete ON token_revocations",
    # The policy in force and the database's identity (which names its audit key).
    "UPDATE applied_policies SET text = 'rules: []'",
    "DELETE FROM applied_policies",
    "TRUNCATE applied_policies",
    "UPDATE database_identity SET database_id = 'another'",
    "DROP TRIGGER applied_policies_no_update_delete ON applied_policies",
]


def test_the_runtime_role_syncs_calls_tools_settles_and_revokes_but_rewrites_nothing(
    postgres_url: str, runtime_role: str, tmp_path: Path
) -> None:
    from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode
    from connectors.proxmox.fake.mutations import MutableFakeProxmox
    from inventory.principals import os_user_name

    def run(config: Path, *args: str) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), *args])

    owner_config = tmp_path / "owner.yaml"
    owner_config.write_text(yaml.safe_dump({"database": {"url": postgres_url}}))
    assert run(owner_config, "db", "upgrade").exit_code == 0
    applied = run(owner_config, "db", "grant", runtime_role, "--apply")
    assert applied.exit_code == 0, applied.output

    cluster = FakeCluster(name="lab", nodes=[FakeNode("pve1", "10.0.0.1")])
    cluster.guests = [FakeGuest(100, "qemu", "web", "pve1"), FakeGuest(200, "lxc", "cache", "pve1", status="stopped")]
    runtime_url = make_url(postgres_url).set(username=runtime_role, password=None).render_as_string(hide_password=False)
    with MutableFakeProxmox(cluster) as pve:
        document = {
            "database": {"url": runtime_url},
            "audit": {"key_file": str(tmp_path / "audit.key")},
            "sources": [
                {"type": "static", "name": "lab", "hosts": [{"id": "nas1", "name": "nas", "kind": "nas"}]},
                pve.source("pve", timeout=5, retries=0),
            ],
        }
        config = tmp_path / "inventory.yaml"
        config.write_text(yaml.safe_dump(document))
        # Applied as the runtime role: INSERT on applied_policies is all it takes.
        apply_policy(config, {"principals": {"users": {os_user_name(): ["admins"]}}})
        for _ in range(2):  # the first run inserts, the second updates
            synced = run(config, "sync", "--once")
            assert synced.exit_code == 0, synced.output
        started = run(config, "tool", "run", "proxmox.start", "--target", "cache", "-o", "json")
        assert started.exit_code == 0, started.output
        assert [m.path for m in pve.mutations] == ["/nodes/pve1/lxc/200/status/start"]
        requested = run(config, "tool", "run", "proxmox.delete", "--target", "web", "-o", "json")
        assert requested.exit_code == 4 and '"outcome": "pending"' in requested.output, requested.output  # waits
        withdrawn = run(config, "approvals", "reject", "1", "--reason", "withdrawn")
        assert withdrawn.exit_code == 0, withdrawn.output
    bot = run(config, "tokens", "create", "bot", "--group", "viewers").stdout.splitlines()[-1]
    viewer = run(config, "tokens", "create", "viewer", "--group", "viewers").stdout.splitlines()[-1]
    revoked = run(config, "tokens", "revoke", "bot")
    assert revoked.exit_code == 0, revoked.output

    runtime = Database(runtime_url)
    attach(runtime, AuditSecrets(tmp_path / "audit.key"))
    try:
        # What the server does at every request, as the runtime role.
        assert authenticate(runtime, bot) is None
        assert getattr(authenticate(runtime, viewer), "groups", None) == frozenset({"viewers"})
        for statement in [*ATTACKS, *DECISION_ATTACKS]:
            with pytest.raises(DBAPIError, match="permission denied|must be owner"):
                with runtime.engine.begin() as conn:
                    conn.execute(text(statement))
    finally:
        runtime.dispose()
    verified = run(config, "audit", "verify")
    assert verified.exit_code == 0, verified.output
