"""Our own tool calls in the change history: which changes they made, and what a call was seen to do.

Two directions over the same facts (the audit log's write-ahead intents and the change rows):

- ``attribute_tool_calls``: a snapshot about to be written (a delta or a full sync) gets, for every
  object that is the target of one of our tool calls, the call as its cause. A call covers its target
  from its intent (committed before it ran) until ``ATTRIBUTION_GRACE`` after its outcome; a call
  whose outcome is not written yet covers it still. The match is by the target's identity (source,
  kind, external id) in that window.

  Which cause wins: ours, always. The tool call names who asked (principal, on behalf of whom, the
  audit entry), which the source cannot; the source's own cause, when it told one (a Docker event,
  a Proxmox task of our API user, a Kubernetes field manager), is kept whole in ``detail["source"]``.
  The attribution is ``inferred`` when only the time ties the change to the call: the source told
  no cause for it (a poll found a difference), or its own cause was itself matched by time. A
  change the source reported as an event on the target during the call is the call's doing.

- ``wait_for_changes`` and ``watched``: after a call ran, its target is observed (the closed loop of
  ``inventory.policy.execute``): where a watcher follows the target's source (in this process, or
  another whose watch session beats in the database), the change rows it writes for the target
  are awaited, for a bounded time. Where nobody follows it, inventory/reread.py re-reads the target
  and writes its change itself, through ``attribute_tool_calls`` as a watcher's delta is written.

No sync machinery here: the policy side imports this module.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select

from inventory.audit.tables import audit_log
from inventory.cause import Cause, CauseKind
from inventory.outcome import SyncStatus
from inventory.records import Snapshot
from inventory.storage.tables import changes, sources, sync_runs
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

# A change of a call's target this long after the call's outcome is still taken for its doing (the
# source reports late: a poll, an event stream's batch).
ATTRIBUTION_GRACE = 30.0
# A call still without an outcome (running, or its process died) covers its target this long at most.
OPEN_CALL_LIMIT = 3600.0
# A watch session that has not beaten for this long is taken for dead (live.HEARTBEAT_SECONDS beats).
WATCH_ALIVE_SECONDS = 90.0
# How often a wait for a change row asks the database again.
POLL_SECONDS = 0.1

INTENT_OUTCOME = "started"  # as inventory.audit.log.INTENT_OUTCOME (not imported: no cycle through the audit log)
OBSERVED_OUTCOME = "observed"


@dataclass(frozen=True)
class ToolCallWindow:
    """One of our tool calls on an object, and the time in which a change of that object is its doing."""

    seq: int  # the write-ahead intent's audit entry
    tool: str
    actor: str
    on_behalf_of: str | None
    object_type: str
    kind: str
    external_id: str
    started_at: datetime
    ended_at: datetime | None  # the outcome's time; None: not written yet

    def covers(self, at: datetime) -> bool:
        if at < self.started_at:
            return False
        if self.ended_at is None:
            return at - self.started_at <= timedelta(seconds=OPEN_CALL_LIMIT)
        return at <= self.ended_at + timedelta(seconds=ATTRIBUTION_GRACE)

    def cause(self, told: Cause | None) -> Cause:
        detail: dict[str, Any] = {"source": told.to_json()} if told is not None else {}
        return Cause(
            CauseKind.TOOL_CALL,
            actor=self.actor,
            on_behalf_of=self.on_behalf_of,
            action=self.tool,
            ref=str(self.seq),
            at=self.started_at,
            inferred=told is None or told.inferred,
            detail=detail,
        )


def parse_target(target: str | None, source: str) -> tuple[str, str, str] | None:
    """``workload:pve/qemu/homelab/101`` -> (workload, qemu, homelab/101) for a call on ``source``."""
    if not target:
        return None
    object_type, _, rest = target.partition(":")
    prefix = f"{source}/"
    if object_type == "source" or not rest.startswith(prefix):
        return None
    kind, slash, external_id = rest[len(prefix) :].partition("/")
    return (object_type, kind, external_id) if slash and kind and external_id else None


def _details(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recent_tool_calls(session: Connection | Session, source: str, now: datetime | None = None) -> list[ToolCallWindow]:
    """Our calls that changed (or may have changed) objects of ``source`` and still cover them at ``now``."""
    now = now or utcnow()
    since = now - timedelta(seconds=OPEN_CALL_LIMIT)
    is_intent = or_(
        and_(audit_log.c.event == "tool_call", audit_log.c.outcome == INTENT_OUTCOME),
        and_(audit_log.c.event == "approval", audit_log.c.outcome == "approved"),
    )
    intents = session.execute(
        select(
            audit_log.c.seq,
            audit_log.c.at,
            audit_log.c.actor,
            audit_log.c.tool,
            audit_log.c.target,
            audit_log.c.tool_class,
            audit_log.c.details,
        ).where(audit_log.c.at >= since, audit_log.c.source == source, is_intent)
    ).all()
    # A read-only call changes nothing: a change near it is somebody else's.
    intents = [row for row in intents if row.tool and row.tool_class != "READ_ONLY"]
    if not intents:
        return []
    first = min(row.seq for row in intents)
    ended: dict[int, datetime] = {}
    for at, details in session.execute(
        select(audit_log.c.at, audit_log.c.details).where(
            audit_log.c.seq > first,
            audit_log.c.source == source,
            audit_log.c.event == "tool_call",
            audit_log.c.outcome.not_in([INTENT_OUTCOME, OBSERVED_OUTCOME]),
        )
    ):
        intent = _details(details).get("intent_seq")
        if isinstance(intent, int):
            ended[intent] = at
    windows = []
    for row in intents:
        parsed = parse_target(row.target, source)
        if parsed is None:
            continue
        behalf = _details(row.details).get("on_behalf_of")
        windows.append(
            ToolCallWindow(
                row.seq,
                row.tool,
                row.actor,
                behalf if isinstance(behalf, str) else None,
                *parsed,
                row.at,
                ended.get(row.seq),
            )
        )
    return [w for w in windows if w.covers(now)]


def attribute_tool_calls(
    session: Connection | Session, source: str, snapshot: Snapshot, now: datetime | None = None
) -> int:
    """Make our tool calls the cause of their targets' changes in ``snapshot``; returns how many targets.

    The newest call on an object wins. A cause set here is stored only where the object did change.
    """
    now = now or utcnow()
    windows = sorted(recent_tool_calls(session, source, now), key=lambda w: w.seq)
    for window in windows:
        key = (window.object_type, window.kind, window.external_id)
        told = snapshot.causes.get(key)
        if told is not None and told.kind is CauseKind.TOOL_CALL:
            told = Cause.from_json(told.detail.get("source")) if told.detail.get("source") else None
        snapshot.causes[key] = window.cause(told)
    return len(windows)


# --- watchers in this process, and waiting for what they write ----------------------------------------

_watching: dict[str, int] = {}
_watching_lock = threading.Lock()


def watching_here(source: str, *, on: bool) -> None:
    """Called by inventory.live: a watch session of ``source`` started (on) or ended in this process."""
    with _watching_lock:
        count = _watching.get(source, 0) + (1 if on else -1)
        if count > 0:
            _watching[source] = count
        else:
            _watching.pop(source, None)


def watched(session: Connection | Session, source: str, now: datetime | None = None) -> str | None:
    """Who follows ``source`` live: "this process", "another process", or None (nobody: a poll will see it)."""
    with _watching_lock:
        if source in _watching:
            return "this process"
    now = now or utcnow()
    beat = session.execute(
        select(sync_runs.c.finished_at)
        .join(sources, sources.c.id == sync_runs.c.source_id)
        .where(sources.c.name == source, sync_runs.c.status == SyncStatus.WATCHING.value)
        .order_by(sync_runs.c.id.desc())
        .limit(1)
    ).scalar()
    if beat is not None and now - beat <= timedelta(seconds=WATCH_ALIVE_SECONDS):
        return "another process"
    return None


@dataclass(frozen=True)
class Seen:
    """Change rows of one object, as a tool call's observation reports them."""

    changes: list[dict[str, Any]]
    waited: float

    @property
    def ids(self) -> list[int]:
        return [int(c["id"]) for c in self.changes]

    def describe(self, since: datetime) -> str:
        """ "status running -> stopped after 2.4 s" (the time from the call's intent to its first change row)."""
        first = self.changes[0]
        parts: list[str] = []
        for change in self.changes:
            diff = change.get("diff") or {}
            if diff:
                parts.extend(f"{field} {_short(old)} -> {_short(new)}" for field, (old, new) in sorted(diff.items()))
            else:
                parts.append(str(change["action"]))
        after = max(0.0, (first["at"] - since).total_seconds())
        return f"{'; '.join(parts)} after {after:.1f} s"


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def changes_of(
    session: Connection | Session, object_type: str, object_id: int, since: datetime
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(changes.c.id, changes.c.at, changes.c.action, changes.c.diff, changes.c.cause)
        .where(changes.c.object_type == object_type, changes.c.object_id == object_id, changes.c.at >= since)
        .order_by(changes.c.id)
    ).all()
    return [{"id": r.id, "at": r.at, "action": r.action, "diff": r.diff, "cause": r.cause} for r in rows]


def wait_for_changes(
    read: Callable[[], Sequence[dict[str, Any]]],
    timeout: float,
    *,
    settle: float = 0.3,
    sleep: Callable[[float], Any] = time.sleep,
) -> Seen:
    """Poll ``read`` until it returns change rows (then ``settle`` longer, for the rest of one batch),
    or ``timeout`` passes. Returns what was seen (maybe nothing)."""
    started = time.monotonic()
    found: list[dict[str, Any]] = []
    while True:
        found = list(read())
        elapsed = time.monotonic() - started
        if found:
            sleep(min(settle, max(0.0, timeout - elapsed)))
            return Seen(list(read()), time.monotonic() - started)
        if elapsed >= timeout:
            return Seen([], elapsed)
        sleep(min(POLL_SECONDS, timeout - elapsed))


__all__ = [
    "ATTRIBUTION_GRACE",
    "Seen",
    "ToolCallWindow",
    "attribute_tool_calls",
    "changes_of",
    "parse_target",
    "recent_tool_calls",
    "wait_for_changes",
    "watched",
    "watching_here",
]
