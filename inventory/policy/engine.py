"""Classification and decision, each with the reasons behind it.

classify(): the tool's declared class, raised by its argument rules, by a truthy
``force`` argument and by protected targets (namespaces, tags, labels); never
lowered. A tool the registry does not know is DESTRUCTIVE.

decide(): every rule whose match fits the call contributes; deny beats
require_approval beats allow, and the first matching rule of the highest
severity decides. With no matching rule, the class decides: READ_ONLY and
SAFE_MUTATE are allowed, DESTRUCTIVE requires approval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from inventory.policy.classes import ToolClass, mcp_hints
from inventory.policy.rules import Effect, Policy, Rule, TargetSelector
from inventory.policy.targets import Target
from inventory.policy.tools import ToolArgs, ToolSpec
from inventory.principals import Principal, name_key
from inventory.tags import tags_matching

DEFAULT_EFFECTS = {
    ToolClass.READ_ONLY: Effect.ALLOW,
    ToolClass.SAFE_MUTATE: Effect.ALLOW,
    ToolClass.DESTRUCTIVE: Effect.REQUIRE_APPROVAL,
}


@dataclass(frozen=True)
class Escalated:
    """What an escalation source found about a call's target: each reason raises the call to DESTRUCTIVE
    (as a protected target does); the details go into the audit entry and the approval request."""

    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


# Consulted, like the protection rules, for every call that changes something (e.g. the impact of the call:
# inventory.policy.escalations.ImpactEscalation).
EscalationSource = Callable[[Target, Policy], Escalated | None]


@dataclass(frozen=True)
class Classification:
    tool_class: ToolClass
    declared: ToolClass | None
    # Why the class is what it is, one line per rule that raised it.
    reasons: tuple[str, ...] = ()
    idempotent: bool = False
    # What escalation sources reported (keyed by topic, e.g. "impact"), for the audit entry.
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hints(self) -> dict[str, bool]:
        return mcp_hints(self.tool_class, idempotent=self.idempotent)


def classify(
    spec: ToolSpec | None,
    args: ToolArgs | None,
    target: Target | None,
    policy: Policy,
    *,
    tool_name: str = "",
    escalation_sources: Sequence[EscalationSource] = (),
) -> Classification:
    if spec is None:
        return Classification(
            ToolClass.DESTRUCTIVE, None, (f"tool {tool_name!r} is not known: unknown tools are DESTRUCTIVE",)
        )
    current = spec.default_class
    reasons = [f"{spec.name} is declared {spec.default_class}"]

    def raise_to(to: ToolClass, why: str) -> None:
        nonlocal current
        if to.rank > current.rank:
            reasons.append(f"raised to {to}: {why}")
            current = to

    for escalation in spec.escalations:
        if args is not None and escalation.applies(args, target):
            raise_to(escalation.to, escalation.why)
    if args is not None and getattr(args, "force", False):
        raise_to(ToolClass.DESTRUCTIVE, "force=true skips the source's own safety checks")
    details: dict[str, Any] = {}
    if target is not None and current is not ToolClass.READ_ONLY:
        protected = protection_reasons(target, policy, getattr(args, "namespace", None))
        for why in protected:
            raise_to(ToolClass.DESTRUCTIVE, why)
        for source in escalation_sources:
            found = source(target, policy)
            if found is not None:
                for why in found.reasons:
                    raise_to(ToolClass.DESTRUCTIVE, why)
                details.update(found.details)
    return Classification(current, spec.default_class, tuple(reasons), idempotent=spec.idempotent, details=details)


def protection_reasons(target: Target, policy: Policy, namespace_arg: str | None = None) -> list[str]:
    """Why a target is protected (a change to it is DESTRUCTIVE), if it is.

    ``namespace_arg`` is a namespace named by the arguments of a source-wide tool (delete namespace).
    """
    protected = policy.document.protected
    reasons = []
    namespace = target.namespace or namespace_arg
    if namespace and _any_glob_folded(namespace, protected.namespaces):
        reasons.append(f"namespace {namespace!r} is protected")
    hit_tags = tags_matching(target.tags, protected.tags)
    if hit_tags:
        reasons.append(f"tag {', '.join(hit_tags)} is protected")
    for key, value in protected.labels.items():
        if _has_label(target.labels, key, value):
            reasons.append(f"label {key}={value} is protected")
    return reasons


# Namespaces, tags and labels are matched case-insensitively in protection and in rules: protection errs on
# the side of protecting (a VM tagged "Prod" is as protected as one tagged "prod"), and whoever can set a
# label or tag can set it in any case, so an allow rule gains nothing they could not have had anyway.
def _any_glob_folded(value: str, patterns: list[str]) -> bool:
    folded = value.casefold()
    return any(fnmatchcase(folded, pattern.casefold()) for pattern in patterns)


def _has_label(labels: Mapping[str, Any], key: str, value: str) -> bool:
    key, value = key.casefold(), value.casefold()
    return any(k.casefold() == key and str(v).casefold() == value for k, v in labels.items())


@dataclass(frozen=True)
class Contribution:
    rule: str
    effect: Effect


@dataclass(frozen=True)
class Decision:
    effect: Effect
    classification: Classification
    # The rule that decided, or None when the class default decided.
    matched_rule: str | None
    contributions: tuple[Contribution, ...] = ()
    self_approval: bool = False
    explanation: tuple[str, ...] = field(default=())

    @property
    def tool_class(self) -> ToolClass:
        return self.classification.tool_class

    @property
    def rule_label(self) -> str:
        return self.matched_rule or f"default:{self.tool_class}"


@dataclass(frozen=True)
class Call:
    """Everything a rule can look at."""

    tool: str
    principal: Principal
    target: Target | None
    source_type: str | None = None
    # A namespace named by the arguments (list pods in X, delete namespace X).
    namespace: str | None = None


def decide(call: Call, classification: Classification, policy: Policy) -> Decision:
    """Every rule matching the principal or the name it acts for applies; the most severe effect wins."""
    groups = policy.groups_of_principal(call.principal)
    matching = [rule for rule in policy.rules if rule_matches(rule, call, classification.tool_class, groups)]
    contributions = tuple(Contribution(rule.name, rule.effect) for rule in matching)
    explanation = [*classification.reasons]
    if matching:
        top = max(rule.effect.severity for rule in matching)
        winner = next(rule for rule in matching if rule.effect.severity == top)
        effect, matched = winner.effect, winner.name
        for rule in matching:
            mark = (
                "decides" if rule is winner else ("outranked" if rule.effect.severity < top else "same effect, later")
            )
            explanation.append(f"rule {rule.name!r} -> {rule.effect} ({mark})")
        self_approval = (
            winner.self_approval if winner.self_approval is not None else policy.document.approvals.self_approval
        )
    else:
        effect, matched = DEFAULT_EFFECTS[classification.tool_class], None
        explanation.append(f"no rule matches: {classification.tool_class} defaults to {effect}")
        self_approval = policy.document.approvals.self_approval
    return Decision(effect, classification, matched, contributions, self_approval, tuple(explanation))


def rule_matches(rule: Rule, call: Call, tool_class: ToolClass, groups: set[str]) -> bool:
    match = rule.match
    if match.classes is not None and tool_class not in match.classes:
        return False
    if match.tools is not None and not any(fnmatchcase(call.tool, p) for p in match.tools):
        return False
    names = call.principal.names()
    if match.actors is not None and not any(_actor_matches(p, name, groups) for p in match.actors for name in names):
        return False
    if match.sources is not None:
        if call.target is None or not any(fnmatchcase(call.target.source, p) for p in match.sources):
            return False
    if match.target is not None:
        if call.target is None or not target_matches(match.target, call.target, call.namespace):
            return False
    return True


def _actor_matches(pattern: str, actor: str, groups: set[str]) -> bool:
    if pattern.startswith("group:"):
        return name_key(pattern[len("group:") :]) in groups
    # Compared as principals, not spellings: "agent-*" matches Agent-1.
    return fnmatchcase(name_key(actor), name_key(pattern))


def target_matches(selector: TargetSelector, target: Target, namespace_arg: str | None = None) -> bool:
    checks: list[tuple[list[str] | None, Any]] = [
        (selector.types, target.object_type),
        (selector.kinds, target.kind),
        (selector.names, target.name),
    ]
    for patterns, value in checks:
        if patterns is not None and not any(fnmatchcase(str(value), p) for p in patterns):
            return False
    if selector.namespaces is not None:
        namespace = target.namespace or namespace_arg
        if namespace is None or not _any_glob_folded(namespace, selector.namespaces):
            return False
    if selector.labels is not None and not all(_has_label(target.labels, k, v) for k, v in selector.labels.items()):
        return False
    if selector.tags is not None and not tags_matching(target.tags, selector.tags):
        return False
    return True


def always_denied_by(policy: Policy, principal: Principal, spec: ToolSpec) -> str | None:
    """The deny rule that refuses every call of ``spec`` by ``principal``, whatever its target and arguments.

    A rule decides that without a call when it names no source and no target, its tools (if any) match the
    tool, its actors (if any) the principal, and its classes (if any) hold the tool's declared class and every
    class above it (a call is only ever classified at or above its declaration). MCP hides such tools from
    the principal's tool list (inventory/server/mcp_server.py); the call itself is still decided as always.
    """
    groups = policy.groups_of_principal(principal)
    reachable = {c for c in ToolClass if c.rank >= spec.default_class.rank}
    for rule in policy.rules:
        match = rule.match
        if rule.effect is not Effect.DENY or match.sources is not None or match.target is not None:
            continue
        if match.classes is not None and not reachable <= set(match.classes):
            continue
        if match.tools is not None and not any(fnmatchcase(spec.name, p) for p in match.tools):
            continue
        names = principal.names()
        if match.actors is not None and not any(_actor_matches(p, n, groups) for p in match.actors for n in names):
            continue
        return rule.name
    return None
