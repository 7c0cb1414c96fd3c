"""API tokens on both engines: shown once, stored as a keyed hash, authenticate to a principal with groups,
revocable, expiring, audited, never logged."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import text, update

from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditFilter, list_entries
from inventory.audit.token_models import ApiToken
from inventory.cli import cli
from inventory.principals import PrincipalKind, os_user_name
from inventory.storage.database import Database
from inventory.timeutil import utcnow
from inventory.tokens import TOKEN_PREFIX, authenticate


@pytest.fixture
def config(db: Database, tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump({"database": {"url": db.url}, "audit": {"key_file": str(tmp_path / "keys" / "audit.key")}})
    )
    attach(db, AuditSecrets(tmp_path / "keys" / "audit.key"))
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
