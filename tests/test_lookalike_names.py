"""Principal names that look alike are refused: a Cyrillic a in alice, bidi and invisible characters."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from policy_support import apply_policy

from inventory.audit.keys import AuditSecrets, attach
from inventory.cli import cli
from inventory.config import build_config
from inventory.errors import ConfigError, UsageError
from inventory.lookalikes import skeleton
from inventory.policy.rules import load_policy
from inventory.principals import normalise_name, os_user_name
from inventory.storage.database import Database, open_database

CYRILLIC_ALICE = "\u0430lice"  # the first letter is U+0430 CYRILLIC SMALL LETTER A


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("alice", CYRILLIC_ALICE),
        ("ALICE", "\u0391LICE"),  # Greek capital alpha
        ("alice", "\uff41lice"),  # fullwidth a
        ("alice", "aIice"),  # capital I for l
        ("ops-bot", "\u043eps-b\u043et"),  # Cyrillic o twice
        ("agent1", "agentl"),
    ],
)
def test_lookalikes_share_a_skeleton(one: str, other: str) -> None:
    assert skeleton(one) == skeleton(other)


def test_different_names_keep_different_skeletons() -> None:
    assert len({skeleton(name) for name in ("alice", "alicia", "bob", "jos\u00e9", "jose", "agent-1", "agent-2")}) == 7


@pytest.mark.parametrize(
    "name",
    [
        "ali\u202ece",  # RIGHT-TO-LEFT OVERRIDE
        "ali\u2066ce",  # LEFT-TO-RIGHT ISOLATE
        "al\u200bice",  # ZERO WIDTH SPACE
        "alice\u3164",  # HANGUL FILLER (printable to Python, shows as nothing)
        "alice\ufe0f",  # VARIATION SELECTOR-16
        "ali\x1bce",
    ],
)
def test_names_with_control_bidi_or_invisible_characters_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="only printable characters"):
        normalise_name(name)


def test_config_principals_refuse_lookalikes_and_patterns(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    with pytest.raises(ConfigError) as lookalike:
        build_config({"principals": {"users": {"alice": ["ops"], CYRILLIC_ALICE: ["admins"]}}}, path=path)
    assert str(path) in str(lookalike.value) and "principals" in str(lookalike.value)
    assert "look alike" in str(lookalike.value) and "\\u0430lice" in str(lookalike.value)
    with pytest.raises(ConfigError, match=r"act_for\.runner: 'agent-\*' is a pattern"):
        build_config({"principals": {"act_for": {"runner": ["agent-*"]}}}, path=path)


def test_policy_refuses_lookalike_members_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        yaml.safe_dump(
            {"groups": {"ops": ["alice"], "approvers": [CYRILLIC_ALICE]}}, allow_unicode=True, sort_keys=False
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as refused:
        load_policy(path)
    assert str(path) in str(refused.value) and "groups.approvers" in str(refused.value)


@pytest.fixture
def config(sqlite_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "inventory.yaml"
    keys = tmp_path / "keys" / "audit.key"
    document = {
        "database": {"url": sqlite_url},
        "audit": {"key_file": str(keys)},
    }
    path.write_text(yaml.safe_dump(document))
    db = open_database(sqlite_url, migrate=True)
    attach(db, AuditSecrets(keys))
    db.dispose()
    # The OS user running the tests administers tokens (only admins may mint them), as the applied policy says.
    apply_policy(path, {"principals": {"act_for": {"runner": ["deploy-bot"]}, "users": {os_user_name(): ["admins"]}}})
    return path


def invoke(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_tokens_create_refuses_a_name_that_looks_like_another(config: Path, sqlite_url: str) -> None:
    assert invoke(config, "tokens", "create", "alice").exit_code == 0
    refused = invoke(config, "tokens", "create", CYRILLIC_ALICE)
    assert refused.exit_code == 2, refused.output
    assert "look alike" in refused.stderr and "\\u0430lice" in refused.stderr and "Traceback" not in refused.output
    # A revoked token's name stays taken for look-alikes: its entries are in the audit log.
    assert invoke(config, "tokens", "revoke", "alice").exit_code == 0
    assert invoke(config, "tokens", "create", "AIice").exit_code == 2
    # Names the applied policy gives (whom an OS user may act for) are protected too.
    assert invoke(config, "tokens", "create", "deploy-bot").exit_code == 0
    impostor = invoke(config, "tokens", "create", "dep\u0406oy-b\u043et")
    assert impostor.exit_code == 2 and "deploy-bot" in impostor.stderr
    # The same name in another case is the same principal, not a look-alike.
    assert invoke(config, "tokens", "create", "Alice").exit_code == 0
    db = Database(sqlite_url)
    try:
        with db.session() as session:
            from sqlalchemy import select

            from inventory.audit.token_models import ApiToken

            names = sorted(session.execute(select(ApiToken.name)).scalars())
    finally:
        db.dispose()
    assert names == ["Alice", "alice", "deploy-bot"]


def test_tokens_create_refuses_bidi_and_invisible_characters(config: Path) -> None:
    for name in ("adm\u202enim", "admin\u200d", "admin\u3164"):
        refused = invoke(config, "tokens", "create", name)
        assert refused.exit_code == 2 and "only printable characters" in refused.stderr, refused.output
