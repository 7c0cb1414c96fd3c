"""Appending to the audit log, verifying its chain, reading it back and exporting it.

Every entry stores ``prev_hash`` (the entry before it; 64 zeros for the first) and
``entry_hash = sha256(prev_hash + "\\n" + payload)``, where the payload is

    json.dumps([at, event, actor, tool, target, target_name, source, tool_class, decision,
                matched_rule, approver, approval_id, outcome, error, duration_us, policy_hash],
               ensure_ascii=False)
    + "\\n" + arguments + "\\n" + details

``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``, and ``arguments`` / ``details`` the
canonical JSON text stored in the entry (sorted keys, no spaces; ``null`` when
absent). ``seq`` is not hashed: an entry's place is protected by the link to its
predecessor, so that moving, removing or inserting an entry breaks the link where
it happened, and editing one breaks its own hash.

The payload is defined so that PostgreSQL can build it itself (``json_build_array``
formats a flat array exactly as ``json.dumps`` does, and the json columns keep
their text): verification there only hashes what the server sends.

Several writers append safely: on PostgreSQL the appending transaction takes a
transaction-scoped advisory lock before reading the last entry; on SQLite the
``BEGIN IMMEDIATE`` of ``Database.write_session`` already admits one writer at a
time. ``seq`` is the primary key, so even a writer that skipped the lock could
not fork the chain: its insert would fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import event, insert, select, text

from inventory.audit.head import read_database_head, require_same_key
from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.tables import audit_checkpoints, audit_log
from inventory.errors import UsageError
from inventory.redact import redact_text, redact_value
from inventory.render import json_with_visible_escapes
from inventory.storage.database import Database
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Connection, Row
    from sqlalchemy.orm import Session

    from inventory.audit.models import AuditCheckpoint

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
# Any constant shared by every appender: it names "the audit chain" in pg_advisory_xact_lock.
_PG_CHAIN_LOCK = 0x1A0D_17C4A1
SCALAR_FIELDS = (
    "at",
    "event",
    "actor",
    "tool",
    "target",
    "target_name",
    "source",
    "tool_class",
    "decision",
    "matched_rule",
    "approver",
    "approval_id",
    "outcome",
    "error",
    "duration_us",
    "policy_hash",
)
JSON_FIELDS = ("arguments", "details")
_COLUMNS = ("seq", *SCALAR_FIELDS, *JSON_FIELDS, "prev_hash", "entry_hash", "mac")
# The same payload, built by PostgreSQL (see the module docstring).
_PG_PAYLOAD = (
    "json_build_array(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    + ", ".join(SCALAR_FIELDS[1:])
    + ")::text || E'\\n' || coalesce(arguments::text, 'null') || E'\\n' || coalesce(details::text, 'null')"
)


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


def canonical_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def prepare_fields(record: AuditRecord, at: datetime) -> dict[str, Any]:
    """The stored, hashed fields of a record: secrets redacted at any depth, JSON as canonical text."""
    return {
        "at": at,
        "event": record.event,
        "actor": record.actor,
        "tool": record.tool,
        "target": redact_text(record.target) if record.target else record.target,
        "target_name": record.target_name,
        "source": record.source,
        "tool_class": record.tool_class,
        "decision": record.decision,
        "matched_rule": record.matched_rule,
        "approver": record.approver,
        "approval_id": record.approval_id,
        "outcome": record.outcome,
        "error": redact_text(record.error) if record.error else record.error,
        "duration_us": round(record.duration_ms * 1000) if record.duration_ms is not None else None,
        "policy_hash": record.policy_hash,
        "arguments": canonical_json(redact_value(dict(record.arguments))) if record.arguments is not None else None,
        "details": canonical_json(redact_value(dict(record.details))) if record.details is not None else None,
    }


def canonical_at(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def payload(fields: Mapping[Any, Any]) -> str:
    scalars = [canonical_at(fields["at"]), *(fields[name] for name in SCALAR_FIELDS[1:])]
    arguments, details = fields["arguments"], fields["details"]
    arguments_text = "null" if arguments is None else arguments
    details_text = "null" if details is None else details
    return f"{json.dumps(scalars, ensure_ascii=False)}\n{arguments_text}\n{details_text}"


def compute_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return _digest(prev_hash, payload(fields))


def _digest(prev_hash: str, payload_text: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{payload_text}".encode()).hexdigest()


def append_in(session: Session, record: AuditRecord, audit_secrets: AuditSecrets) -> tuple[int, str]:
    """Append one entry inside the caller's write transaction (e.g. with the approval it settles).

    Returns (seq, entry_hash). The chain lock (PostgreSQL: an advisory lock; SQLite: the
    write transaction) is held until the caller commits; the head file advances after
    the commit. The database refuses an insert that does not extend the head.
    """
    seq, entry_hash = _insert_entry(session.connection(), record, audit_secrets)
    event.listen(session, "after_commit", lambda _session: audit_secrets.advance_head(seq, entry_hash), once=True)
    return seq, entry_hash


def _insert_entry(connection: Connection, record: AuditRecord, audit_secrets: AuditSecrets) -> tuple[int, str]:
    """The next entry, under the chain lock, in the connection's transaction; the caller advances the head file
    once that transaction committed."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_CHAIN_LOCK})
    last = connection.execute(
        select(audit_log.c.seq, audit_log.c.entry_hash, audit_log.c.mac).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (last.seq + 1, last.entry_hash) if last else (1, GENESIS_HASH)
    if last is not None:
        # Another replica may have appended last: extend only a chain this process's key signed.
        require_same_key(audit_secrets, last.seq, last.entry_hash, last.mac)
    # Stamped under the lock, so that times follow the chain order.
    fields = prepare_fields(record, utcnow())
    entry_hash = compute_hash(prev_hash, fields)
    mac = audit_secrets.mac(seq, entry_hash)
    connection.execute(insert(audit_log).values(seq=seq, prev_hash=prev_hash, entry_hash=entry_hash, mac=mac, **fields))
    return seq, entry_hash


def append(db: Database, record: AuditRecord) -> int:
    """Append one entry in its own transaction; returns its seq once it is committed."""
    audit_secrets = secrets_for(db)
    with db.write_connection() as connection:
        seq, entry_hash = _insert_entry(connection, record, audit_secrets)
    audit_secrets.advance_head(seq, entry_hash)
    return seq


def record_sync(db: Database, outcome: Any) -> Any:
    """One summary entry per source run (an ``inventory.sync.SourceOutcome``); returns the outcome.

    The run itself is already recorded in sync_runs; a failure to write this entry is
    logged and never turns a successful sync into a failed one.
    """
    from inventory.principals import system_principal

    result = outcome.result
    details: dict[str, Any] = {"type": outcome.type, "run_id": outcome.run_id, "objects": outcome.objects}
    if result is not None:
        details.update(
            {name: getattr(result, name) for name in ("created", "updated", "removed", "revived", "unchanged")}
        )
    record = AuditRecord(
        event="sync",
        actor=system_principal().name,
        outcome=outcome.status,
        target=f"source:{outcome.source}",
        target_name=outcome.source,
        source=outcome.source,
        error=outcome.error,
        duration_ms=outcome.duration * 1000,
        details=details,
    )
    try:
        append(db, record)
    except Exception as exc:  # the audit entry is a summary; the sync run row already holds the facts
        log.warning(
            "source %r: could not append the sync summary to the audit log: %s",
            outcome.source,
            redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__),
        )
    return outcome


