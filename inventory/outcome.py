"""What one run of a source came to: its status, declared once, and the outcome every observer is told.

Light on purpose (no database, no connector): metrics, notifications and the CLI's
rendering import it without loading the sync machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inventory.reconcile import ReconcileResult


class SyncStatus(StrEnum):
    """How a run of a source ended. The first five are stored in ``sync_runs.status``."""

    RUNNING = "running"  # a stored run not finished yet (or whose process died mid-sync)
    SUCCESS = "success"  # every scope it should read was read (warnings, facts, allowed): exit 0
    PARTIAL = "partial"  # a scope it should have read failed: upserts, removal only in scopes read whole
    FAILED = "failed"  # nothing could be read or written
    # Reached, but its credentials may read none of what it should (every scope forbidden): rows kept,
    # not fresh (its last success stays the last), exit 1, the error says what to grant.
    FORBIDDEN = "forbidden"
    LOCKED = "locked"  # another process was syncing the source; nothing stored
    SKIPPED = "skipped"  # the loop found it freshly synced by another process; nothing stored
    # A watch session (inventory/live.py), stored while it follows the source's changes: fresh while it beats.
    WATCHING = "watching"

    @property
    def read_something(self) -> bool:
        """A run that brought the inventory up to date with what the source answered."""
        return self in (SyncStatus.SUCCESS, SyncStatus.PARTIAL)

    @property
    def failing(self) -> bool:
        """A run that brought nothing up to date: backed off, notified as a failed source."""
        return self in (SyncStatus.FAILED, SyncStatus.FORBIDDEN)


# How much of a run's error is kept (``sync_runs.last_error``) and printed: about 1 KB.
ERROR_LIMIT = 1024
# How many resources a summary line names before "...".
EXAMPLES = 3


def summarize_problems(problems: Sequence[str]) -> list[str]:
    """One line per kind of resource and reason, with a count and a few examples.

    Problems are "resource: reason" lines (``Snapshot.fail``); the kind of a resource is
    its first word ("container web-1 inspect" -> "container"). 59 containers failing for
    one reason become "59 container failed (engine unreachable): container web-1 inspect, ...".
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for line in problems:
        resource, separator, reason = line.partition(": ")
        if not separator:
            resource, reason = line, ""
        groups.setdefault((resource.split(" ", 1)[0], reason), []).append(resource)
    lines = []
    for (kind, reason), resources in groups.items():
        if len(resources) == 1:
            lines.append(f"{resources[0]}: {reason}" if reason else resources[0])
            continue
        shown = ", ".join(resources[:EXAMPLES]) + (", ..." if len(resources) > EXAMPLES else "")
        lines.append(f"{len(resources)} {kind} failed" + (f" ({reason})" if reason else "") + f": {shown}")
    return lines


def bounded(text: str, limit: int = ERROR_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()} ... ({len(text) - limit} more characters)"


@dataclass
class SourceOutcome:
    source: str
    type: str
    status: SyncStatus
    error: str | None = None
    result: ReconcileResult | None = None
    objects: int = 0
    duration: float = 0.0
    run_id: int | None = None
    # Facts the run found (a node down, a kind skipped for lack of permission), each logged once.
    warnings: list[str] = field(default_factory=list)
    # A full sync of a source whose changes are followed: the objects it had to repair (None: not such a sync).
    drift_repaired: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == SyncStatus.SUCCESS

    def describe(self) -> str:
        """One line per synced source, the same in loop logs and `sync --once` output."""
        r = self.result
        if r is None:
            shown = self.error and self.status != SyncStatus.FAILED
            return f"{self.source}: {self.status}" + (f": {self.error}" if shown else "")
        counts = (
            f"{r.created} created, {r.updated} updated, {r.removed} removed, {r.revived} revived, "
            f"{r.unchanged} unchanged"
        )
        warned = f", {len(self.warnings)} warning{'s' if len(self.warnings) != 1 else ''}" if self.warnings else ""
        return f"{self.source}: {self.status}{warned}, {self.objects} objects ({counts}) in {self.duration:.2f}s"
