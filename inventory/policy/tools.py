"""Named tools: typed, validated arguments, a default class, argument rules that raise it, and a lazy registry.

Tools are declared by modules in ``connectors/`` (``connectors/docker/tools.py`` and
its siblings), each exposing ``TOOLS: list[ToolSpec]``. Declaring a tool costs
nothing: its implementation is named by a ``"module:function"`` string and
imported, with its SDK, only when the tool runs. Third-party packages add tools
through the entry-point group ``inventory.tools`` (value: a module with ``TOOLS``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inventory.errors import InvalidArguments, UsageError
from inventory.policy.classes import ToolClass
from inventory.redact import redact_text

if TYPE_CHECKING:
    from inventory.policy.targets import Target

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "inventory.tools"
BUILTIN_TOOL_MODULES = ("connectors.kubernetes.tools", "connectors.proxmox.tools", "connectors.docker.tools")


class ToolArgs(BaseModel):
    """Base of every tool's arguments: unknown keys are errors, and every call may say why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(default=None, max_length=1000, description="Why the call is made (kept in the audit log).")


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
    args_model: type[ToolArgs] = ToolArgs
    # What --target names: a "workload", a "host", a "service" or a whole "source".
    target_type: str = "workload"
    # Kinds of the target accepted (empty: any kind of target_type).
    target_kinds: tuple[str, ...] = ()
    escalations: tuple[Escalation, ...] = ()
    # "module:function" called as function(ToolContext) -> ToolResult, imported when the tool runs.
    implementation: str = ""
    idempotent: bool = False

    def parse_args(self, raw: Mapping[str, Any]) -> ToolArgs:
        """Validate arguments; the error names each bad key and never echoes a value (it may be a secret)."""
        try:
            return self.args_model.model_validate(dict(raw))
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in errors)
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


@dataclass
class ToolRegistry:
    """Tools by name; a tool module that fails to import leaves its tools unknown (and so DESTRUCTIVE)."""

    tools: dict[str, ToolSpec] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, specs: Iterable[ToolSpec]) -> ToolRegistry:
        registry = cls()
        for spec in specs:
            registry.add(spec, origin="given")
        return registry

    @classmethod
    def discover(cls, modules: Sequence[str] = BUILTIN_TOOL_MODULES) -> ToolRegistry:
        registry = cls()
        names = [(m, m) for m in modules] + [(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)]
        for origin, module_name in names:
            try:
                module = importlib.import_module(module_name)
                specs = list(module.TOOLS)
            except Exception as exc:  # a broken tool module disables its tools only
                registry.errors[origin] = f"{type(exc).__name__}: {exc}"
                log.warning("tool module %s is disabled: %s", module_name, registry.errors[origin])
                continue
            for spec in specs:
                registry.add(spec, origin=module_name)
        return registry

    def add(self, spec: ToolSpec, *, origin: str) -> None:
        if spec.name in self.tools:
            log.warning("tool %r declared twice; keeping the first, ignoring the one from %s", spec.name, origin)
            return
        self.tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self.tools.get(name)

    def names(self) -> list[str]:
        return sorted(self.tools)

    def __iter__(self) -> Any:
        return iter(self.tools[name] for name in self.names())


def load_implementation(spec: ToolSpec) -> Callable[[ToolContext], ToolResult]:
    module_name, _, function_name = spec.implementation.partition(":")
    if not module_name or not function_name:
        raise UsageError(f"tool {spec.name} has no implementation")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)  # type: ignore[no-any-return]


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
