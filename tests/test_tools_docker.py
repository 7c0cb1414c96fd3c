"""Docker tools run for real against a private dockerd: restart, stop, remove (with approval), failures, secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from docker_engine_support import busybox_engine, engine_client, run_busybox

from connectors.docker.connector import DockerConnector
from inventory.audit.log import AuditFilter, list_entries, verify_chain
from inventory.cli import cli
from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import TargetChanged, UsageError
from inventory.policy.approvals import approve, list_approvals, reject
from inventory.policy.execute import PolicyDenied, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy, parse_policy
from inventory.storage.database import Database
from inventory.sync import sync_source
from inventory.testing.docker_engine import (
    DockerEngine,
)

pytestmark = pytest.mark.docker
CANARY = "canary-7Hq2-tool-secret"


@pytest.fixture(scope="module")
def engine() -> Iterator[DockerEngine]:
    yield from busybox_engine()


@pytest.fixture
def containers(engine: DockerEngine) -> Iterator[dict[str, str]]:
    """Two running busybox containers, web and worker; everything is removed afterwards."""
    with engine_client(engine) as client:
        yield {name: run_busybox(client, name) for name in ("web", "worker")}


@pytest.fixture
def setup(
    engine: DockerEngine, containers: dict[str, str], db: Database, tmp_path: Path
) -> tuple[Config, Database, Path]:
    raw = {"database": {"url": db.url}, "sources": [{"type": "docker", "name": "engine", "url": engine.url}]}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = build_config(raw, path=path, registry=ConnectorRegistry.discover())
    outcome = sync_source(db, DockerConnector(config.source("engine")))
    assert outcome.status == "success", outcome.error
    return config, db, path


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Tool runs do not depend on the engine: SQLite keeps this module fast (test_approvals runs on both)."""
    return request.getfixturevalue("sqlite_url")


def runner_for(config: Config, db: Database) -> ToolRunner:
    return ToolRunner(db, builtin_policy(), ToolRegistry.discover(), source_config=config.source)


def state(engine: DockerEngine, container_id: str) -> dict[str, Any] | None:
    client = engine.client()
    try:
        return client.inspect_container(container_id)["State"]
    except Exception:
        return None
    finally:
        client.close()


def entries(db: Database, **filters: Any) -> list[dict[str, Any]]:
    """Audit entries of tool calls and approvals (the setup's sync summary left out)."""
    with db.session() as session:
        # Outcomes only: each executed call's write-ahead intent ("started") is checked in tests/test_write_ahead.py.
        return [
            e
            for e in list_entries(session, AuditFilter(**filters))
            if e["event"] != "sync" and e["outcome"] != "started"
        ]


