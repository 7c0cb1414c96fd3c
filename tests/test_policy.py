"""Classification of every built-in tool, argument escalations, policy precedence and broken policy files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inventory.errors import ConfigError, UsageError
from inventory.policy.classes import ToolClass
from inventory.policy.engine import Call, classify, decide
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import Effect, Policy, builtin_policy, load_policy, parse_policy
from inventory.policy.targets import Target
from inventory.principals import Principal

REGISTRY = ToolRegistry.discover()
PROJECT_ROOT = Path(__file__).resolve().parent.parent
R, S, D = ToolClass.READ_ONLY, ToolClass.SAFE_MUTATE, ToolClass.DESTRUCTIVE


def target(
    kind: str = "container",
    *,
    source_type: str = "docker",
    namespace: str | None = None,
    tags: Any = None,
    labels: dict[str, str] | None = None,
    object_type: str = "workload",
    name: str = "web-1",
) -> Target:
    attributes: dict[str, Any] = {"node": "pve1", "vmid": 101}
    if tags is not None:
        attributes["tags"] = tags
    return Target(object_type, 7, "src", source_type, kind, "uid-7", name, namespace, labels or {}, attributes)


def _target_for(tool: str) -> Target:
    spec = REGISTRY.get(tool)
    assert spec is not None
    if spec.target_type == "source":
        return target("source", source_type=spec.source_type, object_type="source", name="src")
    return target(
        spec.target_kinds[0] if spec.target_kinds else "x",
        source_type=spec.source_type,
        namespace="team-a" if spec.source_type == "kubernetes" else None,
    )


DECLARED = {
    "kubernetes.list_pods": (R, {}),
    "kubernetes.pod_logs": (R, {}),
    "kubernetes.restart_deployment": (S, {}),
    "kubernetes.scale_deployment": (S, {"replicas": "3"}),
    "kubernetes.delete_pod": (S, {}),
    "kubernetes.delete_namespace": (D, {"namespace": "team-a"}),
    "proxmox.start": (S, {}),
    "proxmox.shutdown": (S, {}),
    "proxmox.stop": (S, {}),
    "proxmox.reboot": (S, {}),
    "proxmox.snapshot": (S, {"name": "before-upgrade"}),
    "proxmox.rollback": (D, {"name": "before-upgrade"}),
    "proxmox.delete": (D, {}),
    "docker.list": (R, {}),
    "docker.logs": (R, {}),
    "docker.start": (S, {}),
    "docker.stop": (S, {}),
    "docker.restart": (S, {}),
    "docker.remove": (D, {}),
    "docker.prune": (D, {}),
}


def test_every_builtin_tool_is_in_the_table() -> None:
    assert sorted(DECLARED) == REGISTRY.names()
    assert REGISTRY.errors == {}


@pytest.mark.parametrize("tool", sorted(DECLARED))
def test_declared_class_of_every_builtin_tool(tool: str) -> None:
    expected, raw = DECLARED[tool]
    spec = REGISTRY.get(tool)
    assert spec is not None
    result = classify(spec, spec.parse_args(raw), _target_for(tool), builtin_policy())
    assert result.tool_class is expected
    assert result.hints["readOnlyHint"] is (expected is R)
    assert result.hints["destructiveHint"] is (expected is D)


@pytest.mark.parametrize(
    ("tool", "raw", "tgt", "expected", "reason"),
    [
        (
            "kubernetes.scale_deployment",
            {"replicas": "0"},
            target("deployment", source_type="kubernetes", namespace="team-a"),
            D,
            "0 replicas",
        ),
        (
            "kubernetes.scale_deployment",
            {"replicas": "2"},
            target("deployment", source_type="kubernetes", namespace="kube-system"),
            D,
            "kube-system",
        ),
        (
            "kubernetes.delete_pod",
            {"force": "true"},
            target("pod", source_type="kubernetes", namespace="team-a"),
            D,
            "force",
        ),
        (
            "kubernetes.delete_namespace",
            {"namespace": "kube-system"},
            target("source", object_type="source", source_type="kubernetes"),
            D,
            "declared",
        ),
        ("proxmox.reboot", {}, target("qemu", source_type="proxmox", tags=["prod", "db"]), D, "prod"),
        ("proxmox.start", {}, target("lxc", source_type="proxmox", tags="db;prod"), D, "prod"),
        ("docker.remove", {"volumes": "true"}, target(), D, "declared"),
    ],
)
def test_argument_and_target_rules_raise_the_class(
    tool: str, raw: dict[str, str], tgt: Target, expected: ToolClass, reason: str
) -> None:
    spec = REGISTRY.get(tool)
    assert spec is not None
    result = classify(spec, spec.parse_args(raw), tgt, builtin_policy())
    assert result.tool_class is expected
    assert any(reason in line for line in result.reasons), result.reasons


def test_rules_never_lower_a_class_and_reads_of_protected_targets_stay_reads() -> None:
    logs = REGISTRY.get("kubernetes.pod_logs")
    assert logs is not None
    protected_pod = target("pod", source_type="kubernetes", namespace="kube-system")
    assert classify(logs, logs.parse_args({}), protected_pod, builtin_policy()).tool_class is R
    remove = REGISTRY.get("docker.remove")
    assert remove is not None
    assert (
        classify(
            remove, remove.parse_args({"force": "false", "volumes": "false"}), target(), builtin_policy()
        ).tool_class
        is D
    )


def test_unknown_tool_is_destructive_and_needs_approval_by_default() -> None:
    result = classify(None, None, None, builtin_policy(), tool_name="docker.explode")
    assert result.tool_class is D
    assert result.hints == {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False}
    decision = decide(Call("docker.explode", Principal.of("alice"), None), result, builtin_policy())
    assert decision.effect is Effect.REQUIRE_APPROVAL


def test_arguments_are_typed_and_validated_without_echoing_values() -> None:
    spec = REGISTRY.get("kubernetes.scale_deployment")
    assert spec is not None
    with pytest.raises(UsageError) as info:
        spec.parse_args({"replicas": "many", "password": "canary-s3cr3t-value"})
    message = str(info.value)
    assert "replicas" in message and "password" in message
    assert "canary-s3cr3t-value" not in message and "many" not in message
    with pytest.raises(UsageError, match="replicas"):
        spec.parse_args({})


# --- decisions ------------------------------------------------------------------------------

POLICY = b"""
groups:
  ops: [alice, bob]
  agents: [robot]