# --- verification -----------------------------------------------------------------------------


@dataclass
class VerifyProblem:
    seq: int
    kind: str  # changed | removed | out_of_order | forged | truncated | checkpoint | unchecked
    message: str


@dataclass
class VerifyResult:
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    problem: VerifyProblem | None = None
    # Where the database's part of the chain starts: after the newest audit checkpoint (0: the first entry).
    start_seq: int = 0
    start_hash: str = GENESIS_HASH
    # Entries checked in archive files before the database's part (inventory/audit/archive.py).
    archived: int = 0

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Checkpoint:
    """An entry known from an earlier export: it must still be there, unchanged."""

    seq: int
    entry_hash: str


def _chain_rows(session: Session, after: int, batch: int = 20_000) -> Iterator[tuple[int, str, str, str]]:
    """(seq, prev_hash, entry_hash, payload) after entry ``after`` in chain order, streamed, payloads rebuilt here."""
    columns = [audit_log.c[name] for name in _COLUMNS]
    result = session.execute(
        select(*columns)
        .where(audit_log.c.seq > after)
        .order_by(audit_log.c.seq)
        .execution_options(stream_results=True, yield_per=batch)
    )
    for row in result:
        fields = row._mapping
        yield fields["seq"], fields["prev_hash"], fields["entry_hash"], payload(fields)


