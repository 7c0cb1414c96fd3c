"""The policy in force belongs to the database: a caller's config is a draft, whatever it names.

Attacks, on SQLite and PostgreSQL: a permissive config in the caller's working directory (or
named by -c / INVENTORY_CONFIG) does not undo a denial; an edited row of applied_policies is
refused where it would decide and reported by `audit verify`; a non-admin cannot apply.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from policy_support import admin_principals, apply_policy, apply_to_database
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.audit.log import AuditFilter, list_entries
from inventory.cli import cli
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import TamperedRow
from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.principals import os_user_name
from inventory.storage.database import Database
from inventory.sync import sync_source

FREEZE = b"rules:\n  - {name: freeze, effect: deny, match: {tools: ['kubernetes.*']}}\n"
ALLOW_ALL = "rules:\n  - {name: anything, effect: allow, match: {actors: ['*']}}\n"
RESTART = ["tool", "run", "kubernetes.restart_deployment", "--target", "web-0", "--no-input", "-o", "json"]


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=1, pods=2, replicas_per_deployment=1)) as api:
        yield api


@pytest.fixture
def operator_config(cluster: MutableFakeKubernetes, db: Database, tmp_path: Path) -> Path:
    """The operator's config and a synced cluster; the operator's policy freezes every Kubernetes tool."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    raw = {
        "database": {"url": db.url},
        "sources": [{"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab"}],
    }
    path = tmp_path / "operator" / "inventory.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw))
    config = build_config(raw, path=path, registry=ConnectorRegistry.of(KubernetesConnector))
    assert sync_source(db, KubernetesConnector(config.source("lab"))).status == "success"
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def caller_directory(operator_config: Path, tmp_path: Path) -> Path:
    """Mallory's directory: an allow-all policy and a config that makes her an admin acting for alice."""
    raw = yaml.safe_load(operator_config.read_text())
    raw["principals"] = {"users": {"mallory": ["admins", "ops"]}, "act_for": {"mallory": ["alice"]}}
    directory = tmp_path / "caller"
    directory.mkdir()
    (directory / "policy.yaml").write_text(ALLOW_ALL)
    (directory / "inventory.yaml").write_text(yaml.safe_dump(raw))
    return directory


def test_a_denied_call_stays_denied_whatever_config_the_caller_names(
    db: Database,
    operator_config: Path,
    cluster: MutableFakeKubernetes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applied = apply_policy(operator_config, FREEZE)
    caller = caller_directory(operator_config, tmp_path)
    monkeypatch.chdir(caller)
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "mallory")
    # ./inventory.yaml (with ./policy.yaml beside it), -c, and INVENTORY_CONFIG: the applied policy decides.
    for result in (
        invoke(*RESTART),
        invoke("-c", str(caller / "inventory.yaml"), *RESTART),
        invoke(*RESTART, env={"INVENTORY_CONFIG": str(caller / "inventory.yaml")}),
    ):
        assert result.exit_code == 3, result.output
        assert "freeze" in result.stderr, result.output
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "is not the policy in force" in warnings[0], result.stderr
    assert cluster.mutations == []
    # The caller's act_for is not in force either.
    acting = invoke(*RESTART, "--actor", "alice")
    assert acting.exit_code == 2 and "may not act for alice" in acting.output
    # Every decision records the applied policy's hash.
    with db.session() as session:
        calls = list_entries(session, AuditFilter(event="tool_call"))
    applied_hash = yaml.safe_load(invoke("-c", str(operator_config), "policy", "show", "-o", "json").stdout)["sha256"]
    assert len(calls) == 3 and {entry["policy_hash"] for entry in calls} == {applied_hash}
    assert applied_hash == hashlib.sha256(applied.read_bytes()).hexdigest()
    # Nor may the caller, admin by their own config only, apply their policy.
    refused = invoke("policy", "apply", "policy.yaml")
    assert refused.exit_code == 3 and "may not apply a policy: only admins may" in refused.output