def test_restart_and_stop_run_against_the_engine(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    runner = runner_for(config, db)
    before = state(engine, containers["web"])
    assert before is not None and before["Running"]

    restarted = runner.run("docker.restart", "web", {"timeout": "1"}, "alice")
    assert restarted.outcome == "success"
    after = state(engine, containers["web"])
    assert after is not None and after["Running"] and after["StartedAt"] != before["StartedAt"]

    stopped = runner.run("docker.stop", "engine/worker", {"timeout": "0"}, "alice")
    assert stopped.outcome == "success"
    assert state(engine, containers["worker"])["Running"] is False  # type: ignore[index]
    assert state(engine, containers["web"])["Running"] is True  # type: ignore[index]

    logged = entries(db, event="tool_call")
    assert [(e["tool"], e["outcome"], e["decision"], e["tool_class"]) for e in logged] == [
        ("docker.restart", "success", "allow", "SAFE_MUTATE"),
        ("docker.stop", "success", "allow", "SAFE_MUTATE"),
    ]
    assert logged[0]["target"] == f"workload:engine/container/{containers['web']}" and logged[0]["arguments"] == {
        "timeout": 1
    }
    assert logged[1]["policy_hash"] == builtin_policy().sha256 and logged[1]["duration_ms"] > 0


def test_remove_waits_for_approval_by_someone_else(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    runner = runner_for(config, db)
    pending = runner.run("docker.remove", "web", {"force": "true"}, "alice")
    assert pending.outcome == "pending" and pending.approval_id is not None
    assert state(engine, containers["web"]) is not None  # nothing ran yet
    assert [a["id"] for a in list_approvals(runner)] == [pending.approval_id]

    with pytest.raises(PolicyDenied, match="cannot approve"):
        approve(runner, pending.approval_id, "alice")
    assert state(engine, containers["web"]) is not None

    done = approve(runner, pending.approval_id, "bob", "web is retired")
    assert done.outcome == "success" and done.approver == "bob"
    assert state(engine, containers["web"]) is None
    assert list_approvals(runner) == []
    assert list_approvals(runner, "approved")[0]["outcome"] == "success"
    with pytest.raises(UsageError, match="already approved"):
        approve(runner, pending.approval_id, "carol")

    logged = entries(db)
    assert [(e["event"], e["outcome"], e["approver"]) for e in logged] == [
        ("tool_call", "pending", None),
        ("approval", "approved", "bob"),
        ("tool_call", "success", "bob"),
    ]
    assert {e["approval_id"] for e in logged} == {pending.approval_id}
    with db.session() as session:
        assert verify_chain(session).ok


def test_rejected_and_denied_calls_never_run(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    runner = runner_for(config, db)
    pending = runner.run("docker.remove", "worker", {}, "alice")
    reject(runner, pending.approval_id, "bob", "not today")  # type: ignore[arg-type]
    assert state(engine, containers["worker"]) is not None
    # On a terminal, where alice may approve her own call, typing a wrong name refuses it in place.
    runner.policy = parse_policy(b"approvals: {self_approval: true}")
    with pytest.raises(PolicyDenied):
        runner.run("docker.remove", "worker", {}, "alice", confirm=lambda _evaluation: False)
    assert state(engine, containers["worker"]) is not None
    assert [e["outcome"] for e in entries(db)] == ["pending", "rejected", "rejected"]


def test_a_container_gone_since_the_sync_is_refused_naming_source_and_container(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    client = engine.client()
    client.remove_container(containers["worker"], force=True)  # gone behind the inventory's back
    client.close()
    with pytest.raises(TargetChanged) as info:
        runner_for(config, db).run("docker.start", "worker", {}, "alice")
    assert "no longer exists at source 'engine'" in str(info.value) and "(worker)" in str(info.value)
    (entry,) = entries(db)
    assert entry["outcome"] == "refused" and "(worker)" in entry["error"]


def test_a_container_recreated_under_the_same_name_is_not_touched(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    client = engine.client()
    client.remove_container(containers["web"], force=True)  # what `compose up` does to a changed service
    created = run_busybox(client, "web")
    client.close()
    with pytest.raises(TargetChanged, match="no longer exists"):
        runner_for(config, db).run("docker.stop", "web", {"timeout": "0"}, "alice")
    assert state(engine, created)["Running"] is True  # type: ignore[index]


def test_a_container_renamed_since_the_sync_is_decided_on_its_name_now(
    setup: tuple[Config, Database, Path], engine: DockerEngine, containers: dict[str, str]
) -> None:
    config, db, _ = setup
    client = engine.client()
    client.rename(containers["worker"], "prod-db")
    client.close()
    runner = runner_for(config, db)
    runner.policy = parse_policy(b"rules: [{name: prod-by-name, effect: deny, match: {target: {names: ['prod-*']}}}]")
    with pytest.raises(PolicyDenied, match="prod-by-name"):
        runner.run("docker.stop", "worker", {"timeout": "0"}, "alice")
    assert state(engine, containers["worker"])["Running"] is True  # type: ignore[index]
    (entry,) = entries(db)
    assert entry["outcome"] == "denied" and entry["details"]["live_target"]["name"] == "prod-db"
    assert entry["details"]["live_target"]["identity"] == {"id": containers["worker"]}


def test_canary_secrets_reach_no_audit_entry_log_line_or_error(
    setup: tuple[Config, Database, Path], caplog: pytest.LogCaptureFixture
) -> None:
    config, db, _ = setup
    caplog.set_level(logging.DEBUG)
    runner = runner_for(config, db)
    messages = []
    runner.run(
        "docker.restart", "web", {"timeout": "0", "reason": f"rotating token={CANARY} per Bearer {CANARY}"}, "alice"
    )
    for bad in ({"password": CANARY}, {"timeout": CANARY}, {"api_token": CANARY, "reason": f"https://u:{CANARY}@x"}):
        with pytest.raises(UsageError) as info:
            runner.run("docker.stop", "web", bad, "alice")
        messages.append(str(info.value))
    with pytest.raises(UsageError) as info:
        runner.run("docker.explode", "web", {"secret": CANARY, "nested": f"Authorization: Bearer {CANARY}"}, "alice")
    messages.append(str(info.value))
    stored = json.dumps(entries(db), default=str)
    assert len(entries(db)) == 5
    assert CANARY not in stored
    assert all(CANARY not in m for m in messages), messages
    assert CANARY not in caplog.text


def test_cli_tool_run_policy_check_and_approvals(
    setup: tuple[Config, Database, Path],
    engine: DockerEngine,
    containers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, db, path = setup
    cli_runner = CliRunner()

    def invoke(*args: str, as_user: str = "alice") -> Any:
        # The CLI acts as the OS user: here, alice or bob at the keyboard.
        monkeypatch.setattr("inventory.principals.os_user_name", lambda: as_user)
        return cli_runner.invoke(cli, ["--config", str(path), *args])

    checked = invoke("policy", "check", "docker.remove", "--target", "web", "--arg", "force=true", "-o", "json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert (report["class"], report["decision"], report["matched_rule"]) == (
        "DESTRUCTIVE",
        "require_approval",
        "default:DESTRUCTIVE",
    )
    assert report["hints"]["destructiveHint"] is True
    assert entries(db) == []  # a check runs nothing and records nothing

    dry = invoke("tool", "run", "docker.stop", "--target", "web", "--dry-run", "-o", "json")
    assert dry.exit_code == 0 and json.loads(dry.stdout)["outcome"] == "dry_run"
    assert state(engine, containers["web"])["Running"] is True  # type: ignore[index]

    pending = invoke("tool", "run", "docker.remove", "--target", "web", "--arg", "force=true", "-o", "json")
    assert pending.exit_code == 4, pending.output
    approval_id = json.loads(pending.stdout)["approval_id"]
    listed = invoke("approvals", "list", "-o", "json")
    assert [a["id"] for a in json.loads(listed.stdout)] == [approval_id]
    refused = invoke("approvals", "approve", str(approval_id))
    assert refused.exit_code == 3 and "cannot approve" in refused.output
    approved = invoke("approvals", "approve", str(approval_id), "-o", "json", as_user="bob")
    assert approved.exit_code == 0, approved.output
    assert state(engine, containers["web"]) is None

    audit = invoke("audit", "list", "--actor", "alice", "--since", "7d", "-o", "json")
    assert [(e["tool"], e["outcome"]) for e in json.loads(audit.stdout)] == [
        ("docker.stop", "dry_run"),
        ("docker.remove", "pending"),
        ("docker.remove", "approved"),
        ("docker.remove", "success"),
        ("docker.remove", "observed"),  # nobody follows the engine: the call re-read its target
    ]
    assert json.loads(audit.stdout)[-1]["details"]["seen"].startswith("removed after ")
    assert invoke("audit", "verify").exit_code == 0
