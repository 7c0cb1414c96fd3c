"""Named tools: typed, validated arguments, a default class, and argument rules that raise it.

Connectors declare their tools with these types (``connectors/docker/tools.py``
and its siblings); ``inventory.policy.registry`` finds them. Declaring a tool
costs nothing: its implementation is a function of the tools module, which
imports its SDK only when the tool runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inventory.errors import InvalidArguments, UsageError
from inventory.policy.classes import ToolClass
from inventory.redact import redact_text

if TYPE_CHECKING:
    from inventory.policy.live import LiveLookup
    from inventory.policy.targets import Target

log = logging.getLogger(__name__)

# No tool argument needs more text than this (a reason, a label, a YAML patch): a larger value is refused
# unread, before it is validated, redacted, logged or written to the audit log.
MAX_ARGUMENT_CHARS = 64 * 1024
MAX_ARGUMENT_KEY_CHARS = 100


def _text_size(value: Any, budget: int) -> int:
    """Characters of text in ``value`` at any depth (keys too), counting no further than ``budget``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        items: Any = [item for pair in value.items() for item in pair]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return len(str(value)) if isinstance(value, (int, float)) else 0
    total = 0
    for item in items:
        total += _text_size(item, budget - total) + 1
        if total > budget:
            break
    return total


def check_argument_sizes(tool: str, raw: Mapping[str, Any]) -> None:
    """Refuse (InvalidArguments, naming the key, never the value) an argument over MAX_ARGUMENT_CHARS."""
    for key, value in raw.items():
        name = str(key)
        if len(name) > MAX_ARGUMENT_KEY_CHARS:
            shown = name[:40].encode("unicode_escape").decode()
            raise InvalidArguments(
                f"tool {tool[:100]}: argument name {shown!r}... is longer than {MAX_ARGUMENT_KEY_CHARS} characters",
                {name},
            )
        if _text_size(value, MAX_ARGUMENT_CHARS) > MAX_ARGUMENT_CHARS:
            raise InvalidArguments(
                f"tool {tool[:100]}: argument {name!r} is longer than {MAX_ARGUMENT_CHARS} characters; refused unread",
                {name},
            )


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are errors, and every call may say why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(
        default=None, max_length=1000, description="Why the call is made (kept in the audit log)."
    )


@dataclass(frozen=True)
class Escalation:
    """An argument (or target) rule that raises a call's class; it can never lower it."""

    to: ToolClass
    why: str
    applies: Callable[[Any, Target | None], bool]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    source_type: str
    summary: str
    default_class: ToolClass
    # Called as implementation(ToolContext) -> ToolResult; the SDK is imported inside it.
    implementation: Callable[[ToolContext], ToolResult]
    args_model: type[ToolArgs] = ToolArgs
    # What --target names: a "workload", a "host", a "service" or a whole "source".
    target_type: str = "workload"
    # Kinds of the target accepted (empty: any kind of target_type).
    target_kinds: tuple[str, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    idempotent: bool = False
    # How to re-read the target at its source before a change (inventory.policy.live); None: tools of a
    # package that declares none, whose changes then run on the inventory's data.
    live: LiveLookup | None = None

    def parse_args(self, raw: Mapping[str, Any]) -> ToolArgs:
        """Validate arguments; the error names each bad key and never echoes a value (it may be a secret)."""
        check_argument_sizes(self.name, raw)
        try:
            return self.args_model.model_validate(dict(raw))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in errors
            )
            keys = {str(err["loc"][0]) for err in errors if err["loc"]}
            raise InvalidArguments(redact_text(f"tool {self.name}: invalid arguments: {problems}"), keys) from None

    def argument_help(self) -> list[dict[str, Any]]:
        rows = []
        for name, info in self.args_model.model_fields.items():
            rows.append(
                {
                    "name": name,
                    "type": getattr(info.annotation, "__name__", str(info.annotation)),
                    "required": info.is_required(),
                    "default": None if info.is_required() else info.default,
                    "description": info.description or "",
                }
            )
        return rows


def spec_factory(source_type: str, **defaults: Any) -> Callable[..., ToolSpec]:
    """The ``spec(name, summary, class, implementation, **extra)`` of one connector's tool module: its tools are
    named ``<source_type>.<name>`` and share ``defaults`` (live lookup, target kinds) unless a tool says otherwise."""

    def spec(
        name: str,
        summary: str,
        tool_class: ToolClass,
        implementation: Callable[[ToolContext], ToolResult],
        **extra: Any,
    ) -> ToolSpec:
        return ToolSpec(
            name=f"{source_type}.{name}",
            source_type=source_type,
            summary=summary,
            default_class=tool_class,
            implementation=implementation,
            **{**defaults, **extra},
        )

    return spec


@dataclass
class ToolResult:
    """What an implementation hands back: a short summary and any data worth showing (logs, a list)."""

    summary: str
    data: Any = None
    # What the call changed at the source, for the audit entry's details (never secrets).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    spec: ToolSpec
    args: ToolArgs
    target: Target
    # The SourceConfig of the target's source, from the inventory config (connection settings, secrets).
    source_config: Any


def parse_arg_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``--arg k=v`` pairs; values stay text and the tool's model converts them ("3" -> 3, "true" -> True)."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            # Only the key is echoed: the value may be a secret.
            raise UsageError("--arg takes KEY=VALUE (one was given without '=' or with an empty key)")
        parsed[key] = value
    return parsed
