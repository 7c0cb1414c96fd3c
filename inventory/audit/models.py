"""The audit tables: an append-only, hash-chained log of every tool call and sync, and pending approvals.

``audit_log`` is never updated or deleted by the program, and the database refuses
it too: triggers abort UPDATE and DELETE (and TRUNCATE on PostgreSQL), and an insert
that does not extend the head (next seq, the head's hash as prev_hash, a mac; no
REPLACE of an existing entry) is aborted before it happens. ``seq`` is the entry's
place in the chain (1, 2, 3, ..., allocated under a lock by the appender);
``entry_hash`` covers every column but seq and mac, plus ``prev_hash``, so that an
edit, a removal or a reordering breaks the chain where it happened; ``mac`` keys
seq and entry_hash with the audit key kept outside the database
(inventory/audit/keys.py), so that whoever can only write the database cannot
re-chain the log after an edit.

``approvals`` (pending -> approved/rejected/expired) and ``api_tokens`` are mutable state,
but each row carries ``mac``: an HMAC under the audit key over every field that decides
anything (inventory/audit/row_macs.py), so that an edit by anyone without the key is
refused where the row is used. Every settlement, token creation and revocation is also
an audit entry. ``token_revocations`` is append-only by trigger: a revocation cannot be
undone by editing the token's row.

``applied_policies`` holds every policy ever applied (``inventory policy apply``), append-only
by trigger, each row with a mac under the audit key: the newest row is the policy in force,
whatever config a caller names (inventory/policy/applied.py). ``database_identity`` holds the
database's random id, which names its audit key and head files (inventory/audit/keys.py).
"""

# No ``from __future__ import annotations`` in the model modules: with it, SQLAlchemy evaluates every
# ``Mapped[...]`` annotation from its text when a class is mapped, ~14 ms of every command's start for the
# storage and audit models together (benchmarks/bench_startup.py); Python evaluates them for less.
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, cast
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from inventory.storage.models import Base, Id, JsonValue, UTCDateTime
from inventory.timeutil import utcnow

AUDIT_TABLE = "audit_log"
TOKEN_REVOCATIONS_TABLE = "token_revocations"
APPLIED_POLICIES_TABLE = "applied_policies"
DATABASE_IDENTITY_TABLE = "database_identity"


class _TextPreservingJson(UserDefinedType[str]):
    """PostgreSQL ``json`` (not ``jsonb``) read and written as text: it keeps the exact bytes that were hashed.

    jsonb would re-order keys and re-space the text, so an entry's hash could only be
    checked after parsing and re-serializing every entry; with ``json`` verification
    hashes the stored text as it is (see inventory/audit/log.py).
    """

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "JSON"

    def bind_expression(self, bindvalue: Any) -> Any:
        from sqlalchemy.dialects.postgresql import JSON  # this type is PostgreSQL's variant only

        return cast(cast(bindvalue, Text), JSON)

    def column_expression(self, colexpr: Any) -> Any:
        return cast(colexpr, Text)


# Canonical JSON text (sorted keys, no spaces): TEXT on SQLite, json on PostgreSQL.
CanonicalJson = Text().with_variant(_TextPreservingJson(), "postgresql")


