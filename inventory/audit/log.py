"""Appending to the audit log, verifying its chain, reading it back and exporting it.

Every entry stores ``prev_hash`` (the entry before it; 64 zeros for the first)
and ``entry_hash = sha256(prev_hash + "\\n" + canonical JSON of its fields)``.
The fields hashed are every column but ``seq`` and the two hashes: an entry's
place is protected by the link to its predecessor, so that moving, removing or
inserting an entry breaks the link where it happened, and editing one breaks
its own hash.

Several writers append safely: on PostgreSQL the appending transaction takes a
transaction-scoped advisory lock before reading the last entry; on SQLite the
``BEGIN IMMEDIATE`` of ``Database.write_session`` already admits one writer at a
time. ``seq`` is the primary key, so even a writer that skipped the lock could
not fork the chain: its insert would fail.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from inventory.audit.models import AuditEntry
from inventory.errors import UsageError
from inventory.redact import redact_text, redact_value
from inventory.storage.database import Database
from inventory.timeutil import utcnow

GENESIS_HASH = "0" * 64
# Any constant shared by every appender: it names "the audit chain" in pg_advisory_xact_lock.
_PG_CHAIN_LOCK = 0x1A0D_17C4A1
HASHED_FIELDS = (
    "at",
    "event",
    "actor",
    "tool",
    "target",
    "target_name",
    "source",
    "arguments",
    "tool_class",
    "decision",
    "matched_rule",
    "approver",
    "approval_id",
    "outcome",
    "error",
    "duration_ms",
    "policy_hash",
    "details",
)
_COLUMNS = ("seq", *HASHED_FIELDS, "prev_hash", "entry_hash")


@dataclass
class AuditRecord:
    """What a caller knows about one event; ``append`` redacts it, stamps it and chains it."""

    event: str
    actor: str
    outcome: str
    tool: str | None = None
    target: str | None = None
    target_name: str | None = None
    source: str | None = None
    arguments: Mapping[str, Any] | None = None
    tool_class: str | None = None
    decision: str | None = None
    matched_rule: str | None = None
    approver: str | None = None
    approval_id: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    policy_hash: str | None = None
    details: Mapping[str, Any] | None = None


def _json_safe(value: Any) -> Any:
    """Plain JSON types only, so that what is hashed is exactly what the database gives back."""
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str, ensure_ascii=False))


def prepare_fields(record: AuditRecord, at: datetime) -> dict[str, Any]:
    """The stored, hashed fields of a record: secrets redacted at any depth, values JSON-plain."""
    return {
        "at": at,
        "event": record.event,
        "actor": record.actor,
        "tool": record.tool,
        "target": redact_text(record.target) if record.target else record.target,
        "target_name": record.target_name,
        "source": record.source,
        "arguments": _json_safe(redact_value(dict(record.arguments))) if record.arguments is not None else None,
        "tool_class": record.tool_class,
        "decision": record.decision,
        "matched_rule": record.matched_rule,
        "approver": record.approver,
        "approval_id": record.approval_id,
        "outcome": record.outcome,
        "error": redact_text(record.error) if record.error else record.error,
        # Rounded so that the float survives every engine's storage unchanged.
        "duration_ms": round(record.duration_ms, 3) if record.duration_ms is not None else None,
        "policy_hash": record.policy_hash,
        "details": _json_safe(redact_value(dict(record.details))) if record.details is not None else None,
    }


def _canonical_at(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def compute_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    payload = {name: fields[name] for name in HASHED_FIELDS}
    payload["at"] = _canonical_at(fields["at"])
    text_form = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}\n{text_form}".encode()).hexdigest()


def append_in(session: Session, record: AuditRecord) -> tuple[int, str]:
    """Append one entry inside the caller's write transaction; returns (seq, entry_hash)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHAIN_LOCK})
    last = session.execute(select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
    # Stamped under the lock, so that times follow the chain order.
    fields = prepare_fields(record, utcnow())
    entry_hash = compute_hash(prev_hash, fields)
    session.execute(insert(AuditEntry).values(seq=seq, prev_hash=prev_hash, entry_hash=entry_hash, **fields))
    return seq, entry_hash


def append(db: Database, record: AuditRecord) -> int:
    """Append one entry in its own transaction; returns its seq."""
    with db.write_session() as session:
        seq, _ = append_in(session, record)
    return seq


# --- verification -----------------------------------------------------------------------------


@dataclass
class VerifyProblem:
    seq: int
    kind: str  # changed | removed | out_of_order | checkpoint
    message: str


@dataclass
class VerifyResult:
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem: VerifyProblem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Checkpoint:
    """An entry known from an earlier export: it must still be there, unchanged."""

    seq: int
    entry_hash: str


def _rows(session: Session, batch: int = 10_000) -> Iterator[Any]:
    columns = [getattr(AuditEntry, name) for name in _COLUMNS]
    result = session.execute(
        select(*columns).order_by(AuditEntry.seq).execution_options(stream_results=True, yield_per=batch)
    )
    yield from result


def verify_chain(session: Session, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Walk the chain in seq order and stop at the first entry that was changed, removed or moved."""
    result = VerifyResult()
    expected_seq, prev_hash = 1, GENESIS_HASH
    checkpoint_seen = False
    for row in _rows(session):
        fields = row._mapping
        seq = fields["seq"]
        if seq != expected_seq:
            result.problem = VerifyProblem(
                expected_seq,
                "removed",
                f"entry {expected_seq} is missing" + (f" (entries {expected_seq}..{seq - 1} were removed)" if seq - 1 > expected_seq else " (removed)"),
            )
            return result
        if fields["prev_hash"] != prev_hash:
            result.problem = VerifyProblem(
                seq,
                "out_of_order",
                f"entry {seq} does not follow entry {seq - 1}: the chain breaks here "
                "(an entry was removed, inserted or moved at this point)",
            )
            return result
        if compute_hash(prev_hash, fields) != fields["entry_hash"]:
            result.problem = VerifyProblem(seq, "changed", f"entry {seq} was changed: its content no longer matches its hash")
            return result
        if checkpoint is not None and seq == checkpoint.seq:
            checkpoint_seen = True
            if fields["entry_hash"] != checkpoint.entry_hash:
                result.problem = VerifyProblem(seq, "checkpoint", f"entry {seq} differs from the exported checkpoint")
                return result
        prev_hash = fields["entry_hash"]
        result.checked += 1
        result.last_seq, result.last_hash = seq, prev_hash
        expected_seq = seq + 1
    if checkpoint is not None and not checkpoint_seen:
        result.problem = VerifyProblem(
            checkpoint.seq,
            "removed",
            f"entry {checkpoint.seq} of the exported checkpoint is gone: the log ends at entry {result.last_seq} "
            "(the newest entries were removed)",
        )
    return result


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The last entry of a JSONL export (or a JSON object with seq and entry_hash)."""
    try:
        lines = [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        last = json.loads(lines[-1])
        return Checkpoint(int(last["seq"]), str(last["entry_hash"]))
    except (OSError, IndexError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not an audit export or checkpoint ({type(exc).__name__}: {exc})") from None


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    tool: str | None = None
    tool_class: str | None = None
    decision: str | None = None
    outcome: str | None = None
    event: str | None = None
    target: str | None = None  # substring of the target or its name
    since: datetime | None = None
    until: datetime | None = None
    after_seq: int | None = None
    limit: int | None = None
    newest_first: bool = False


def entry_row(entry: Any) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _COLUMNS}


def list_entries(session: Session, flt: AuditFilter = AuditFilter()) -> list[dict[str, Any]]:
    return [entry_row(e) for e in _select(session, flt)]


def _select(session: Session, flt: AuditFilter) -> Iterable[AuditEntry]:
    stmt = select(AuditEntry)
    exact = {
        AuditEntry.actor: flt.actor,
        AuditEntry.tool: flt.tool,
        AuditEntry.tool_class: flt.tool_class.upper() if flt.tool_class else None,
        AuditEntry.decision: flt.decision,
        AuditEntry.outcome: flt.outcome,
        AuditEntry.event: flt.event,
    }
    for column, wanted in exact.items():
        if wanted:
            stmt = stmt.where(column == wanted)
    if flt.target:
        pattern = f"%{flt.target}%"
        stmt = stmt.where(AuditEntry.target.ilike(pattern) | AuditEntry.target_name.ilike(pattern))
    if flt.since:
        stmt = stmt.where(AuditEntry.at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditEntry.at < flt.until)
    if flt.after_seq is not None:
        stmt = stmt.where(AuditEntry.seq > flt.after_seq)
    stmt = stmt.order_by(AuditEntry.seq.desc() if flt.newest_first else AuditEntry.seq)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    rows = list(session.execute(stmt).scalars())
    return list(reversed(rows)) if flt.newest_first else rows


def get_entry(session: Session, seq: int) -> dict[str, Any]:
    from inventory.errors import NotFound

    entry = session.get(AuditEntry, seq)
    if entry is None:
        raise NotFound(f"no audit entry {seq}")
    return entry_row(entry)


def export_jsonl(session: Session, out: IO[str], flt: AuditFilter = AuditFilter()) -> int:
    """One JSON object per line, with both hashes: the last line is a checkpoint for `audit verify`."""
    count = 0
    for entry in _select(session, flt):
        row = entry_row(entry)
        row["at"] = _canonical_at(row["at"])
        out.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count


def count_entries(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


__all__ = [
    "GENESIS_HASH",
    "AuditFilter",
    "AuditRecord",
    "Checkpoint",
    "VerifyProblem",
    "VerifyResult",
    "append",
    "append_in",
    "compute_hash",
    "export_jsonl",
    "get_entry",
    "list_entries",
    "read_checkpoint",
    "verify_chain",
]