def verify_chain(
    session: Session,
    checkpoint: Checkpoint | None = None,
    *,
    in_python: bool = False,
    audit_secrets: AuditSecrets | None = None,
) -> VerifyResult:
    """Walk the chain in seq order and stop at the first entry that was changed, removed, moved or forged.

    On PostgreSQL the server walks and re-hashes the chain itself (one scan, no rows sent);
    ``in_python`` instead rebuilds and re-hashes every entry here, the way an export is
    checked off the box. Both find the same first problem. Then every entry's mac is checked
    with the audit key (an entry re-chained without the key fails), and the head file must
    still be in the log (a cut-off tail fails).

    After ``inventory audit archive`` the walk starts at the newest audit checkpoint: the first
    entry left must follow it; with the key, every checkpoint's mac is checked first.
    """
    result = VerifyResult()
    if not _start_at_checkpoint(session, result, audit_secrets):
        return result
    if session.get_bind().dialect.name == "postgresql" and not in_python:
        _verify_on_server(session, result)
    else:
        _verify_here(session, result)
    if audit_secrets is not None:
        _check_macs(session, result, audit_secrets)
        # The database's head first: where it still stands, it tells a cut tail exactly.
        if result.ok:
            _check_database_head(session, result, audit_secrets)
        if result.ok:
            _check_head(session, result, audit_secrets)
    if result.ok and checkpoint is not None:
        _check_checkpoint(session, result, checkpoint)
    return result


def checkpoint_mac(audit_secrets: AuditSecrets, checkpoint: AuditCheckpoint | Row[Any]) -> str:
    """The mac of an audit checkpoint row: its range, its last entry's hash and its archive file's hash."""
    return audit_secrets.keyed_digest(
        "audit-checkpoint",
        f"{checkpoint.first_seq}\n{checkpoint.last_seq}\n{checkpoint.entry_hash}\n{checkpoint.archive_sha256}",
    )


def load_checkpoints(session: Session) -> list[Row[Any]]:
    return list(session.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.last_seq)))


def describe_checkpoint(checkpoint: AuditCheckpoint | Row[Any]) -> str:
    return (
        f"the checkpoint after entry {checkpoint.last_seq} (entries {checkpoint.first_seq}..{checkpoint.last_seq} "
        f"archived to {checkpoint.archive_name} on {canonical_at(checkpoint.archived_at)[:19]}Z)"
    )


def _start_at_checkpoint(session: Session, result: VerifyResult, audit_secrets: AuditSecrets | None) -> bool:
    """Start ``result`` after the newest checkpoint; False (with the problem set) if the checkpoints are not sound."""
    checkpoints = load_checkpoints(session)
    expected_first = 1
    for checkpoint in checkpoints:
        problem = None
        if checkpoint.first_seq != expected_first:
            problem = f"{describe_checkpoint(checkpoint)} does not follow the one before (entry {expected_first} next)"
        elif audit_secrets is not None:
            if audit_secrets.key(create=False) is None:
                problem = f"{describe_checkpoint(checkpoint)} cannot be authenticated: the audit key is missing"
            elif not hmac.compare_digest(checkpoint.mac, checkpoint_mac(audit_secrets, checkpoint)):
                problem = f"{describe_checkpoint(checkpoint)} does not carry a valid mac: written without the audit key"
        if problem is not None:
            result.problem = VerifyProblem(checkpoint.last_seq, "checkpoint", problem)
            return False
        expected_first = checkpoint.last_seq + 1
    if checkpoints:
        newest = checkpoints[-1]
        result.start_seq, result.start_hash = newest.last_seq, newest.entry_hash
        result.last_seq, result.last_hash = result.start_seq, result.start_hash
    return True


