"""Matching that cannot be sidestepped: tags, labels and namespaces in any case, group members as globs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inventory.errors import ConfigError, InvalidArguments
from inventory.policy.classes import ToolClass
from inventory.policy.engine import Call, classify, decide
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import Effect, Policy, builtin_policy, load_policy, parse_policy
from inventory.policy.targets import Target
from inventory.principals import Principal

REGISTRY = ToolRegistry.discover()


def guest(tags: Any = None, labels: dict[str, str] | None = None, namespace: str | None = None) -> Target:
    attributes: dict[str, Any] = {"node": "pve1", "vmid": 101}
    if tags is not None:
        attributes["tags"] = tags
    return Target("workload", 7, "pve", "proxmox", "qemu", "pve/101", "vm-101", namespace, labels or {}, attributes)


def pod(namespace: str, labels: dict[str, str] | None = None) -> Target:
    return Target("workload", 8, "k8s", "kubernetes", "deployment", "uid-8", "web", namespace, labels or {}, {})


def evaluate(policy: Policy, tool: str, actor: str, target: Target, raw: dict[str, str] | None = None) -> Any:
    spec = REGISTRY.get(tool)
    assert spec is not None
    args = spec.parse_args(raw or {})
    classification = classify(spec, args, target, policy)
    return decide(Call(tool, Principal.of(actor), target, spec.source_type), classification, policy)


@pytest.mark.parametrize("tags", ["Prod", "PROD", "web;Prod", ["pRoD"], "web,PROD"])
def test_a_vm_tagged_prod_in_any_case_is_protected(tags: Any) -> None:
    decision = evaluate(builtin_policy(), "proxmox.stop", "carol", guest(tags))
    assert decision.tool_class is ToolClass.DESTRUCTIVE and decision.effect is Effect.REQUIRE_APPROVAL
    assert any("is protected" in line and "rod" in line.lower() for line in decision.explanation)


def test_untagged_and_other_tags_stay_as_declared() -> None:
    for tags in (None, "production", "dev;web"):
        assert evaluate(builtin_policy(), "proxmox.stop", "carol", guest(tags)).tool_class is ToolClass.SAFE_MUTATE


def test_protected_labels_and_namespaces_match_in_any_case() -> None:
    policy = parse_policy(b"protected: {namespaces: [kube-system, 'team-*'], tags: [prod], labels: {tier: critical}}\n")
    for target in (
        pod("app", {"Tier": "Critical"}),
        pod("app", {"tier": "CRITICAL"}),
        pod("Kube-System"),
        pod("TEAM-A"),
    ):
        decision = evaluate(policy, "kubernetes.restart_deployment", "carol", target)
        assert decision.tool_class is ToolClass.DESTRUCTIVE, target
    # A namespace typed in an argument cannot be spelt otherwise: Kubernetes' DNS rule refuses upper case.
    cluster = Target("source", 1, "k8s", "kubernetes", "source", "k8s", "k8s", None, {}, {})
    with pytest.raises(InvalidArguments, match="namespace"):
        evaluate(policy, "kubernetes.delete_namespace", "carol", cluster, {"namespace": "KUBE-SYSTEM"})
    assert evaluate(policy, "kubernetes.restart_deployment", "carol", pod("app")).tool_class is ToolClass.SAFE_MUTATE


def test_rule_selectors_match_tags_labels_and_namespaces_in_any_case() -> None:
    policy = parse_policy(
        b"""
rules:
  - {name: no-prod-stops, effect: deny, match: {target: {tags: [prod]}}}
  - {name: no-pci, effect: deny, match: {target: {labels: {zone: pci}}}}
  - {name: payments-need-approval, effect: require_approval, match: {target: {namespaces: ['payments-*']}}}
"""
    )
    assert evaluate(policy, "proxmox.stop", "carol", guest("PROD")).matched_rule == "no-prod-stops"
    assert evaluate(policy, "proxmox.stop", "carol", guest(labels={"Zone": "PCI"})).matched_rule == "no-pci"
    restart = evaluate(policy, "kubernetes.restart_deployment", "carol", pod("Payments-EU"))
    assert restart.matched_rule == "payments-need-approval"
    assert evaluate(policy, "proxmox.stop", "carol", guest("dev")).effect is Effect.ALLOW


def test_group_members_written_as_globs_match(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "groups: {agents: ['agent-*', 'bot-?'], leads: ['lead-*']}\n"
        "approvals: {approvers: ['group:leads', 'oncall-*']}\n"
        "rules:\n  - {name: agents-never-destroy, effect: deny, match: {actors: ['group:agents'], classes: [DESTRUCTIVE]}}\n"
    )
    policy = load_policy(path)
    for actor in ("agent-1", "Agent-7", "bot-x"):
        assert evaluate(policy, "proxmox.delete", actor, guest()).matched_rule == "agents-never-destroy", actor
    for actor in ("agentx", "bot-xy", "carol"):
        assert evaluate(policy, "proxmox.delete", actor, guest()).matched_rule is None, actor
    assert policy.may_approve(Principal.of("Lead-2")) and policy.may_approve(Principal.of("oncall-eu"))
    assert not policy.may_approve(Principal.of("carol"))


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ("groups: {agents: ['agent-[0-9]']}\n", "groups.agents"),
        ("groups: {ops: [alice]}\napprovals: {approvers: ['lead-[ab]']}\n", "approvals.approvers"),
        ("groups: {ops: ['two words']}\n", "groups.ops"),
    ],
)
def test_members_with_unsupported_patterns_are_refused_naming_file_and_key(
    tmp_path: Path, document: str, key: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(document)
    with pytest.raises(ConfigError) as refused:
        load_policy(path)
    assert str(path) in str(refused.value) and key in str(refused.value)