protected: {namespaces: [kube-system], tags: [prod]}
rules:
  - name: ops-may-destroy-in-lab
    effect: allow
    match: {actors: ["group:ops"], classes: [DESTRUCTIVE], target: {labels: {env: lab}}}
  - name: agents-never-destroy
    effect: deny
    match: {actors: ["group:agents"], classes: [DESTRUCTIVE]}
  - name: lab-is-free
    effect: allow
    match: {target: {labels: {env: lab}}}
  - name: no-touching-db
    effect: deny
    match: {tools: ["docker.*"], target: {names: ["db-*"]}}
  - name: approval-for-team-b
    effect: require_approval
    match: {target: {namespaces: ["team-b"]}, classes: [SAFE_MUTATE, DESTRUCTIVE]}
  - name: mallory-is-out
    effect: deny
    match: {actors: [mallory], sources: ["src"]}
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY, known_tools=REGISTRY.names())


def _decide(policy: Policy, tool: str, actor: str, tgt: Target, raw: dict[str, str] | None = None) -> Any:
    spec = REGISTRY.get(tool)
    assert spec is not None
    args = spec.parse_args(raw or {})
    return decide(
        Call(tool, Principal.of(actor), tgt, spec.source_type, getattr(args, "namespace", None)),
        classify(spec, args, tgt, policy),
        policy,
    )


def test_defaults_without_matching_rules(policy: Policy) -> None:
    assert _decide(policy, "docker.logs", "carol", target()).effect is Effect.ALLOW
    assert _decide(policy, "docker.restart", "carol", target()).effect is Effect.ALLOW
    decision = _decide(policy, "docker.remove", "carol", target())
    assert decision.effect is Effect.REQUIRE_APPROVAL
    assert decision.matched_rule is None and decision.rule_label == "default:DESTRUCTIVE"


def test_actor_groups_and_label_selectors(policy: Policy) -> None:
    lab = target(labels={"env": "lab"})
    decision = _decide(policy, "docker.remove", "alice", lab)
    assert decision.effect is Effect.ALLOW and decision.matched_rule == "ops-may-destroy-in-lab"
    # Both allow rules contributed; the first one decides.
    assert [c.rule for c in decision.contributions] == ["ops-may-destroy-in-lab", "lab-is-free"]


def test_deny_wins_over_every_allow(policy: Policy) -> None:
    lab = target(labels={"env": "lab"})
    decision = _decide(policy, "docker.remove", "robot", lab)
    assert decision.effect is Effect.DENY and decision.matched_rule == "agents-never-destroy"
    assert {c.rule for c in decision.contributions} == {"agents-never-destroy", "lab-is-free"}
    db_in_lab = target(labels={"env": "lab"}, name="db-main")
    assert _decide(policy, "docker.logs", "alice", db_in_lab).effect is Effect.DENY


def test_require_approval_outranks_allow_and_namespace_selector(policy: Policy) -> None:
    pod = target("deployment", source_type="kubernetes", namespace="team-b", labels={"env": "lab"})
    decision = _decide(policy, "kubernetes.restart_deployment", "carol", pod)
    assert decision.effect is Effect.REQUIRE_APPROVAL and decision.matched_rule == "approval-for-team-b"
    assert any("outranked" in line for line in decision.explanation)


