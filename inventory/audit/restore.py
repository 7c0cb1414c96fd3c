"""The audit log across a restore: told apart from a truncation, in a way only the key holder can do.

The head file (audit/keys.py) never moves back, so after a restore of an older backup it is
ahead of the database and `audit verify` would report the log as truncated. A restore
(``inventory db restore``, which must read the audit key) therefore:

1. checks the backup's chain and every entry's mac with the key, ending exactly at the
   audit head its signed manifest recorded (``verify_backup_log``);
2. appends a ``restore`` entry to the restored log: "restored from a backup taken at T up to
   entry N; entries N+1..M of the previous log are not in this database" (``record_restore``);
3. appends the same facts, with a mac under the key, to the restore record beside the head
   file (``<head file>.restores``), then moves the head to the restore entry.

`audit verify` then passes and names each restore (``restore_notes``); a restore record
without a valid mac fails it. A truncation without a restore still fails as before: whoever
can write the database but not read the key can neither add the restore entry (its mac) nor
write a record that verifies. Whoever holds the key can restore, and every restore says so,
in the log and beside the head.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.audit.keys import AuditHead, AuditSecrets
from inventory.audit.log import AuditRecord, VerifyProblem, VerifyResult, append_in, verify_chain
from inventory.audit.models import AuditEntry
from inventory.storage.database import Database

RESTORE_EVENT = "restore"
_MAC_PURPOSE = "audit-restore"


def restores_file(audit_secrets: AuditSecrets) -> Path:
    return audit_secrets.head_file.with_name(audit_secrets.head_file.name + ".restores")


class _PinnedHead(AuditSecrets):
    """The live key with the backup's own head: a backup's log must end exactly where its manifest says."""

    def __init__(self, live: AuditSecrets, head: AuditHead | None) -> None:
        super().__init__(live.key_file, live.head_file)
        self._pinned = head

    def read_head(self) -> AuditHead | None:
        # The manifest that names it is signed with the key: the head is the key holder's.
        pinned = self._pinned
        return (
            None
            if pinned is None
            else AuditHead(pinned.seq, pinned.entry_hash, self.head_mac(pinned.seq, pinned.entry_hash))
        )


def verify_backup_log(session: Session, audit_secrets: AuditSecrets, head: AuditHead | None) -> VerifyResult:
    """The restored chain, every mac under the live key, ending at ``head`` (the manifest's)."""
    result = verify_chain(session, audit_secrets=_PinnedHead(audit_secrets, head))
    expected = head.seq if head else 0
    if result.ok and result.last_seq != expected:
        message = f"the log goes on to entry {result.last_seq}, past the head {expected} the backup's manifest recorded"
        result.problem = VerifyProblem(expected + 1, "changed", message)
    return result


@dataclass(frozen=True)
class RestoreNote:
    restored_at: str
    backup_taken_at: str
    backup_seq: int
    previous_seq: int
    entry_seq: int

    def describe(self) -> str:
        lost = (
            f"; entries {self.backup_seq + 1}..{self.previous_seq} of the previous log are not in this database"
            if self.previous_seq > self.backup_seq
            else ""
        )
        return (
            f"entry {self.entry_seq}: restored at {self.restored_at} from a backup taken at {self.backup_taken_at} "
            f"up to entry {self.backup_seq}{lost}"
        )


def record_restore(
    db: Database, audit_secrets: AuditSecrets, *, taken_at: str, backup_head: AuditHead | None, actor: str, backup: str
) -> RestoreNote:
    """Steps 2 and 3 of the module docstring, on the restored database; returns what was recorded."""
    previous = audit_secrets.read_head()
    backup_seq = backup_head.seq if backup_head else 0
    previous_seq = previous.seq if previous else 0
    details: dict[str, Any] = {"backup": backup, "backup_taken_at": taken_at, "backup_seq": backup_seq}
    if previous is not None:
        details["previous_head"] = {"seq": previous.seq, "entry_hash": previous.entry_hash}
    if previous_seq > backup_seq:
        details["missing_entries"] = [backup_seq + 1, previous_seq]
    record = AuditRecord(event=RESTORE_EVENT, actor=actor, outcome="success", target="database", details=details)
    with db.write_session() as session:
        seq, entry_hash = append_in(session, record, audit_secrets)
        restored_at = session.execute(select(AuditEntry.at).where(AuditEntry.seq == seq)).scalar_one()
    note = RestoreNote(restored_at.isoformat(), taken_at, backup_seq, previous_seq, seq)
    line = {
        "restored_at": note.restored_at,
        "backup_taken_at": taken_at,
        "backup_seq": backup_seq,
        "previous_head": details.get("previous_head"),
        "entry": {"seq": seq, "entry_hash": entry_hash},
    }
    _write_record_and_move_head(audit_secrets, line, AuditHead(seq, entry_hash))
    return note


def _signed(audit_secrets: AuditSecrets, line: dict[str, Any]) -> str:
    return audit_secrets.keyed_digest(_MAC_PURPOSE, json.dumps(line, sort_keys=True, separators=(",", ":")))


def _write_record_and_move_head(audit_secrets: AuditSecrets, line: dict[str, Any], head: AuditHead) -> None:
    """The record first, then the head (moved back, the one place it ever is), under the head's own lock."""
    path = restores_file(audit_secrets)
    with audit_secrets.head_lock():
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({**line, "mac": _signed(audit_secrets, line)}, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        audit_secrets.write_head(head.seq, head.entry_hash)


def restore_notes(session: Session, audit_secrets: AuditSecrets, result: VerifyResult) -> list[str]:
    """The restores this log went through, for `audit verify`; a forged restore record fails ``result``."""
    try:
        lines = restores_file(audit_secrets).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for number, text in enumerate(lines, 1):
        try:
            line = json.loads(text)
            mac = line.pop("mac")
            valid = hmac.compare_digest(str(mac), _signed(audit_secrets, line))
        except (ValueError, KeyError, TypeError, AttributeError):
            valid = False
        if not valid and result.ok:
            message = (
                f"line {number} of the restore record {restores_file(audit_secrets)} is not signed with the audit key: "
                "it was written without the key (a truncation passed off as a restore?)"
            )
            result.problem = VerifyProblem(result.last_seq, "forged", message)
    notes = []
    rows = session.execute(
        select(AuditEntry.seq, AuditEntry.at, AuditEntry.details)
        .where(AuditEntry.event == RESTORE_EVENT)
        .order_by(AuditEntry.seq)
    )
    for seq, at, details in rows:
        facts = json.loads(details) if isinstance(details, str) else (details or {})
        previous = (facts.get("previous_head") or {}).get("seq", 0)
        note = RestoreNote(at.isoformat(), facts.get("backup_taken_at", "?"), facts.get("backup_seq", 0), previous, seq)
        notes.append(note.describe())
    return notes


__all__ = ["RESTORE_EVENT", "RestoreNote", "record_restore", "restore_notes", "restores_file", "verify_backup_log"]
