"""The audit head every replica shares: a row the database keeps, and the check that a process holds the log's key.

Several servers on one database append to one chain. The head file beside the audit key
(``audit/keys.py``) sees only the appends of its own machine, so the database keeps the
shared head itself: ``audit_head`` (migration 0007_replicas) is one row moved by an AFTER
INSERT trigger on ``audit_log``, only forward; on PostgreSQL the trigger runs with the
owner's rights and the runtime role may only read the row. It carries the newest entry's
seq, hash and mac, and the mac is ``HMAC(audit key, seq, hash)``: whoever can check it holds
the same key as whoever appended.

``require_same_key`` is that check. A process started with another key (a replica whose
mounted secret differs, a key file created afresh on a new machine) stops at start
(``check_audit_key``) and refuses to append (``audit/log.py`` checks the entry it extends),
instead of writing entries that no other replica can verify.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.tables import audit_head
from inventory.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class DatabaseHead:
    seq: int
    entry_hash: str
    mac: str | None


def read_database_head(session: Session) -> DatabaseHead | None:
    """The head the database recorded (seq 0: an empty log); None when the table has no row."""
    row = session.execute(select(audit_head.c.seq, audit_head.c.entry_hash, audit_head.c.mac)).first()
    return DatabaseHead(row.seq, row.entry_hash, row.mac) if row is not None else None


def require_same_key(audit_secrets: AuditSecrets, seq: int, entry_hash: str, mac: str | None) -> None:
    """Raise ConfigError unless this process's audit key signed entry ``seq`` (an unsigned entry proves nothing)."""
    if mac is None or seq < 1:
        return
    key_option = {"path": str(audit_secrets.key_file), "key": "audit.key_file"}
    if audit_secrets.key(create=False) is None:
        raise ConfigError(
            f"the audit log is signed (newest entry {seq}) but there is no audit key here: mount the key every "
            "replica of this database uses",
            **key_option,
        )
    if not hmac.compare_digest(mac, audit_secrets.mac(seq, entry_hash)):
        raise ConfigError(
            f"this audit key did not sign the log's newest entry {seq}: every process writing to this database "
            "must use the same audit key (copy the key the others mount; never create a new one)",
            **key_option,
        )


def check_audit_key(db: Any) -> DatabaseHead | None:
    """At start: the process's key must be the log's, so that the entries it appends verify everywhere.

    A head the key verifies is also recorded in this machine's head file (which only moves
    forward), so that the local witness covers what other replicas appended before it started.
    """
    audit_secrets = secrets_for(db)
    with db.session() as session:
        head = read_database_head(session)
    if head is None or head.seq < 1:
        return head
    require_same_key(audit_secrets, head.seq, head.entry_hash, head.mac)
    if head.mac is not None:
        try:
            audit_secrets.advance_head(head.seq, head.entry_hash)
        except OSError as exc:  # every append writes it too: say so now, not after the first entry commits
            raise ConfigError(
                f"cannot write the audit head file: {exc.strerror or exc}",
                path=str(audit_secrets.head_file),
                key="audit.head_file",
            ) from None
    return head


__all__ = ["DatabaseHead", "check_audit_key", "read_database_head", "require_same_key"]
