"""API tokens on both engines: shown once, stored as a keyed hash, authenticate to a principal with groups,
revocable, expiring, audited, never logged; only admins create and revoke them."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from policy_support import admin_principals, apply_policy
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditFilter, list_entries
from inventory.audit.models import TokenRevocation
from inventory.audit.token_models import ApiToken
from inventory.cli import cli
from inventory.principals import PrincipalKind, os_user_name
from inventory.storage.database import Database
from inventory.timeutil import utcnow
from inventory.tokens import TAMPERED, TOKEN_PREFIX, authenticate, list_tokens


@pytest.fixture
def config(db: Database, tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    document = {
        "database": {"url": db.url},
        "audit": {"key_file": str(tmp_path / "keys" / "audit.key")},
    }
    path.write_text(yaml.safe_dump(document))
    attach(db, AuditSecrets(tmp_path / "keys" / "audit.key"))
    # The OS user running the tests is an admin (the default principals.admins: the group admins), as the
    # applied policy says (a config's principals: decide nothing).
    apply_policy(path, {"principals": admin_principals()})
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-vv", "--config", str(config), *args])


def test_a_token_is_shown_once_stored_as_a_hash_and_authenticates(
    db: Database, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = invoke(config, "tokens", "create", "ci-bot", "--group", "agents", "--group", "Readers")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    principal = authenticate(db, token)
    assert principal is not None and (principal.name, principal.kind, principal.groups) == (
        "ci-bot",
        PrincipalKind.TOKEN,
        frozenset({"agents", "Readers"}),
    )
    assert authenticate(db, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert authenticate(db, "") is None and authenticate(db, None) is None
    listed = invoke(config, "tokens", "list", "-o", "json")
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["state"], row["created_by"]) == ("ci-bot", "active", os_user_name())
    # The token is nowhere: not in the database (any table), the audit log, the listing or a log line.
    with db.engine.connect() as conn:
        dumped = [str(r) for table in ("api_tokens", "audit_log") for r in conn.execute(text(f"SELECT * FROM {table}"))]
    assert token not in " ".join(dumped) and token not in listed.output and token not in caplog.text
    with db.session() as session:
        (entry,) = list_entries(session, AuditFilter(event="token"))
    assert (entry["outcome"], entry["target_name"], entry["actor"], entry["details"]["groups"]) == (
        "created",
        "ci-bot",
        os_user_name(),
        ["Readers", "agents"],
    )


def test_revoked_and_expired_tokens_authenticate_no_one(db: Database, config: Path) -> None:
    first = invoke(config, "tokens", "create", "agent-1").stdout.strip().splitlines()[-1]
    again = invoke(config, "tokens", "create", "Agent-1")
    assert again.exit_code == 2 and "a live token named Agent-1 exists already" in again.output
    revoked = invoke(config, "tokens", "revoke", "AGENT-1")
    assert revoked.exit_code == 0, revoked.output
    assert authenticate(db, first) is None
    assert invoke(config, "tokens", "revoke", "agent-1").exit_code == 1
    second = invoke(config, "tokens", "create", "agent-1", "--expires", "90d").stdout.strip().splitlines()[-1]
    assert authenticate(db, second) is not None
    with db.write_session() as session:
        session.execute(
            update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert authenticate(db, second) is None
    with db.session() as session:
        assert [e["outcome"] for e in list_entries(session, AuditFilter(event="token"))] == [
            "created",
            "revoked",
            "created",
        ]


@pytest.mark.parametrize("name", ["bad name", "x" * 65, "tab\there", ""])
def test_a_bad_token_name_or_lifetime_is_a_usage_error(config: Path, name: str) -> None:
    result = invoke(config, "tokens", "create", name)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert invoke(config, "tokens", "create", "ok", "--expires", "soon").exit_code == 2


def test_only_an_admin_creates_or_revokes_a_token_and_the_audit_log_shows_who_tried(
    db: Database, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another OS user on the machine, with the same config and database, is not an admin.
    me = os_user_name()
    invoke(config, "tokens", "create", "alice", "--group", "approvers")
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "mallory")
    minted = invoke(config, "tokens", "create", "alice-2", "--group", "approvers", "--group", "admins")
    assert minted.exit_code == 3, minted.output
    assert "mallory may not create a token (for alice-2): only admins may" in minted.output
    assert "principals.admins" in minted.output and "Traceback" not in minted.output
    revoked = invoke(config, "tokens", "revoke", "alice")
    assert revoked.exit_code == 3 and "mallory may not revoke a token (of alice)" in revoked.output
    assert [info.name for info in list_tokens(db)] == ["alice"] and list_tokens(db)[0].state == "active"
    # A policy group counts as well as principals.users, and principals.admins may name anyone: once an admin
    # applied the policy that says so.
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: me)
    apply_policy(config, {"groups": {"admins": ["mallory"]}, "principals": admin_principals()})
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "mallory")
    assert invoke(config, "tokens", "create", "bot", "--group", "viewers").exit_code == 0
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: me)
    apply_policy(config, {"principals": admin_principals(admins=["carol", me])})
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "mallory")
    assert invoke(config, "tokens", "revoke", "bot").exit_code == 3
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "Carol")
    assert invoke(config, "tokens", "revoke", "bot").exit_code == 0
    with db.session() as session:
        entries = list_entries(session, AuditFilter(event="token"))
    assert [(e["actor"], e["outcome"], e["target_name"]) for e in entries] == [
        (me, "created", "alice"),
        ("mallory", "denied", "alice-2"),
        ("mallory", "denied", "alice"),
        ("mallory", "created", "bot"),
        ("mallory", "denied", "bot"),
        ("Carol", "revoked", "bot"),
    ]
    assert entries[1]["details"]["groups"] == ["admins", "approvers"] and "only admins" in entries[1]["error"]
    assert entries[5]["details"]["groups"] == ["viewers"]
    with db.engine.connect() as conn:
        dumped = " ".join(str(r) for r in conn.execute(text("SELECT * FROM audit_log")))
    assert TOKEN_PREFIX not in dumped


def test_an_edited_token_row_authenticates_no_one_and_a_revocation_is_for_good(db: Database, config: Path) -> None:
    tokens = {
        name: invoke(config, "tokens", "create", name, "--group", "viewers").stdout.strip().splitlines()[-1]
        for name in ("ann", "bob", "cy", "dee", "eve")
    }
    assert all(authenticate(db, token) is not None for token in tokens.values())
    with db.session() as session:
        eve_live = session.execute(
            select(ApiToken.revoked_at, ApiToken.revoked_by, ApiToken.mac).where(ApiToken.name == "eve")
        ).one()
    assert invoke(config, "tokens", "revoke", "dee").exit_code == 0
    assert invoke(config, "tokens", "revoke", "eve").exit_code == 0
    edits: dict[str, dict[str, Any]] = {
        "ann": {"groups": ["admins"]},  # a viewer made admin
        "bob": {"name": "carol", "name_key": "carol"},  # renamed after an approver
        "cy": {"created_by": "an-admin-who-never-did"},
        "dee": {"revoked_at": None, "revoked_by": None},  # un-revoked
        # The whole row as it was while the token was live: its old mac verifies again.
        "eve": {"revoked_at": eve_live[0], "revoked_by": eve_live[1], "mac": eve_live[2]},
    }
    for name, values in edits.items():
        with db.write_session() as session:
            session.execute(update(ApiToken).where(ApiToken.name_key == name).values(**values))
    for name, token in tokens.items():
        assert authenticate(db, token) is None, name
    states = {info.name: info.state for info in list_tokens(db)}
    assert states == {"ann": TAMPERED, "carol": TAMPERED, "cy": TAMPERED, "dee": TAMPERED, "eve": "revoked"}
    # eve's revocation is a row of token_revocations, which no one edits or removes.
    with pytest.raises(DBAPIError, match="append-only"):
        with db.write_session() as session:
            session.execute(delete(TokenRevocation))
    with pytest.raises(DBAPIError, match="append-only"):
        with db.write_session() as session:
            session.execute(update(TokenRevocation).values(token_id=999))
    assert authenticate(db, tokens["eve"]) is None


def test_tokens_from_before_row_macs_are_signed_once_by_the_upgrade_that_adds_them(
    database_url: str, tmp_path: Path
) -> None:
    from inventory.storage.migrate import upgrade
    from inventory.tokens import _hash

    key_file = tmp_path / "keys" / "audit.key"
    db = Database(database_url)
    attach(db, AuditSecrets(key_file))
    try:
        upgrade(db, "0005_machines")
        tokens = {name: f"{TOKEN_PREFIX}{name}-{'x' * 40}" for name in ("old", "older")}
        with db.engine.begin() as conn:  # as 0005 stored them: no mac column yet
            for name, token in tokens.items():
                conn.execute(
                    insert(ApiToken).values(
                        name=name,
                        name_key=name,
                        token_hash=_hash(db.audit_secrets, token),  # type: ignore[attr-defined]
                        groups=["viewers"],
                        created_at=utcnow(),
                        created_by="root",
                    )
                )
        config = tmp_path / "inventory.yaml"
        config.write_text(yaml.safe_dump({"database": {"url": database_url}, "audit": {"key_file": str(key_file)}}))
        upgraded = invoke(config, "db", "upgrade")
        assert upgraded.exit_code == 0 and "signed 2 token row(s)" in upgraded.output, upgraded.output
        assert all(authenticate(db, token) is not None for token in tokens.values())
        # A mac removed later is never signed again: the row stays refused.
        with db.write_session() as session:
            session.execute(update(ApiToken).where(ApiToken.name == "older").values(mac=None, groups=["admins"]))
        again = invoke(config, "db", "upgrade")
        assert again.exit_code == 0 and "signed" not in again.output, again.output
        assert authenticate(db, tokens["older"]) is None and authenticate(db, tokens["old"]) is not None
    finally:
        db.dispose()