def test_source_selector_and_plain_actor(policy: Policy) -> None:
    assert _decide(policy, "docker.logs", "mallory", target()).effect is Effect.DENY


def test_namespace_named_by_arguments_is_protected(policy: Policy) -> None:
    cluster = target("source", object_type="source", source_type="kubernetes")
    decision = _decide(policy, "kubernetes.list_pods", "carol", cluster, {"namespace": "kube-system"})
    assert decision.tool_class is R and decision.effect is Effect.ALLOW


def test_default_policy_file_loads_and_denies_agents_destructive_calls() -> None:
    policy = load_policy(PROJECT_ROOT / "config" / "policy.yaml", known_tools=REGISTRY.names())
    assert policy.path is not None and len(policy.sha256) == 64
    robot = Policy(
        policy.document.model_copy(update={"groups": {"agents": ["robot"], "ops": []}}), policy.path, policy.sha256
    )
    assert _decide(robot, "docker.remove", "robot", target()).effect is Effect.DENY
    assert (
        _decide(robot, "docker.restart", "robot", target(tags=["prod"])).effect is Effect.DENY
    )  # prod raises it to DESTRUCTIVE
    assert _decide(policy, "docker.restart", "carol", target(tags=["prod"])).effect is Effect.REQUIRE_APPROVAL
    cluster = target("source", object_type="source", source_type="kubernetes")
    assert (
        _decide(policy, "kubernetes.delete_namespace", "alice", cluster, {"namespace": "kube-public"}).effect
        is Effect.DENY
    )


# --- broken policy files --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("rules:\n  - name: a\n    effect: permit\n", "rules[0] (a).effect", "Input should be"),
        (
            "rules:\n  - name: a\n    effect: deny\n    match: {classes: [HARMLESS]}\n",
            "rules[0] (a).match.classes[0]",
            "Input should be",
        ),
        (
            "rules:\n  - name: a\n    effect: deny\n    match: {actor: [x]}\n",
            "rules[0] (a).match.actor",
            "Extra inputs",
        ),
        (
            "rules:\n  - name: a\n    effect: deny\n    match: {actors: ['group:nobody']}\n",
            "rules[0] (a).match.actors",
            "unknown group 'nobody'",
        ),
        (
            "rules:\n  - name: a\n    effect: deny\n    match: {tools: [docker.restat]}\n",
            "rules[0] (a).match.tools",
            "unknown tool 'docker.restat'",
        ),
        ("rules:\n  - name: everything\n    effect: allow\n", "rules[0] (everything)", "allow everything"),
        (
            "rules:\n  - {name: a, effect: deny}\n  - {name: a, effect: allow, match: {tools: ['*']}}\n",
            None,
            "two rules are named 'a'",
        ),
        ("rules: [\n", None, "malformed YAML"),
        ("- just a list\n", None, "top level must be a mapping"),
    ],
)
def test_broken_policy_refuses_to_load_naming_file_rule_and_reason(
    tmp_path: Path, text: str, key: str | None, reason: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_policy(path, known_tools=REGISTRY.names())
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert reason in message
    if key:
        assert key in message


def test_missing_explicit_policy_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


def test_tool_modules_do_not_import_their_sdk() -> None:
    code = (
        "import sys, connectors.docker.tools, connectors.kubernetes.tools, connectors.proxmox.tools, "
        "inventory.policy.execute, inventory.cli.policy;"
        "from inventory.policy.registry import ToolRegistry; assert len(ToolRegistry.discover().tools) > 10;"
        "loaded = [m for m in ('docker', 'kubernetes', 'proxmoxer') if m in sys.modules];"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_cli_tools_list_policy_check_and_a_broken_policy(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from inventory.cli import cli

    runner = CliRunner()
    base = ["--database-url", f"sqlite:///{tmp_path / 'inventory.db'}"]
    listed = runner.invoke(cli, [*base, "tools", "list", "-o", "json"], catch_exceptions=False)
    assert listed.exit_code == 0
    tools = {t["name"]: t for t in json.loads(listed.stdout)}
    assert sorted(tools) == sorted(DECLARED)
    assert tools["docker.remove"]["hints"] == {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False}

    unknown = runner.invoke(cli, [*base, "policy", "check", "docker.explode", "-o", "json"], catch_exceptions=False)
    assert unknown.exit_code == 0, unknown.output
    report = json.loads(unknown.stdout)
    assert (report["class"], report["decision"]) == ("DESTRUCTIVE", "require_approval")

    broken = tmp_path / "policy.yaml"
    broken.write_text("rules:\n  - name: oops\n    effect: allow\n    match: {tools: [docker.restat]}\n")
    refused = runner.invoke(cli, [*base, "policy", "check", "docker.logs", "--policy", str(broken)])
    assert refused.exit_code == 2
    assert f"{broken}: rules[0] (oops).match.tools: unknown tool 'docker.restat'" in refused.output
