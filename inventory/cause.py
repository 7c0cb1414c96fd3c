"""Why an object changed: who or what made the change, as the source (or our own audit log) tells it.

A connector attaches a ``Cause`` to the records and deletions of a snapshot where its source says
who did something (a Proxmox task's user and type, a Kubernetes field manager, a Docker event's
action); the core attaches one where the change was our own tool call. Reconcile stores it with the
change row (``changes.cause``), and every face shows it (``changes``' BY column, the API, MCP, web).

A cause that was matched by time (a task that ended near the change, not one naming the object's
own update) says so with ``inferred``: never a guess presented as fact. No cause at all is shown
as ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class CauseKind(StrEnum):
    """Who tells us why: declared once, used by the store, the filters and every face."""

    TOOL_CALL = "tool_call"  # our own tool call: ref is the audit entry's sequence
    PROXMOX_TASK = "proxmox_task"  # a task of /cluster/tasks: actor user@realm, action the task type, ref the UPID
    KUBERNETES = "kubernetes"  # actor the field manager, action its operation (Apply/Update), detail the owner chain
    DOCKER_EVENT = "docker_event"  # action the event (die, stop, restart...), detail e.g. exitCode
    UNKNOWN = "unknown"


def _empty() -> dict[str, Any]:
    return {}


@dataclass(frozen=True, slots=True)
class Cause:
    """What made a change: who (``actor``), what they did (``action``), the source's id for it (``ref``).

    ``on_behalf_of`` is the person an agent or token acted for (tool calls). ``detail`` holds
    small extra facts worth showing (an exit code, the owner chain of a pod); it must stay
    small and JSON-shaped: it is stored with every change row it explains.
    """

    kind: CauseKind
    actor: str | None = None
    action: str | None = None
    ref: str | None = None
    at: datetime | None = None
    # Matched by time window or by a neighbouring event, not stated by the source for this change.
    inferred: bool = False
    on_behalf_of: str | None = None
    detail: Mapping[str, Any] = field(default_factory=_empty)

    def to_json(self) -> dict[str, Any]:
        """The stored shape (changes.cause): only the keys that hold something, times in ISO 8601."""
        data: dict[str, Any] = {"kind": self.kind.value}
        for name in ("actor", "action", "ref", "on_behalf_of"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.at is not None:
            data["at"] = self.at.isoformat()
        if self.inferred:
            data["inferred"] = True
        if self.detail:
            data["detail"] = dict(self.detail)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Cause:
        """A stored cause back (None, or a kind this version does not know, reads as unknown)."""
        if not data:
            return UNKNOWN_CAUSE
        try:
            kind = CauseKind(str(data.get("kind")))
        except ValueError:
            return UNKNOWN_CAUSE
        at = data.get("at")
        return cls(
            kind=kind,
            actor=data.get("actor"),
            action=data.get("action"),
            ref=data.get("ref"),
            at=datetime.fromisoformat(at) if isinstance(at, str) else None,
            inferred=bool(data.get("inferred")),
            on_behalf_of=data.get("on_behalf_of"),
            detail=dict(data.get("detail") or {}),
        )


UNKNOWN_CAUSE = Cause(CauseKind.UNKNOWN)


def describe(data: Mapping[str, Any] | None) -> str:
    """One short line for a table's BY column, from the stored shape: "alice (for bob) docker.stop #12",
    "root@pam qmstop", "kubectl-client-side-apply Update", "docker die exitCode=137", "unknown".
    A cause matched by time ends in "(inferred)"."""
    cause = Cause.from_json(data)
    if cause.kind is CauseKind.UNKNOWN:
        return "unknown"
    words: list[str] = []
    if cause.actor:
        words.append(cause.actor)
    if cause.on_behalf_of:
        words.append(f"(for {cause.on_behalf_of})")
    if cause.kind is CauseKind.DOCKER_EVENT and not cause.actor:
        words.append("docker")
    if cause.action:
        words.append(cause.action)
    if cause.kind is CauseKind.TOOL_CALL and cause.ref:
        words.append(f"#{cause.ref}")
    words.extend(f"{key}={value}" for key, value in sorted(cause.detail.items()) if _short(value))
    if cause.inferred:
        words.append("(inferred)")
    return " ".join(words) or cause.kind.value


def _short(value: Any) -> bool:
    """Scalar details are shown in the BY column; lists and mappings (an owner chain) only in full output."""
    return isinstance(value, str | int | float | bool) and len(str(value)) <= 40


__all__ = ["UNKNOWN_CAUSE", "Cause", "CauseKind", "describe"]
