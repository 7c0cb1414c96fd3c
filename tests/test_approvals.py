"""Approvals end to end on both engines: who may approve, the policy of the moment, races, the terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from policy_support import apply_policy
from sqlalchemy import update

from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.audit.log import AuditFilter, list_entries
from inventory.audit.models import Approval
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import TamperedRow, UsageError
from inventory.policy.approvals import approve, list_approvals, reject
from inventory.policy.execute import PolicyDenied, ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import parse_policy
from inventory.principals import PrincipalSettings, cli_principal, os_user_name
from inventory.storage.database import Database
from inventory.sync import sync_source

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TOOLS = ToolRegistry.discover()
POLICY = b"""
groups: {oncall: [carol]}
rules:
  - name: oncall-approves-own-restarts
    effect: require_approval
    self_approval: true
    match: {actors: ["group:oncall"], tools: [kubernetes.restart_deployment]}
"""


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=1, pods=6, replicas_per_deployment=1)) as api:
        yield api


@pytest.fixture
def config_file(cluster: MutableFakeKubernetes, db: Database, tmp_path: Path) -> Path:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    raw = {
        "database": {"url": db.url},
        "sources": [
            {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}
        ],
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = build_config(raw, path=path, registry=ConnectorRegistry.of(KubernetesConnector))
    assert sync_source(db, KubernetesConnector(config.source("lab"))).status == "success"
    return path


def runner_for(db: Database, config_file: Path, policy: bytes = POLICY) -> ToolRunner:
    raw = yaml.safe_load(config_file.read_text())
    config = build_config(raw, path=config_file, registry=ConnectorRegistry.of(KubernetesConnector))
    return ToolRunner(db, parse_policy(policy, known_tools=TOOLS.names()), TOOLS, source_config=config.source)


def test_self_approval_only_where_the_policy_allows_it(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    runner = runner_for(db, config_file)
    by_carol = runner.run("kubernetes.restart_deployment", "web-0", {}, "carol")
    assert by_carol.outcome == "pending" and by_carol.evaluation.decision.self_approval
    assert approve(runner, by_carol.approval_id, "carol").outcome == "success"  # type: ignore[arg-type]
    # The same call by someone outside the rule falls to the default: DESTRUCTIVE needs someone else.
    by_dave = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    with pytest.raises(PolicyDenied, match="dave requested this call and cannot approve it"):
        approve(runner, by_dave.approval_id, "dave")  # type: ignore[arg-type]
    assert list_approvals(runner)[0]["id"] == by_dave.approval_id
    assert len(cluster.mutations) == 1


def test_only_named_approvers_may_approve(db: Database, config_file: Path, cluster: MutableFakeKubernetes) -> None:
    named = POLICY.replace(
        b"groups: {oncall: [carol]}", b"groups: {oncall: [carol], ops: [erin]}\napprovals: {approvers: ['group:ops']}"
    )
    runner = runner_for(db, config_file, named)
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    with pytest.raises(PolicyDenied, match="frank is not among the approvers"):
        approve(runner, pending.approval_id, "frank")  # type: ignore[arg-type]
    assert cluster.mutations == []
    assert approve(runner, pending.approval_id, "erin").outcome == "success"  # type: ignore[arg-type]


def test_approval_applies_the_policy_in_force_when_approving(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    pending = runner_for(db, config_file).run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    stricter = (
        POLICY
        + b"""
  - name: freeze
    effect: deny
    match: {classes: [DESTRUCTIVE]}