def _check_macs(session: Session, result: VerifyResult, audit_secrets: AuditSecrets) -> None:
    """The first entry (up to the chain's first problem) whose mac is wrong, or missing after keyed entries."""
    limit = result.problem.seq if result.problem else result.last_seq
    rows = session.execute(
        select(audit_log.c.seq, audit_log.c.entry_hash, audit_log.c.mac)
        .where(audit_log.c.seq > result.start_seq, audit_log.c.seq < limit + (0 if result.problem else 1))
        .order_by(audit_log.c.seq)
    )
    keyed = False
    for seq, entry_hash, mac in rows:
        if mac is None and not keyed:
            continue  # written before the audit key existed: protected by the chain to the first keyed entry
        keyed = True
        key = audit_secrets.key(create=False)
        if key is None:
            message = (
                f"entry {seq} carries a mac but the audit key {audit_secrets.key_file} is missing: "
                "the log cannot be authenticated"
            )
            problem = VerifyProblem(seq, "forged", message)
        elif mac is None or not hmac.compare_digest(mac, audit_secrets.mac(seq, entry_hash)):
            message = f"entry {seq} does not carry a valid mac: it was written or re-chained without the audit key"
            problem = VerifyProblem(seq, "forged", message)
        else:
            continue
        _restart_at(session, result, problem)
        return


def _check_head(session: Session, result: VerifyResult, audit_secrets: AuditSecrets) -> None:
    """The head file, once a key exists: present, signed with the key, in the log, and its entry keyed.

    Without the head the tail cannot be checked (whoever cut the log could delete it), and an unsigned
    head could be written back to any entry of the log; an entry at the head without a valid mac is a
    log whose macs were stripped and re-chained (entries before the key existed never reach a head).
    """
    head = audit_secrets.read_head()
    keyed = audit_secrets.key(create=False) is not None
    if head is None:
        if keyed and result.last_seq > result.start_seq:
            message = (
                f"the tail cannot be checked: the head file {audit_secrets.head_file} is missing (every append "
                "writes it beside the key; copy it from a machine that appends, or run `serve`/`sync` here once)"
            )
            result.problem = VerifyProblem(result.last_seq, "unchecked", message)
        return
    if keyed and not audit_secrets.head_signed(head):
        message = (
            f"the head file {audit_secrets.head_file} is not signed with the audit key "
            "(written without the key, or by a version before heads were signed: the next append re-signs it)"
        )
        result.problem = VerifyProblem(head.seq, "forged", message)
        return
    if head.seq <= result.start_seq:  # archived (the newest entry is never archived)
        return
    stored = session.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == head.seq)).scalar()
    if stored is None:
        message = (
            f"entry {head.seq} (the head recorded in {audit_secrets.head_file}) is gone: "
            f"the log ends at entry {result.last_seq} "
            "(the newest entries were removed)"
        )
        result.problem = VerifyProblem(result.last_seq + 1, "truncated", message)
    elif stored != head.entry_hash:
        message = f"entry {head.seq} differs from the head recorded in {audit_secrets.head_file}"
        result.problem = VerifyProblem(head.seq, "changed", message)
    elif keyed:
        mac = session.execute(select(audit_log.c.mac).where(audit_log.c.seq == head.seq)).scalar()
        if mac is None or not hmac.compare_digest(mac, audit_secrets.mac(head.seq, head.entry_hash)):
            message = (
                f"entry {head.seq}, the head, carries no valid mac: the log's macs were stripped or rewritten "
                "without the audit key"
            )
            result.problem = VerifyProblem(head.seq, "forged", message)


