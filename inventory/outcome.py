"""What one run of a source came to: its status, declared once, and the outcome every observer is told.

Light on purpose (no database, no connector): metrics, notifications and the CLI's
rendering import it without loading the sync machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inventory.reconcile import ReconcileResult


class SyncStatus(StrEnum):
    """How a run of a source ended. The first four are stored in ``sync_runs.status``."""

    RUNNING = "running"  # a stored run not finished yet (or whose process died mid-sync)
    SUCCESS = "success"  # a complete snapshot reconciled
    PARTIAL = "partial"  # something was not read: upserts only, nothing removed for what was missed
    FAILED = "failed"  # nothing could be read or written
    LOCKED = "locked"  # another process was syncing the source; nothing stored
    SKIPPED = "skipped"  # the loop found it freshly synced by another process; nothing stored

    @property
    def read_something(self) -> bool:
        """A run that brought the inventory up to date with what the source answered."""
        return self in (SyncStatus.SUCCESS, SyncStatus.PARTIAL)


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
        return f"{self.source}: {self.status}, {self.objects} objects ({counts}) in {self.duration:.2f}s"