"""
    )
    with pytest.raises(PolicyDenied, match="now denies"):
        approve(runner_for(db, config_file, stricter), pending.approval_id, "erin")  # type: ignore[arg-type]
    runner = runner_for(db, config_file)
    assert list_approvals(runner, "rejected")[0]["reason"] == "denied by the current policy"
    with pytest.raises(UsageError, match="already rejected"):
        approve(runner, pending.approval_id, "erin")  # type: ignore[arg-type]
    assert cluster.mutations == []


def test_two_approvers_at_once_run_the_call_once(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    runner = runner_for(db, config_file)
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    results: list[str] = []

    def settle(approver: str) -> None:
        try:
            results.append(approve(runner, pending.approval_id, approver).outcome)  # type: ignore[arg-type]
        except UsageError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=settle, args=(name,)) for name in ("erin", "frank", "grace")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("success") == 1, results
    assert len(cluster.mutations) == 1


def test_reject_and_withdraw(db: Database, config_file: Path, cluster: MutableFakeKubernetes) -> None:
    runner = runner_for(db, config_file)
    first = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    second = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0", "reason": "retry"}, "dave")
    reject(runner, first.approval_id, "erin", "not during business hours")  # type: ignore[arg-type]
    reject(runner, second.approval_id, "dave", "withdrawn")  # type: ignore[arg-type]
    assert list_approvals(runner) == [] and cluster.mutations == []
    with db.session() as session:
        settled = list_entries(session, AuditFilter(event="approval"))
    assert [(e["approver"], e["outcome"], e["error"]) for e in settled] == [
        ("erin", "rejected", "not during business hours"),
        ("dave", "rejected", "withdrawn"),
    ]


def test_an_approval_edited_in_sql_is_refused_and_the_refusal_recorded(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    runner = runner_for(db, config_file)
    edits: list[dict[str, Any]] = [
        {"requester": "carol"},
        {"tool": "kubernetes.restart_deployment", "arguments": {}},
        {"arguments": {"replicas": 5}},
        {"expires_at": None, "matched_rule": None},
    ]
    scale_to_zero = ("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    pending = [runner.run(*scale_to_zero).approval_id for _ in edits]
    settled = runner.run(*scale_to_zero).approval_id
    reject(runner, settled, "erin", "no")  # type: ignore[arg-type]
    for approval_id, values in [*zip(pending, edits, strict=True), (settled, {"status": "pending"})]:
        with db.write_session() as session:
            session.execute(update(Approval).where(Approval.id == approval_id).values(**values))
        with pytest.raises(TamperedRow, match=f"approval {approval_id} does not match its mac"):
            approve(runner, approval_id, "erin")  # type: ignore[arg-type]
    with pytest.raises(TamperedRow, match=f"approval {pending[0]} does not match its mac"):
        reject(runner, pending[0], "erin")  # type: ignore[arg-type]
    # A settled row put back exactly as it was while pending, its old mac included: the log says it was settled.
    replayed = runner.run(*scale_to_zero).approval_id
    with db.session() as session:
        before = {
            c: getattr(session.get(Approval, replayed), c)
            for c in ("status", "decided_by", "decided_at", "reason", "mac")
        }
    reject(runner, replayed, "erin", "no")  # type: ignore[arg-type]
    with db.write_session() as session:
        session.execute(update(Approval).where(Approval.id == replayed).values(**before))
    assert [row["intact"] for row in list_approvals(runner) if row["id"] == replayed] == [True]
    with pytest.raises(TamperedRow, match=f"approval {replayed} was settled by audit entry .* restored"):
        approve(runner, replayed, "frank")  # type: ignore[arg-type]
    assert cluster.mutations == []
    assert {row["id"] for row in list_approvals(runner, "all") if not row["intact"]} == {*pending, settled}
    with db.session() as session:
        refused = list_entries(session, AuditFilter(event="approval", outcome="refused"))
    assert [(e["approval_id"], e["actor"]) for e in refused] == [
        *((approval_id, "erin") for approval_id in (*pending, settled, pending[0])),
        (replayed, "frank"),
    ]
    assert all("outside inventory" in e["error"] and e["tool"] is None for e in refused)
    # An approval nobody edited still runs, and its settled row verifies.
    untouched = runner.run(*scale_to_zero).approval_id
    assert approve(runner, untouched, "erin").outcome == "success"  # type: ignore[arg-type]
    assert [row["intact"] for row in list_approvals(runner, "approved")] == [True]


def test_arguments_carrying_a_secret_are_never_queued(db: Database, config_file: Path) -> None:
    runner = runner_for(db, config_file)
    with pytest.raises(UsageError, match="cannot wait for approval"):
        runner.run(
            "kubernetes.scale_deployment", "web-0", {"replicas": "0", "reason": "token=canary-Ap9x-secret"}, "dave"
        )
    assert list_approvals(runner, "all") == []
    with db.session() as session:
        (entry,) = list_entries(session, AuditFilter(event="tool_call"))
    assert entry["outcome"] == "failed" and "canary-Ap9x-secret" not in str(entry)


def run_on_terminal(config_file: Path, *args: str, typed: bytes = b"web-0\n") -> tuple[int, str]:
    """The CLI on a real pseudo-terminal: answers the confirmation prompt if one appears; (exit code, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the terminal
        os.chdir(PROJECT_ROOT)
        os.execv(sys.executable, [sys.executable, "-m", "inventory", "--config", str(config_file), *args])
    output = b""
    deadline = time.monotonic() + 30
    answered = False
    status = None
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if chunk:
            output += chunk
        if not answered and b"to confirm" in output:
            os.write(fd, typed)
            answered = True
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        if not chunk:
            time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail(f"the CLI did not finish: {output.decode(errors='replace')}")
    os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def configure(config_file: Path, policy: bytes, **extra: object) -> None:
    """Extra config sections, and the operator's policy (policy.yaml next to the config) applied to the database."""
    raw = yaml.safe_load(config_file.read_text())
    config_file.write_text(yaml.safe_dump({**raw, **extra}))
    apply_policy(config_file, policy)


SCALE_TO_ZERO = ("tool", "run", "kubernetes.scale_deployment", "--target", "web-0", "--arg", "replicas=0")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_a_terminal_an_approver_allowed_to_self_approve_confirms_in_place(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    """A real pseudo-terminal: the CLI prompts, we type the deployment's name, the call runs."""
    me = os_user_name()
    configure(
        config_file, b"groups: {ops: [%s]}\napprovals: {approvers: ['group:ops'], self_approval: true}\n" % me.encode()
    )
    code, output = run_on_terminal(config_file, *SCALE_TO_ZERO)
    assert code == 0, output
    assert [m.body for m in cluster.mutations] == [{"spec": {"replicas": 0}}]
    with db.session() as session:
        intent, done, observed = list_entries(session, AuditFilter(event="tool_call"))
    assert (intent["outcome"], done["outcome"], done["approver"]) == (
        "started",
        "success",
        f"{me} (terminal confirmation)",
    )
    assert done["details"]["intent_seq"] == intent["seq"]
    # Nobody follows the cluster: the call re-read the deployment and saw it scaled down.
    assert observed["outcome"] == "observed" and "status Ready -> ScaledToZero" in observed["details"]["seen"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_terminal_confirmation_does_not_bypass_the_approvers(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    """The requester types the target's name on a terminal, but the policy names group:ops and forbids self-approval:
    nothing runs, the call waits for an approver."""
    configure(config_file, b"groups: {ops: [erin]}\napprovals: {approvers: ['group:ops'], self_approval: false}\n")
    code, output = run_on_terminal(config_file, *SCALE_TO_ZERO)
    assert code == 4, output
    assert "to confirm" not in output and "waiting for approval" in output
    assert cluster.mutations == []
    # An approver who is not in the approvers' group may not confirm in place either.
    configure(config_file, b"groups: {ops: [erin]}\napprovals: {approvers: ['group:ops'], self_approval: true}\n")
    code, output = run_on_terminal(config_file, *SCALE_TO_ZERO)
    assert code == 4 and cluster.mutations == [], output


def test_importing_the_cli_pulls_in_no_sdk() -> None:
    code = "import sys, inventory.cli; assert not {'docker', 'kubernetes', 'proxmoxer'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_destructive_calls_are_notified_when_requested_and_when_run(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    import httpx
    import respx

    from inventory.notify import Notifier, NotifySettings

    with respx.mock(assert_all_called=False) as mock:
        hook = mock.post("https://hooks.lab/inventory").mock(return_value=httpx.Response(204))
        notifier = Notifier(
            NotifySettings.model_validate({"targets": [{"type": "webhook", "url": "https://hooks.lab/inventory"}]})
        )
        runner = runner_for(db, config_file)
        runner.notifier = notifier
        runner.run("kubernetes.list_pods", "source:lab", {}, "dave")  # READ_ONLY: no message
        assert hook.call_count == 0
        pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
        assert pending.outcome == "pending"
        assert approve(runner, pending.approval_id, "erin").outcome == "success"  # type: ignore[arg-type]
        notifier.close()
    bodies = [call.request.content.decode() for call in hook.calls]
    assert len(bodies) == 3
    assert "dave requested kubernetes.scale_deployment" in bodies[0]
    assert '"event":"approval_pending"' in bodies[1]  # the target takes every event: it is also told who must act
    assert "dave ran kubernetes.scale_deployment" in bodies[2] and "success" in bodies[2]


def test_approvers_are_compared_as_principals_not_spellings(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    runner = runner_for(db, config_file)
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "alice")
    for spelling in ("Alice", "ALICE", "alice\u0301"[:5], " alice "):
        with pytest.raises(PolicyDenied, match="cannot approve"):
            approve(runner, pending.approval_id, spelling)  # type: ignore[arg-type]
    assert cluster.mutations == []


def test_a_lookalike_of_the_requester_never_approves_even_from_rows_made_before_the_check(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    # Self-approval allowed, and no approvers named: anyone but the requester may approve. Both names are
    # used as given (a token made before look-alikes were refused would authenticate as the Cyrillic one).
    runner = runner_for(db, config_file, b"approvals: {self_approval: true}\n")
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "alice")
    with pytest.raises(PolicyDenied, match="look alike"):
        approve(runner, pending.approval_id, "\u0430lice")  # type: ignore[arg-type]
    assert cluster.mutations == []
    assert approve(runner, pending.approval_id, "erin").outcome == "success"  # type: ignore[arg-type]


def test_a_deny_rule_for_a_pattern_catches_every_spelling(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    policy = b"rules:\n  - {name: no-agents, effect: deny, match: {actors: ['agent-*']}}\n"
    runner = runner_for(db, config_file, policy)
    for actor in ("Agent-1", "AGENT-2", "agent-3"):
        with pytest.raises(PolicyDenied, match="no-agents"):
            runner.run("kubernetes.restart_deployment", "web-0", {}, actor)
    assert cluster.mutations == []


def test_acting_for_an_agent_applies_its_rules_and_never_approves(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes
) -> None:
    settings = PrincipalSettings(users={"agent-1": ["agents"]}, act_for={"runner": ["agent-1"]})
    runner = runner_for(
        db,
        config_file,
        b"groups: {agents: []}\nrules:\n  - {name: agents-no-scaling, effect: deny, match: {actors: ['group:agents'], tools: [kubernetes.scale_deployment]}}\n",
    )
    runner.principals = settings
    acting = cli_principal(settings, "Agent-1", user="runner")
    assert (acting.name, acting.on_behalf_of, acting.label) == ("runner", "Agent-1", "runner (on behalf of Agent-1)")
    with pytest.raises(PolicyDenied, match="agents-no-scaling"):
        runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, acting)
    with pytest.raises(UsageError, match="may not act for bob"):
        cli_principal(settings, "bob", user="runner")
    # A call it may make is recorded as on behalf of the agent; acting for someone never approves.
    restarted = runner.run("kubernetes.restart_deployment", "web-0", {}, acting)
    assert restarted.outcome == "success" and restarted.approver is None
    runner.policy = parse_policy(b"approvals: {self_approval: true}")
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    queued = runner.run(
        "kubernetes.scale_deployment", "web-0", {"replicas": "0"}, acting, confirm=lambda _evaluation: True
    )
    assert queued.outcome == "pending"  # not confirmed in place
    for approval_id in (pending.approval_id, queued.approval_id):
        with pytest.raises(PolicyDenied, match="--actor never approves"):
            approve(runner, approval_id, acting)  # type: ignore[arg-type]
    assert len(cluster.mutations) == 1
    with db.session() as session:
        done = list_entries(session, AuditFilter(event="tool_call", outcome="success"))[-1]
    assert (done["actor"], done["details"]["on_behalf_of"]) == ("runner", "Agent-1")


def test_approvals_expire(db: Database, config_file: Path, cluster: MutableFakeKubernetes) -> None:
    runner = runner_for(db, config_file, b"approvals: {expires_after: 0.5}\n")
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    time.sleep(0.6)
    with pytest.raises(PolicyDenied, match="expired"):
        approve(runner, pending.approval_id, "erin")  # type: ignore[arg-type]
    assert cluster.mutations == []
    assert list_approvals(runner, "expired")[0]["id"] == pending.approval_id


def test_only_an_approver_or_the_requester_rejects(db: Database, config_file: Path) -> None:
    runner = runner_for(db, config_file, b"groups: {ops: [erin]}\napprovals: {approvers: ['group:ops']}\n")
    pending = runner.run("kubernetes.scale_deployment", "web-0", {"replicas": "0"}, "dave")
    with pytest.raises(PolicyDenied, match="may not reject"):
        reject(runner, pending.approval_id, "mallory")  # type: ignore[arg-type]
    reject(runner, pending.approval_id, "Dave", "withdrawn")  # type: ignore[arg-type]


def test_the_policy_in_force_is_the_operators_not_the_callers(
    db: Database, config_file: Path, cluster: MutableFakeKubernetes, tmp_path: Path
) -> None:
    """A caller's --policy, INVENTORY_POLICY or policy.yaml in the working directory cannot replace the operator's policy."""
    configure(config_file, b"rules:\n  - {name: freeze, effect: deny, match: {tools: ['kubernetes.*']}}\n")
    allow_all = tmp_path / "caller" / "policy.yaml"
    allow_all.parent.mkdir()
    allow_all.write_text("rules:\n  - {name: anything, effect: allow, match: {actors: ['*']}}\n")
    base = [sys.executable, "-m", "inventory", "--config", str(config_file)]
    restart = ["tool", "run", "kubernetes.restart_deployment", "--target", "web-0", "--no-input"]
    env = {**os.environ, "INVENTORY_POLICY": str(allow_all)}
    flag = subprocess.run(
        [*base, *restart, "--policy", str(allow_all)], cwd=allow_all.parent, env=env, capture_output=True, text=True
    )
    assert flag.returncode == 2 and "No such option '--policy'" in flag.stderr
    by_env_and_cwd = subprocess.run([*base, *restart], cwd=allow_all.parent, env=env, capture_output=True, text=True)
    assert by_env_and_cwd.returncode == 3 and "freeze" in by_env_and_cwd.stderr
    assert cluster.mutations == []
    draft = subprocess.run(
        [
            *base,
            "policy",
            "check",
            "kubernetes.restart_deployment",
            "--target",
            "web-0",
            "--policy",
            str(allow_all),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert draft.returncode == 0 and "not the policy in force" in draft.stderr
    assert json.loads(draft.stdout)["in_force"] is False