class AuditEntry(Base):
    __tablename__ = AUDIT_TABLE
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_at", "actor", "at"),
        Index("ix_audit_log_tool_at", "tool", "at"),
        # Whether an approval was settled already (inventory/policy/approvals.py), whatever its row says now.
        Index("ix_audit_log_approval_id", "approval_id"),
    )

    # Position in the chain; no autoincrement: the appender takes last seq + 1 under its lock.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # tool_call | sync | approval
    event: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    tool: Mapped[str | None] = mapped_column(String(200))
    # What the call touches, as "<type>:<source>/<kind>/<external_id>" (or the text given when unresolved).
    target: Mapped[str | None] = mapped_column(String(1000))
    target_name: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str | None] = mapped_column(String(200))
    # Canonical JSON text of the redacted arguments (the exact text that was hashed).
    arguments: Mapped[str | None] = mapped_column(CanonicalJson)
    tool_class: Mapped[str | None] = mapped_column(String(20))
    # allow | require_approval | deny; empty on sync entries, which no policy decides
    decision: Mapped[str | None] = mapped_column(String(20))
    matched_rule: Mapped[str | None] = mapped_column(String(200))
    approver: Mapped[str | None] = mapped_column(String(200))
    approval_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    # success | failed | denied | invalid | pending | approved | rejected | dry_run | partial | started
    # ("started": the write-ahead intent of a call, written before it runs; its outcome entry follows)
    outcome: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    # Microseconds, an integer: it reads back identically on every engine.
    duration_us: Mapped[int | None] = mapped_column(BigInteger)
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(CanonicalJson)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # HMAC of seq and entry_hash under the audit key; NULL only for entries written before the key existed.
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The newest entry of the log, kept by the database: an AFTER INSERT trigger on audit_log moves it, only
    forward (migration 0007_replicas). Every replica sees it; the runtime role may only read it. ``mac`` is the
    entry's own mac, so a process holding another audit key finds out before it appends (audit/log.py)."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """Where the database's part of the chain starts: the last entry moved to an archive file, and that file's hash.

    Written by ``inventory audit archive`` (inventory/audit/archive.py) before it deletes the
    entries up to ``last_seq``. The database refuses a checkpoint that does not name an entry
    of the log by seq and hash, that skips entries or that would archive the newest entry, and
    it refuses to delete an entry above the newest checkpoint, or to change a checkpoint
    (migrations/versions/0006_retention.py). ``mac`` keys the row with the audit key, so that
    whoever can only write the database cannot forge one.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    last_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64))
    archived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    archived_by: Mapped[str] = mapped_column(String(200))
    # The archive file's name (as given) and the sha256 of its bytes.
    archive_name: Mapped[str] = mapped_column(String(1000))
    archive_sha256: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class Approval(Base):
    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    requester: Mapped[str] = mapped_column(String(200), index=True)
    # The name the requester acted for (--actor); rules matching it applied to the call.
    on_behalf_of: Mapped[str | None] = mapped_column(String(200))
    # After this the approval can no longer be granted (policy approvals.expires_after).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tool: Mapped[str] = mapped_column(String(200))
    # The target as resolved when the call was made, as Target.ref: "<type>:<source>/<kind>/<external_id>".
    target: Mapped[str] = mapped_column(String(1000))
    target_name: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str | None] = mapped_column(String(200))
    # Validated arguments; calls whose arguments carry secrets are never queued (see approvals.py).
    arguments: Mapped[dict[str, Any]] = mapped_column(JsonValue, default=dict)
    tool_class: Mapped[str] = mapped_column(String(20))
    matched_rule: Mapped[str | None] = mapped_column(String(200))
    policy_hash: Mapped[str | None] = mapped_column(String(64))
    # pending | approved | rejected | expired
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    # success | failed, once an approved call ran
    outcome: Mapped[str | None] = mapped_column(String(20))
    request_seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    # HMAC under the audit key over every field above (inventory/audit/row_macs.py); NULL: never signed, refused.
    mac: Mapped[str | None] = mapped_column(String(64))


class TokenRevocation(Base):
    """A revoked token, for good: the table refuses UPDATE and DELETE (triggers), and authentication reads it."""

    __tablename__ = TOKEN_REVOCATIONS_TABLE

    token_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str] = mapped_column(String(200))


class AppliedPolicyRow(Base):
    """A policy applied by an admin (``inventory policy apply``): its full text, kept for good.

    The newest row (highest id) is the policy in force. Triggers refuse UPDATE and DELETE (and
    TRUNCATE on PostgreSQL); the runtime role may only SELECT and INSERT. ``id`` is taken as the
    newest id + 1 under the audit log's append lock (no sequence), so that it is part of the mac:
    a copy of an older row inserted later does not verify. ``previous_sha256`` names the policy it
    replaced; ``audit_seq`` the audit entry that recorded the apply.
    """

    __tablename__ = APPLIED_POLICIES_TABLE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_by: Mapped[str] = mapped_column(String(200))
    previous_sha256: Mapped[str | None] = mapped_column(String(64))
    audit_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    # HMAC under the audit key over every column above (inventory/audit/row_macs.py).
    mac: Mapped[str] = mapped_column(String(64))


class DatabaseIdentityRow(Base):
    """The database's random id, made by migration 0012_applied_policy: it names the audit key and head files
    (one pair per database, not per OS user). One row; triggers refuse changing or deleting it."""

    __tablename__ = DATABASE_IDENTITY_TABLE
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    database_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
