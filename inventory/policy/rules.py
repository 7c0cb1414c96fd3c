"""The policy document: who may do what to which targets, and who is who.

The policy in force belongs to the database: the one an admin applied last with
``inventory policy apply FILE`` (inventory/policy/applied.py), whatever config a caller
names. A file a config names is a draft: ``inventory policy check FILE`` validates it and
says how it differs from the applied one. Before any policy was applied the built-in
defaults decide (no rules: READ_ONLY and SAFE_MUTATE allowed, DESTRUCTIVE needs approval;
``kube-system`` and the ``prod`` tag are protected; no groups, no one acts for anyone, no
admins). A file with any error refuses to load, naming the file, the rule and the reason:
there is no fallback to a more permissive policy.

    groups:   {ops: [alice, bob], agents: ["agent-*"]}   # members: names or globs (* and ?)
    protected: {namespaces: [kube-system], tags: [prod], labels: {tier: critical}}
    approvals: {self_approval: false, tty_confirmation: true, approvers: ["group:ops"], expires_after: 24h}
    rules:
      - name: agents-never-destroy
        effect: deny                      # allow | require_approval | deny
        match:                            # every key given must match; lists mean "any of"
          actors: ["group:agents"]        # user names, group:NAME, or "*"
          classes: [DESTRUCTIVE]
          tools: ["kubernetes.*"]         # globs
          sources: ["prod-*"]             # globs over source names
          target: {types: [workload], kinds: [pod], namespaces: ["team-*"], names: ["db-*"],
                   labels: {env: prod}, tags: [prod]}
        self_approval: false              # may the requester approve their own call?
    principals:                           # OS users' groups, whom they act for, who administers
      users: {alice: [ops, admins]}
      act_for: {ci-runner: [agent-1]}
      admins: ["group:admins"]            # who may apply policies and create and revoke tokens
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inventory.connector import Duration
from inventory.errors import ConfigError, UsageError
from inventory.policy.classes import ToolClass
from inventory.principals import (
    MEMBER_GLOB_CHARACTERS,
    PATTERN_CHARACTERS,
    Principal,
    PrincipalSettings,
    confusable_message,
    confusable_pairs,
    member_matches,
    name_key,
    named_by,
    normalise_name,
)
from inventory.yaml_text import load_yaml

BUILTIN_POLICY_LABEL = "<built-in defaults>"


class Effect(str, Enum):
    ALLOW = "allow"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return {"allow": 0, "require_approval": 1, "deny": 2}[self.value]

    def __str__(self) -> str:
        return self.value


class TargetSelector(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    types: list[str] | None = None
    kinds: list[str] | None = None
    names: list[str] | None = None
    namespaces: list[str] | None = None
    labels: dict[str, str] | None = None
    tags: list[str] | None = None


class RuleMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: list[ToolClass] | None = None
    tools: list[str] | None = None
    actors: list[str] | None = None
    sources: list[str] | None = None
    target: TargetSelector | None = None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    effect: Effect
    match: RuleMatch = RuleMatch()
    description: str | None = None
    self_approval: bool | None = None


class Protected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespaces: list[str] = Field(default_factory=lambda: ["kube-system"])
    tags: list[str] = Field(default_factory=lambda: ["prod"])
    labels: dict[str, str] = Field(default_factory=dict)


class ApprovalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # May the requester approve their own pending call? A rule's self_approval overrides this.
    self_approval: bool = False
    # On a terminal, typing the target's name approves the call in place: an approval by the
    # requester like any other (an approver, and self-approval allowed), else the call waits.
    tty_confirmation: bool = True
    # Who may approve (principal names or group:NAME); None: anyone but the requester.
    approvers: list[str] | None = None
    # A pending approval can no longer be granted after this long.
    expires_after: Duration = Field(default=86400.0, gt=0)


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    protected: Protected = Protected()
    approvals: ApprovalSettings = ApprovalSettings()
    rules: list[Rule] = Field(default_factory=list)
    # Who is who, in force with the policy: a caller's config cannot make itself an admin or act for anyone.
    principals: PrincipalSettings = PrincipalSettings()

    @model_validator(mode="after")
    def _names_unique(self) -> PolicyDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"two rules are named {rule.name!r}")
            seen.add(rule.name)
        return self


@dataclass(frozen=True)
class Policy:
    document: PolicyDocument
    path: Path | None
    # sha256 of the file's bytes (of the empty text for the built-in defaults): recorded in every audit entry.
    sha256: str
    # Where it came from when not a file: "applied policy 3" (inventory/policy/applied.py).
    origin: str | None = None

    @property
    def label(self) -> str:
        if self.origin:
            return self.origin
        return str(self.path) if self.path else BUILTIN_POLICY_LABEL

    @property
    def principals(self) -> PrincipalSettings:
        return self.document.principals

    @property
    def rules(self) -> list[Rule]:
        return self.document.rules

    def principal_names(self) -> list[str]:
        """The plain principal names the policy gives (members, approvers, actors; not globs)."""
        return [name for name, _key in _named(self.document) if _is_plain(name)]

    def groups_of(self, actor: str) -> set[str]:
        """The policy's groups holding this name (members are names or globs, compared case-folded)."""
        groups = self.document.groups.items()
        return {name_key(name) for name, members in groups if any(member_matches(m, actor) for m in members)}

    def groups_of_principal(self, principal: Principal) -> set[str]:
        """Groups of the principal and of whom it acts for: from the policy and from the config or token."""
        groups = {name_key(g) for g in principal.groups}
        for name in principal.names():
            groups |= self.groups_of(name)
        return groups

    def may_approve(self, principal: Principal) -> bool:
        """Named by ``approvals.approvers`` (anyone when unset); never a principal acting for someone else."""
        if principal.on_behalf_of is not None:
            return False
        approvers = self.document.approvals.approvers
        if approvers is None:
            return True
        return named_by(approvers, principal, self.groups_of(principal.name))