def _check_database_head(session: Session, result: VerifyResult, audit_secrets: AuditSecrets) -> None:
    """The head the database keeps (audit/head.py): signed with the key, in the log, and the log's last entry.

    Only the owner's trigger moves it, only forward, so a log that ends before it was cut
    off, and a log that goes on after it grew with the trigger disabled.
    """
    head = read_database_head(session)
    if head is None:
        result.problem = VerifyProblem(
            result.last_seq + 1, "truncated", "the audit head the database keeps (table audit_head) is gone"
        )
        return
    if head.seq < 1:
        if result.last_seq > 0:
            result.problem = VerifyProblem(
                1, "forged", "the database's audit head says the log is empty, yet it holds entries"
            )
        return
    if head.mac is not None and (
        audit_secrets.key(create=False) is None
        or not hmac.compare_digest(head.mac, audit_secrets.mac(head.seq, head.entry_hash))
    ):
        message = f"the database's audit head (entry {head.seq}) does not carry a valid mac under this audit key"
        result.problem = VerifyProblem(head.seq, "forged", message)
        return
    stored = session.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == head.seq)).scalar()
    if stored is None:
        message = (
            f"entry {head.seq} (the head the database recorded) is gone: the log ends at entry {result.last_seq} "
            "(the newest entries were removed)"
        )
        result.problem = VerifyProblem(result.last_seq + 1, "truncated", message)
    elif stored != head.entry_hash:
        result.problem = VerifyProblem(head.seq, "changed", f"entry {head.seq} differs from the database's audit head")
    elif result.last_seq > head.seq:
        message = (
            f"entries {head.seq + 1}..{result.last_seq} follow the database's audit head (entry {head.seq}): "
            "they were inserted with its trigger disabled"
        )
        result.problem = VerifyProblem(head.seq + 1, "forged", message)


def _restart_at(session: Session, result: VerifyResult, problem: VerifyProblem) -> None:
    """Report ``problem``, with the good part of the chain ending just before it."""
    result.problem = problem
    result.checked = problem.seq - 1 - result.start_seq
    before = session.execute(
        select(audit_log.c.seq, audit_log.c.entry_hash)
        .where(audit_log.c.seq < problem.seq, audit_log.c.seq > result.start_seq)
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).first()
    result.last_seq, result.last_hash = (
        (before.seq, before.entry_hash) if before else (result.start_seq, result.start_hash)
    )


def _removed(expected_seq: int, seq: int) -> VerifyProblem:
    gap = f" (entries {expected_seq}..{seq - 1} were removed)" if seq - 1 > expected_seq else " (removed)"
    return VerifyProblem(expected_seq, "removed", f"entry {expected_seq} is missing{gap}")


def _out_of_order(seq: int) -> VerifyProblem:
    return VerifyProblem(
        seq,
        "out_of_order",
        f"entry {seq} does not follow entry {seq - 1}: the chain breaks here (an entry was removed, inserted or moved "
        "at this point)",
    )


def _changed(seq: int) -> VerifyProblem:
    return VerifyProblem(seq, "changed", f"entry {seq} was changed: its content no longer matches its hash")


def _verify_here(session: Session, result: VerifyResult) -> None:
    expected_seq, prev_hash = result.start_seq + 1, result.start_hash
    sha256 = hashlib.sha256
    for seq, stored_prev, entry_hash, payload_text in _chain_rows(session, result.start_seq):
        if seq != expected_seq:
            result.problem = _removed(expected_seq, seq)
        elif stored_prev != prev_hash:
            result.problem = _out_of_order(seq)
        elif sha256(f"{prev_hash}\n{payload_text}".encode()).hexdigest() != entry_hash:
            result.problem = _changed(seq)
        if result.problem is not None:
            break
        prev_hash = entry_hash
        result.checked += 1
        result.last_seq, result.last_hash = seq, prev_hash
        expected_seq = seq + 1


# One slice of the chain, [lo, hi], checked by the server in one ordered scan: each entry's
# number follows its predecessor's, its prev_hash is its predecessor's hash, and its hash
# matches its content. The slice starts one entry early, so that its first entry has a
# predecessor to be checked against; only problems at or after lo are reported.
_PG_WALK = f"""
WITH walked AS (
    SELECT seq,
           coalesce(lag(seq) OVER w + 1, :start_seq + 1) AS expected_seq,
           prev_hash = coalesce(lag(entry_hash) OVER w, :start_hash) AS linked,
           encode(sha256(convert_to(prev_hash || E'\\n' || {_PG_PAYLOAD}, 'UTF8')), 'hex') = entry_hash AS intact
    FROM audit_log
    WHERE seq <= :hi
      AND seq >= coalesce((SELECT max(seq) FROM audit_log WHERE seq < :lo AND seq > :start_seq), :lo)
    WINDOW w AS (ORDER BY seq)
)
SELECT seq, expected_seq, linked, intact FROM walked
WHERE seq >= :lo AND (seq <> expected_seq OR NOT linked OR NOT intact)
ORDER BY seq LIMIT 1
"""
# Below this many entries one scan is quicker than starting several.
_PARALLEL_FROM = 50_000


