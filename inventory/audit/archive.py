"""Archiving the audit log: old entries moved to a file, a keyed checkpoint left behind, one chain verified.

The audit log is never pruned silently. ``archive`` (``inventory audit archive``), run by the
database owner:

1. verifies the log as it is (an archive never blesses a broken chain);
2. writes the entries after the newest checkpoint and before ``--before`` (never the newest
   entry: new entries chain to it) to a new JSON-lines file, one line per entry with every
   column (seq, prev_hash, entry_hash, the hashed payload's fields, mac), as ``audit export``;
3. in one transaction appends an ``archive`` entry to the log and records an ``audit_checkpoints``
   row: the range, the last entry's hash, the file's sha256 and a mac under the audit key
   (the database checks that the checkpoint names an entry of the log and follows the last one);
4. deletes the archived entries oldest first, a batch per transaction (the database refuses
   any delete above the newest checkpoint); an interrupted run is finished by the next one.

``verify_with_archives`` walks the archive files and the database as one chain: seq by seq
from the first entry, every hash and mac, each file's sha256 against its checkpoint, and
the database's first entry chained to the newest checkpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.orm import Session

from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.log import (
    GENESIS_HASH,
    AuditRecord,
    VerifyProblem,
    VerifyResult,
    append_in,
    checkpoint_mac,
    compute_hash,
    describe_checkpoint,
    export_line,
    line_fields,
    load_checkpoints,
    verify_chain,
)
from inventory.audit.models import AuditCheckpoint, AuditEntry
from inventory.errors import UsageError
from inventory.retention import deleted_rows
from inventory.storage.database import Database
from inventory.timeutil import utcnow

DEFAULT_BATCH = 5000


@dataclass
class ArchiveResult:
    first_seq: int = 0
    last_seq: int = 0
    entries: int = 0
    path: Path | None = None
    sha256: str | None = None
    # Entries deleted from the database (also those left by an interrupted archive).
    deleted: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "entries": self.entries,
            "file": str(self.path) if self.path else None,
            "sha256": self.sha256,
            "deleted": self.deleted,
        }


def archive(
    db: Database, before: datetime, path: str | os.PathLike[str] | None, *, actor: str, batch_size: int = DEFAULT_BATCH
) -> ArchiveResult:
    """Move the entries older than ``before`` to the file ``path`` (default ``audit-<first>-<last>.jsonl``)."""
    audit_secrets = secrets_for(db)
    if audit_secrets.key(create=False) is None:
        raise UsageError(f"the audit key {audit_secrets.key_file} is missing: an archive's checkpoint cannot be signed")
    result = ArchiveResult()
    with db.session() as session:
        verified = verify_chain(session, audit_secrets=audit_secrets)
        if not verified.ok:
            assert verified.problem is not None
            raise UsageError(f"the audit log does not verify, so it is not archived: {verified.problem.message}")
        start = verified.start_seq
        newest = session.execute(select(func.max(AuditEntry.seq))).scalar() or 0
        last = session.execute(
            select(func.max(AuditEntry.seq)).where(
                AuditEntry.seq > start, AuditEntry.seq < newest, AuditEntry.at < before
            )
        ).scalar()
    # Entries left below the checkpoint by an interrupted archive go first.
    result.deleted += _delete_archived(db, start, batch_size)
    if last is None:
        return result
    target = Path(path) if path else Path(f"audit-{start + 1}-{last}.jsonl")
    with db.session() as session:
        digest, count, last_hash = _write_archive(session, target, start, last)
    result.first_seq, result.last_seq, result.entries, result.path, result.sha256 = (
        start + 1,
        last,
        count,
        target,
        digest,
    )
    checkpoint = AuditCheckpoint(
        first_seq=start + 1,
        last_seq=last,
        entry_hash=last_hash,
        archived_at=utcnow(),
        archived_by=actor,
        archive_name=target.name,
        archive_sha256=digest,
    )
    checkpoint.mac = checkpoint_mac(audit_secrets, checkpoint)
    record = AuditRecord(
        event="archive",
        actor=actor,
        outcome="success",
        target=f"audit:{start + 1}..{last}",
        details={"first_seq": start + 1, "last_seq": last, "file": target.name, "sha256": digest},
    )
    with db.write_session() as session:
        append_in(session, record, audit_secrets)
        session.add(checkpoint)
    result.deleted += _delete_archived(db, last, batch_size)
    return result


def _write_archive(session: Session, target: Path, start: int, last: int) -> tuple[str, int, str]:
    """Write entries start+1..last to ``target`` (never over an existing file); (sha256, entries, last hash)."""
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    count, last_hash = 0, GENESIS_HASH
    try:
        out = open(partial, "x", encoding="utf-8")  # noqa: SIM115  (closed below, renamed only when complete)
    except FileExistsError:
        raise UsageError(f"{partial} exists: another archive is being written, or remove it") from None
    except OSError as exc:
        raise UsageError(f"{target}: cannot write the archive: {exc.strerror}") from None
    try:
        with out:
            rows = session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > start, AuditEntry.seq <= last)
                .order_by(AuditEntry.seq)
                .execution_options(yield_per=5000)
            ).scalars()
            for entry in rows:
                line = export_line(entry)
                out.write(line)
                digest.update(line.encode("utf-8"))
                count, last_hash = count + 1, entry.entry_hash
            out.flush()
            os.fsync(out.fileno())
        if target.exists():
            raise UsageError(f"{target} exists: an archive is never overwritten (give another --file)")
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), count, last_hash


def _delete_archived(db: Database, up_to: int, batch_size: int) -> int:
    """Delete the entries up to ``up_to`` (archived: the database refuses any other), oldest first, in batches."""
    deleted = 0
    while True:
        with db.write_session() as session:
            low = session.execute(select(func.min(AuditEntry.seq)).where(AuditEntry.seq <= up_to)).scalar()
            if low is None:
                return deleted
            high = min(up_to, low + batch_size - 1)
            deleted += deleted_rows(session, delete(AuditEntry).where(AuditEntry.seq >= low, AuditEntry.seq <= high))


# --- verification -----------------------------------------------------------------------------


def verify_with_archives(
    session: Session,
    paths: Sequence[str | os.PathLike[str]],
    audit_secrets: AuditSecrets,
    *,
    in_python: bool = False,
) -> VerifyResult:
    """The archives (in any order) and the database checked as one chain from the first entry."""
    checkpoints = {c.last_seq: c for c in load_checkpoints(session)}
    walk = _ArchiveWalk(audit_secrets)
    archives = sorted((_read_archive(Path(p)) for p in paths), key=lambda a: a.first_seq)
    for archive_file in archives:
        problem = walk.check(archive_file, checkpoints)
        if problem is not None:
            return VerifyResult(checked=walk.checked, last_seq=walk.seq, last_hash=walk.hash, problem=problem)
    newest = max(checkpoints) if checkpoints else 0
    if walk.seq != newest:
        missing = next((c for seq, c in sorted(checkpoints.items()) if seq > walk.seq), None)
        which = f": {describe_checkpoint(missing)} was not given" if missing else ""
        problem = VerifyProblem(
            walk.seq + 1,
            "removed",
            f"entries {walk.seq + 1}..{newest} are archived but not checked{which}"
            if walk.seq < newest
            else f"the archives reach entry {walk.seq}, past the newest checkpoint (entry {newest})",
        )
        return VerifyResult(checked=walk.checked, last_seq=walk.seq, last_hash=walk.hash, problem=problem)
    result = verify_chain(session, in_python=in_python, audit_secrets=audit_secrets)
    result.archived = walk.checked
    return result


@dataclass
class _Archive:
    path: Path
    lines: list[str]
    sha256: str
    first_seq: int


def _read_archive(path: Path) -> _Archive:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the archive: {exc.strerror}") from None
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
        first_seq = int(line_fields(lines[0])["seq"]) if lines else 0
    except (KeyError, ValueError, TypeError):
        first_seq = 0
    return _Archive(path, lines, hashlib.sha256(data).hexdigest(), first_seq)


class _ArchiveWalk:
    """The chain through archive files: where it has reached, and the first problem."""

    def __init__(self, audit_secrets: AuditSecrets) -> None:
        self.audit_secrets = audit_secrets
        self.seq, self.hash, self.checked = 0, GENESIS_HASH, 0
        self.keyed = False

    def check(self, archive_file: _Archive, checkpoints: dict[int, Row[Any]]) -> VerifyProblem | None:
        name = archive_file.path
        for number, line in enumerate(archive_file.lines, start=1):
            try:
                fields = line_fields(line)
            except (KeyError, ValueError, TypeError) as exc:
                return VerifyProblem(self.seq + 1, "changed", f"{name} line {number} is not an audit entry ({exc})")
            problem = self._entry(fields, name)
            if problem is not None:
                return problem
        checkpoint = checkpoints.get(self.seq)
        if checkpoint is None:
            return VerifyProblem(
                self.seq, "checkpoint", f"{name} ends at entry {self.seq}, which no checkpoint of the database names"
            )
        if checkpoint.entry_hash != self.hash:
            message = f"entry {self.seq} in {name} differs from {describe_checkpoint(checkpoint)}"
            return VerifyProblem(self.seq, "checkpoint", message)
        if not hmac.compare_digest(checkpoint.archive_sha256, archive_file.sha256):
            return VerifyProblem(
                self.seq,
                "checkpoint",
                f"{name} is not the file recorded in {describe_checkpoint(checkpoint)}: its sha256 differs",
            )
        return None

    def _entry(self, fields: dict[str, Any], name: Path) -> VerifyProblem | None:
        seq, expected = fields["seq"], self.seq + 1
        if seq != expected:
            gap = f"entries {expected}..{seq - 1}" if seq > expected else f"entry {expected}"
            return VerifyProblem(expected, "removed", f"{gap} missing before entry {seq} of {name}")
        if fields["prev_hash"] != self.hash:
            return VerifyProblem(seq, "out_of_order", f"entry {seq} in {name} does not follow entry {seq - 1}")
        if compute_hash(self.hash, fields) != fields["entry_hash"]:
            message = f"entry {seq} in {name} was changed: its content no longer matches its hash"
            return VerifyProblem(seq, "changed", message)
        mac = fields["mac"]
        if mac is not None or self.keyed:
            self.keyed = True
            key = self.audit_secrets.key(create=False)
            if key is None:
                return VerifyProblem(seq, "forged", f"entry {seq} in {name} carries a mac but the audit key is missing")
            if mac is None or not hmac.compare_digest(mac, self.audit_secrets.mac(seq, fields["entry_hash"])):
                return VerifyProblem(seq, "forged", f"entry {seq} in {name} does not carry a valid mac")
        self.seq, self.hash = seq, fields["entry_hash"]
        self.checked += 1
        return None


__all__ = ["ArchiveResult", "archive", "verify_with_archives"]