def builtin_policy() -> Policy:
    return Policy(PolicyDocument(), None, hashlib.sha256(b"").hexdigest())


def load_policy(path: str | os.PathLike[str] | None, *, known_tools: Iterable[str] | None = None) -> Policy:
    """The policy at ``path`` (from the operator's config or a draft named on purpose); None: the built-in defaults."""
    if path is None:
        return builtin_policy()
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("policy file not found", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from None
    return parse_policy(data, path=path, known_tools=known_tools)


def parse_policy(
    data: bytes,
    *,
    path: Path | None = None,
    known_tools: Iterable[str] | None = None,
    origin: str | None = None,
) -> Policy:
    """Validate a policy document; every error names the file, the rule (index and name) and the reason."""
    label = str(path) if path else origin or "<policy>"
    try:
        raw = load_yaml(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}malformed YAML: {getattr(exc, 'problem', None) or exc}", path=label) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping, not {type(raw).__name__}", path=label)
    try:
        document = PolicyDocument.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, raw, label) from None
    _check_references(document, label, known_tools)
    return Policy(document, path, hashlib.sha256(data).hexdigest(), origin)


def _rule_key(raw: dict[str, Any], index: int) -> str:
    rules = raw.get("rules")
    name = None
    if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
        name = rules[index].get("name")
    return f"rules[{index}]" + (f" ({name})" if name else "")


def _validation_error(exc: ValidationError, raw: dict[str, Any], label: str) -> ConfigError:
    err = exc.errors(include_url=False, include_input=False)[0]
    loc = list(err["loc"])
    key: str | None
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        key = _rule_key(raw, loc[1]) + "".join(f".{part}" if isinstance(part, str) else f"[{part}]" for part in loc[2:])
    else:
        key = ".".join(str(p) for p in loc) or None
    message = err["msg"]
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, path=label, key=key)


def _named(document: PolicyDocument) -> list[tuple[str, str]]:
    """Every principal name or name pattern of the policy, with the key it is under."""
    return [
        *((member, f"groups.{group}") for group, members in document.groups.items() for member in members),
        *((a, "approvals.approvers") for a in document.approvals.approvers or [] if not a.startswith("group:")),
        *(
            (actor, f"rules[{index}] ({rule.name}).match.actors")
            for index, rule in enumerate(document.rules)
            for actor in rule.match.actors or []
            if not actor.startswith("group:") and actor != "*"
        ),
    ]


def _is_plain(name: str) -> bool:
    return not any(ch in name for ch in PATTERN_CHARACTERS)


def _check_names(document: PolicyDocument, label: str) -> None:
    """Members and approvers are names or globs of * and ? (nothing else a glob could mean), and no two plain
    names of the policy look alike (``alice`` and ``alice`` with a Cyrillic a)."""
    named = _named(document)
    for name, key in named:
        try:
            normalise_name(name, what="member")
        except UsageError as exc:
            raise ConfigError(str(exc), path=label, key=key) from None
        unsupported = sorted(set(name) & (set(PATTERN_CHARACTERS) - set(MEMBER_GLOB_CHARACTERS)))
        if unsupported and not key.endswith(".match.actors"):
            raise ConfigError(
                f"{name!r}: {' '.join(unsupported)} is not supported in a member; use * and ? globs or plain names",
                path=label,
                key=key,
            )
    plain = [(name, key) for name, key in named if _is_plain(name)]
    keys = dict(plain)
    for first, second in confusable_pairs(name for name, _key in plain):
        raise ConfigError(confusable_message(first, second), path=label, key=keys[second])


def _check_references(document: PolicyDocument, label: str, known_tools: Iterable[str] | None) -> None:
    _check_names(document, label)
    tools = set(known_tools) if known_tools is not None else None
    for approver in document.approvals.approvers or []:
        if approver.startswith("group:") and approver[len("group:") :] not in document.groups:
            raise ConfigError(
                f"unknown group {approver[len('group:') :]!r} (define it under groups:)",
                path=label,
                key="approvals.approvers",
            )
    for index, rule in enumerate(document.rules):
        key = f"rules[{index}] ({rule.name})"
        for actor in rule.match.actors or []:
            if actor.startswith("group:") and actor[len("group:") :] not in document.groups:
                raise ConfigError(
                    f"unknown group {actor[len('group:') :]!r} (define it under groups:)",
                    path=label,
                    key=f"{key}.match.actors",
                )
        for pattern in rule.match.tools or []:
            # A plain name that is no tool is a typo that would silently never match.
            if tools is not None and not any(ch in pattern for ch in "*?[") and pattern not in tools:
                raise ConfigError(f"unknown tool {pattern!r}", path=label, key=f"{key}.match.tools")
        if rule.match == RuleMatch() and rule.effect is Effect.ALLOW:
            raise ConfigError(
                "an allow rule with an empty match would allow everything; say what it allows", path=label, key=key
            )