def _verify_on_server(session: Session, result: VerifyResult) -> None:
    """The chain walked by PostgreSQL, in slices on parallel connections for a long chain."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    first = result.start_seq + 1
    start = {"start_seq": result.start_seq, "start_hash": result.start_hash}
    last = session.execute(
        select(audit_log.c.seq, audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    if last is None or last.seq < first:
        return
    entries = last.seq - result.start_seq
    slices = max(1, min(4, os.cpu_count() or 1)) if entries >= _PARALLEL_FROM else 1
    step = -(-entries // slices)
    bounds = [(lo, min(lo + step - 1, last.seq)) for lo in range(first, last.seq + 1, step)]
    engine = session.get_bind()

    def walk(lo: int, hi: int) -> Any:
        with engine.connect() as conn:  # type: ignore[union-attr]
            return conn.execute(text(_PG_WALK), {"lo": lo, "hi": hi, **start}).first()

    if len(bounds) == 1:
        found = [session.execute(text(_PG_WALK), {"lo": first, "hi": last.seq, **start}).first()]
    else:
        with ThreadPoolExecutor(max_workers=len(bounds)) as pool:
            found = list(pool.map(lambda b: walk(*b), bounds))
    bad = next((row for row in found if row is not None), None)  # slices are in seq order
    if bad is None:
        result.checked, result.last_seq, result.last_hash = entries, last.seq, last.entry_hash
        return
    seq, expected_seq, linked, _intact = bad
    if seq != expected_seq:
        result.problem = _removed(expected_seq, seq)
        result.checked = expected_seq - 1 - result.start_seq
    else:
        result.problem = _out_of_order(seq) if not linked else _changed(seq)
        result.checked = seq - 1 - result.start_seq
    before = session.execute(
        select(audit_log.c.seq, audit_log.c.entry_hash)
        .where(audit_log.c.seq < seq, audit_log.c.seq > result.start_seq)
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).first()
    if before is not None:
        result.last_seq, result.last_hash = before.seq, before.entry_hash


def _check_checkpoint(session: Session, result: VerifyResult, checkpoint: Checkpoint) -> None:
    """The exported entry must still be there with the same hash (the chain alone cannot show a cut-off tail)."""
    if checkpoint.seq <= result.start_seq:  # archived since: `audit verify --archive` checks it in its archive
        return
    stored = session.execute(select(audit_log.c.entry_hash).where(audit_log.c.seq == checkpoint.seq)).scalar()
    if stored is None:
        result.problem = VerifyProblem(
            checkpoint.seq,
            "removed",
            f"entry {checkpoint.seq} of the exported checkpoint is gone: the log ends at entry {result.last_seq} (the "
            "newest entries were removed)",
        )
    elif stored != checkpoint.entry_hash:
        result.problem = VerifyProblem(
            checkpoint.seq, "checkpoint", f"entry {checkpoint.seq} differs from the exported checkpoint"
        )


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
    # Only entries before this seq: the next page back of a newest-first listing.
    before_seq: int | None = None
    limit: int | None = None
    newest_first: bool = False


def entry_row(entry: Any) -> dict[str, Any]:
    """An entry as plain values: JSON parsed, duration also in milliseconds for people."""
    row = {name: getattr(entry, name) for name in _COLUMNS}
    for name in JSON_FIELDS:
        if row[name] is not None:
            row[name] = json.loads(row[name])
    row["duration_ms"] = None if row["duration_us"] is None else row["duration_us"] / 1000
    return row


INTENT_OUTCOME = "started"
UNKNOWN_OUTCOME = "unknown"


def list_entries(session: Session, flt: AuditFilter = AuditFilter()) -> list[dict[str, Any]]:
    """Entries as rows; an intent whose call never recorded an outcome (a killed process) reads as outcome unknown."""
    rows = [entry_row(e) for e in _select(session, flt)]
    _mark_open_intents(session, rows)
    return rows


def _is_intent(row: Mapping[str, Any]) -> bool:
    return bool(row["outcome"] == INTENT_OUTCOME or (row["event"] == "approval" and row["outcome"] == "approved"))


def _mark_open_intents(session: Session, rows: list[dict[str, Any]]) -> None:
    intents = [row for row in rows if _is_intent(row)]
    if not intents:
        return
    later = session.execute(
        select(audit_log.c.details).where(
            audit_log.c.seq > min(row["seq"] for row in intents),
            audit_log.c.event == "tool_call",
            audit_log.c.outcome != INTENT_OUTCOME,
        )
    ).scalars()
    closed = {json.loads(details).get("intent_seq") for details in later if details and '"intent_seq"' in details}
    for row in intents:
        if row["seq"] not in closed:
            is_call = row["outcome"] == INTENT_OUTCOME
            row["outcome"] = UNKNOWN_OUTCOME if is_call else f"{row['outcome']} (outcome unknown)"


def _select(session: Session, flt: AuditFilter) -> Iterable[Row[Any]]:
    stmt = select(audit_log)
    exact = {
        audit_log.c.actor: flt.actor,
        audit_log.c.tool: flt.tool,
        audit_log.c.tool_class: flt.tool_class.upper() if flt.tool_class else None,
        audit_log.c.decision: flt.decision,
        audit_log.c.outcome: flt.outcome,
        audit_log.c.event: flt.event,
    }
    for column, wanted in exact.items():
        if wanted:
            stmt = stmt.where(column == wanted)
    if flt.target:
        pattern = f"%{flt.target}%"
        stmt = stmt.where(audit_log.c.target.ilike(pattern) | audit_log.c.target_name.ilike(pattern))
    if flt.since:
        stmt = stmt.where(audit_log.c.at >= flt.since)
    if flt.until:
        stmt = stmt.where(audit_log.c.at < flt.until)
    if flt.after_seq is not None:
        stmt = stmt.where(audit_log.c.seq > flt.after_seq)
    if flt.before_seq is not None:
        stmt = stmt.where(audit_log.c.seq < flt.before_seq)
    stmt = stmt.order_by(audit_log.c.seq.desc() if flt.newest_first else audit_log.c.seq)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    rows = list(session.execute(stmt))
    return list(reversed(rows)) if flt.newest_first else rows


def get_entry(session: Session, seq: int) -> dict[str, Any]:
    from inventory.errors import NotFound

    entry = session.execute(select(audit_log).where(audit_log.c.seq == seq)).first()
    if entry is None:
        raise NotFound(f"no audit entry {seq}")
    return entry_row(entry)


def export_jsonl(session: Session, out: IO[str], flt: AuditFilter = AuditFilter()) -> int:
    """One JSON object per line, every hashed field as stored (JSON fields as their canonical text) and both
    hashes: each line can be re-hashed off the box, and the last line is a checkpoint for `audit verify`."""
    count = 0
    for entry in _select(session, flt):
        out.write(export_line(entry))
        count += 1
    return count


def export_line(entry: Any) -> str:
    """One entry as a line of an export or archive: every column, ``at`` as hashed, JSON fields as their text."""
    row = {name: getattr(entry, name) for name in _COLUMNS}
    row["at"] = canonical_at(row["at"])
    # Bidi overrides and control characters as \u escapes (the same JSON): an export may be read on a terminal.
    return json_with_visible_escapes(json.dumps(row, sort_keys=True, ensure_ascii=False)) + "\n"


def line_fields(line: str) -> dict[str, Any]:
    """An export or archive line back as stored fields (``at`` a datetime); KeyError/ValueError/TypeError if not one."""
    raw = json.loads(line)
    fields = {name: raw[name] for name in _COLUMNS}
    fields["at"] = datetime.fromisoformat(fields["at"])
    for name in ("seq", "approval_id", "duration_us"):
        if fields[name] is not None and not isinstance(fields[name], int):
            raise TypeError(f"{name} is not an integer")
    return fields


__all__ = [
    "GENESIS_HASH",
    "AuditFilter",
    "AuditRecord",
    "Checkpoint",
    "VerifyProblem",
    "VerifyResult",
    "append",
    "append_in",
    "checkpoint_mac",
    "compute_hash",
    "export_jsonl",
    "export_line",
    "get_entry",
    "line_fields",
    "list_entries",
    "read_checkpoint",
    "verify_chain",
]
