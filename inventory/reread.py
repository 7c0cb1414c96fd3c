"""The closed loop where nobody follows a source live: after a tool call ran, its target is read again.

A call on a source that a live watcher follows (inventory/live.py) is observed through the change rows
the watcher writes (``inventory.observe.wait_for_changes``). A source nobody follows (``inventory tool
run`` with no ``sync`` loop, a source with ``events: false``, a connector that does not stream) would
otherwise learn of the change only at its next poll, which ties the change to the call by time alone
(inferred). Instead, the runner re-reads the one target object at its source right after the call:

1. The connector's ``LiveLookup.read`` (declared beside its tools, its SDK imported when it runs) reads
   the object as a sync reads it and returns a delta ``Snapshot`` of its records, or the object deleted
   when the source says it is gone. The connector never writes.
2. ``write_reread`` writes that delta the way a live delta is written: under the source's sync lock
   (a full sync and a re-read never overlap), in one write transaction, through ``attribute_tool_calls``
   and ``reconcile`` (identity by the source's ids; an unchanged object writes nothing). The target's
   change rows name the call's audit entry as their cause, not inferred: the call's own re-read saw it
   (the other records of the re-read, a guest as a host or the pod a controller made again, name the
   call too, inferred, unless the source told their cause).
   A re-read is no sync run: its rows carry the source's newest run (a new run row would pass for a
   sync in ``status`` and in the loop's freshness check).
3. ``reread_until_changed`` repeats 1 and 2 with a short backoff (``FIRST_PAUSE`` doubling to
   ``MAX_PAUSE``) until the target's change rows appear or the observe window ends. A read that fails
   ends the observation at once: the call ran and is recorded; what it changed is then left to the
   next sync.

No policy here: the runner (inventory.policy.execute) calls in, lazily.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from inventory.cause import CauseKind
from inventory.errors import InventoryError, SourceLockHeld
from inventory.locks import source_lock
from inventory.machine_links import relink_after_delta
from inventory.observe import Seen, attribute_tool_calls
from inventory.outcome import bounded
from inventory.reconcile import ReconcileResult, reconcile
from inventory.records import ObjectKey, Record, Snapshot
from inventory.storage.database import Database
from inventory.storage.models import Source, SyncRun
from inventory.storage.store import SqlStore

# The first pause between two re-reads, doubled after each read that saw no change, up to MAX_PAUSE.
FIRST_PAUSE = 0.1
MAX_PAUSE = 2.0


@dataclass(frozen=True)
class ReadFailed:
    """A re-read that could not be made or written: why (naming the source and the object)."""

    reason: str


def write_reread(
    db: Database, source: str, snapshot: Snapshot, target: ObjectKey, intent_seq: int, *, wait: float
) -> ReconcileResult:
    """Write one re-read's delta as a live delta is written; ``target``'s change rows are the call's doing.

    Raises SourceLockHeld when a full sync holds the source's sync lock for longer than ``wait`` seconds.
    """
    if not snapshot.delta:  # a full snapshot would remove every object it does not hold: never from a re-read
        raise InventoryError(f"source {source!r}: a re-read must be a delta (Snapshot.changes)")
    with source_lock(db, source, wait=wait), db.write_session() as session:
        found = session.execute(select(Source.id).where(Source.name == source)).scalar()
        if found is None:
            raise InventoryError(f"source {source!r} is not in the inventory (run a sync first)")
        source_id = int(found)
        newest_run = select(SyncRun.id).where(SyncRun.source_id == source_id).order_by(SyncRun.id.desc()).limit(1)
        newest = session.execute(newest_run).scalar()
        attribute_tool_calls(session, source, snapshot)
        cause = snapshot.causes.get(target)
        if cause is not None and cause.kind is CauseKind.TOOL_CALL and cause.ref == str(intent_seq):
            # Read for this call, right after it: what changed is its doing, not a match by time.
            snapshot.causes[target] = replace(cause, inferred=False)
            # What else the re-read holds is the same object seen otherwise (a guest as a host) or what the call
            # replaced it with (a pod its controller made again): the call's doing too, matched by the read.
            others = [(t, r.kind, r.external_id) for t, rs in _typed(snapshot) for r in rs] + sorted(snapshot.deleted)
            for key in others:
                if key != target and key not in snapshot.causes:
                    snapshot.causes[key] = replace(cause, inferred=True)
        result = reconcile(snapshot, SqlStore(session), source_id=source_id, run_id=int(newest or 0))
        relink_after_delta(session, source_id, snapshot, result.changed)
    return result


def _typed(snapshot: Snapshot) -> list[tuple[str, Sequence[Record]]]:
    return [("host", snapshot.hosts), ("workload", snapshot.workloads), ("service", snapshot.services)]


def reread_until_changed(
    read: Callable[[], Snapshot],
    write: Callable[[Snapshot, float], Any],
    changes: Callable[[], Sequence[dict[str, Any]]],
    timeout: float,
    *,
    sleep: Callable[[float], Any] = time.sleep,
) -> tuple[Seen, int, ReadFailed | None]:
    """Read, write and look for the target's change rows until some appear or ``timeout`` passes.

    ``write(snapshot, wait)``: ``wait`` is how long it may wait for the source's sync lock. Returns what was
    seen, how many reads were made, and why the re-reading stopped early (None: it did not).
    """
    started = time.monotonic()
    pause = FIRST_PAUSE
    reads = 0
    while True:
        try:
            snapshot = read()
            reads += 1
            write(snapshot, max(0.0, timeout - (time.monotonic() - started)))
        except SourceLockHeld:
            pass  # a full sync is writing the source: it records the change; its rows are looked for below
        except InventoryError as exc:
            return Seen(list(changes()), time.monotonic() - started), reads, ReadFailed(bounded(str(exc)))
        except Exception as exc:  # a connector's bug, a database error: the call must not fail after the fact
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = bounded(f"{type(exc).__name__}: {first}".rstrip(": "))
            return Seen(list(changes()), time.monotonic() - started), reads, ReadFailed(reason)
        found = list(changes())
        elapsed = time.monotonic() - started
        if found or elapsed >= timeout:
            return Seen(found, elapsed), reads, None
        sleep(min(pause, timeout - elapsed))
        pause = min(pause * 2, MAX_PAUSE)


__all__ = ["FIRST_PAUSE", "MAX_PAUSE", "ReadFailed", "reread_until_changed", "write_reread"]