def test_policy_show_and_check_a_draft_against_the_applied_one(
    db: Database, operator_config: Path, tmp_path: Path
) -> None:
    config = str(operator_config)
    before = invoke("-c", config, "policy", "show")
    assert before.exit_code == 0 and "no policy was applied: the built-in defaults decide" in before.output
    path = apply_policy(operator_config, FREEZE)
    shown = invoke("-c", config, "policy", "show")
    assert shown.exit_code == 0, shown.output
    assert f"applied by {os_user_name()} at " in shown.output and "replaced the built-in defaults" in shown.output
    assert invoke("-c", config, "policy", "show", "-o", "yaml").output == path.read_text()
    same = invoke("-c", config, "policy", "check", str(path))
    assert same.exit_code == 0 and "it is the policy in force" in same.output
    draft = tmp_path / "draft.yaml"
    draft.write_text(path.read_text().replace("freeze", "thaw").replace("deny", "allow"))
    differs = invoke("-c", config, "policy", "check", str(draft))
    assert differs.exit_code == 0, differs.output
    assert "it is a draft: it differs from applied policy 1" in differs.output
    assert "rule thaw: only in the draft (allow)" in differs.output
    assert "rule freeze: only in the applied policy (deny)" in differs.output
    assert "-  - {name: freeze, effect: deny" in differs.output
    draft.write_text("rules: [{name: r, effect: maybe}]\n")
    broken = invoke("-c", config, "policy", "check", str(draft))
    assert broken.exit_code == 2 and str(draft) in broken.output and "rules[0] (r).effect" in broken.output
    # Applying it again changes nothing; a broken file is never applied.
    again = invoke("-c", config, "policy", "apply", str(path))
    assert again.exit_code == 0 and "is the policy in force already" in again.output
    assert invoke("-c", config, "policy", "apply", str(draft)).exit_code == 2
    with db.session() as session:
        applies = list_entries(session, AuditFilter(event="policy"))
    assert [(e["outcome"], e["details"]["previous_sha256"][:8]) for e in applies] == [("applied", "e3b0c442")]


def test_only_an_admin_applies_and_the_first_apply_is_the_key_owners(
    db: Database, operator_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = str(operator_config)
    policy = operator_config.parent / "policy.yaml"
    me = os_user_name()
    # Before any policy: only the owner of the audit key or of the database may apply one.
    policy.write_text(yaml.safe_dump({"principals": admin_principals()}))
    from inventory.audit.keys import secrets_for

    key_file = secrets_for(db).key_file
    secrets_for(db).key()
    owned = [key_file] + ([Path(str(db.engine.url.database))] if db.dialect == "sqlite" else [])
    owner = key_file.stat().st_uid
    for path in owned:
        os.chown(path, owner + 1, -1)  # root (the test containers) may give them away; anyone else may not
    not_owner = invoke("-c", config, "policy", "apply", str(policy))
    for path in owned:
        os.chown(path, owner, -1)
    if db.dialect == "sqlite":  # (on PostgreSQL the tests connect as a superuser, who owns every database)
        assert not_owner.exit_code == 3 and "only the owner of the audit key or of the database" in not_owner.output
    else:
        assert not_owner.exit_code == 0, not_owner.output
    # A policy that would leave its applier no admin is refused: no one could apply the next one.
    policy.write_text(FREEZE.decode())
    lockout = invoke("-c", config, "policy", "apply", str(policy))
    assert lockout.exit_code == 2 and f"under this policy {me} would not be an admin" in lockout.output
    apply_policy(operator_config, FREEZE)
    monkeypatch.setattr("inventory.principals.os_user_name", lambda: "mallory")
    policy.write_text(ALLOW_ALL + yaml.safe_dump({"principals": {"users": {"mallory": ["admins"]}}}))
    refused = invoke("-c", config, "policy", "apply", str(policy))
    assert refused.exit_code == 3, refused.output
    assert "mallory may not apply a policy: only admins may (principals.admins of the applied policy" in refused.output
    # Re-applying the policy in force is a no-op for anyone (a deployment's migrate step does it at every upgrade):
    # nothing is applied, nothing is denied, nothing is recorded.
    policy.write_text(invoke("-c", config, "policy", "show", "-o", "yaml").output)
    same = invoke("-c", config, "policy", "apply", str(policy))
    assert same.exit_code == 0 and "is the policy in force already" in same.output and "nothing applied" in same.output
    with db.session() as session:
        applies = list_entries(session, AuditFilter(event="policy"))
    outcomes = [(e["actor"], e["outcome"]) for e in applies]
    assert outcomes[-2:] == [(me, "applied"), ("mallory", "denied")]
    assert json.loads(invoke("-c", config, "policy", "show", "-o", "json").stdout)["applied_by"] == me


def _edit_applied_row(db: Database, statement: str, **params: str) -> None:
    """As the database's owner: the triggers refuse the edit, so they are bypassed first (what a file owner or a
    superuser can do, and the runtime role cannot: tests/test_db_roles.py)."""
    with pytest.raises(DBAPIError, match="append-only"):
        with db.engine.begin() as conn:
            conn.execute(text(statement), params)
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE applied_policies DISABLE TRIGGER USER"))
            conn.execute(text(statement), params)
            conn.execute(text("ALTER TABLE applied_policies ENABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER applied_policies_no_update"))
            conn.execute(text(statement), params)


def test_an_edited_applied_policy_decides_nothing_and_audit_verify_reports_it(
    db: Database, operator_config: Path, cluster: MutableFakeKubernetes
) -> None:
    config = str(operator_config)
    apply_policy(operator_config, FREEZE)
    assert invoke("-c", config, "audit", "verify").exit_code == 0
    # Swap in an allow-all text with its own sha256: only the mac (under the key) tells.
    forged = ALLOW_ALL + "principals: " + json.dumps(admin_principals()) + "\n"
    digest = hashlib.sha256(forged.encode()).hexdigest()
    _edit_applied_row(db, "UPDATE applied_policies SET text = :t, sha256 = :h WHERE id = 1", t=forged, h=digest)
    call = invoke("-c", config, *RESTART)
    assert call.exit_code == 3 and "applied policy 1 does not match its mac" in call.output, call.output
    assert cluster.mutations == []
    # The library refuses it too, for a server's runner.
    with pytest.raises(TamperedRow, match="applied policy 1"):
        ToolRunner.in_force(db, ToolRegistry.discover())
    verified = invoke("-c", config, "audit", "verify")
    assert verified.exit_code == 1 and "FAILED: applied policy 1 does not match its mac" in verified.output
    as_json = invoke("-c", config, "audit", "verify", "-o", "json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["applied_policies"]


def test_a_long_running_runner_follows_the_applied_policy(db: Database, operator_config: Path) -> None:
    """The server's runner is built once: a policy applied later decides its next call."""
    runner = ToolRunner.in_force(db, ToolRegistry.discover())
    first = runner.evaluate("kubernetes.restart_deployment", "web-0", {}, "bob")
    assert str(first.decision.effect) == "allow" and first.policy.label == "<built-in defaults>"
    apply_to_database(db, FREEZE)
    second = runner.evaluate("kubernetes.restart_deployment", "web-0", {}, "bob")
    assert str(second.decision.effect) == "deny" and second.policy.label.startswith("applied policy 1")


def test_the_servers_tool_api_is_decided_by_the_policy_applied_while_it_runs(
    db: Database, operator_config: Path, cluster: MutableFakeKubernetes
) -> None:
    """`inventory serve` builds its runner once (ToolRunner.in_force): an apply through the CLI decides its next
    call, and the call's audit entry carries that policy's hash."""
    from fastapi.testclient import TestClient
    from server_support import make_tokens

    from inventory.server import create_app

    raw = yaml.safe_load(operator_config.read_text())
    config = build_config(raw, path=operator_config, registry=ConnectorRegistry.of(KubernetesConnector))
    runner = ToolRunner.in_force(db, ToolRegistry.discover(), source_config=config.source)
    tokens = make_tokens(db)
    call = {"json": {"target": "web-0"}, "headers": tokens.header("operator")}
    with TestClient(create_app(db, runner=runner, mcp=False, web=False)) as client:
        ran = client.post("/api/v1/tools/kubernetes.restart_deployment/calls", **call)  # type: ignore[arg-type]
        assert ran.status_code == 200 and ran.json()["policy"] == "<built-in defaults>", ran.text
        path = apply_policy(operator_config, FREEZE)
        denied = client.post("/api/v1/tools/kubernetes.restart_deployment/calls", **call)  # type: ignore[arg-type]
        assert denied.status_code == 403 and denied.json()["error"]["message"] == "denied by freeze", denied.text
    assert len(cluster.mutations) == 1
    with db.session() as session:
        last = list_entries(session, AuditFilter(event="tool_call"))[-1]
    assert (last["outcome"], last["policy_hash"]) == ("denied", hashlib.sha256(path.read_bytes()).hexdigest())
