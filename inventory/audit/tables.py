"""The audit tables, declared once as SQLAlchemy Core ``Table`` data: an append-only, hash-chained log of every
tool call and sync, its head and checkpoints, pending approvals, revocations, applied policies and the
database's identity. The ORM classes in inventory/audit/models.py are mapped onto them.

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

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, String, Table, Text, cast
from sqlalchemy.types import UserDefinedType

from inventory.storage.tables import Id, JsonValue, UTCDateTime, metadata
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
# A sequence number: BIGINT on PostgreSQL, INTEGER on SQLite.
Seq = BigInteger().with_variant(Integer(), "sqlite")

audit_log = Table(
    AUDIT_TABLE,
    metadata,
    # Position in the chain; no autoincrement: the appender takes last seq + 1 under its lock.
    Column("seq", Seq, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    # tool_call | sync | approval
    Column("event", String(20), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("tool", String(200)),
    # What the call touches, as "<type>:<source>/<kind>/<external_id>" (or the text given when unresolved).
    Column("target", String(1000)),
    Column("target_name", String(500)),
    Column("source", String(200)),
    # Canonical JSON text of the redacted arguments (the exact text that was hashed).
    Column("arguments", CanonicalJson),
    Column("tool_class", String(20)),
    # allow | require_approval | deny; empty on sync entries, which no policy decides
    Column("decision", String(20)),
    Column("matched_rule", String(200)),
    Column("approver", String(200)),
    Column("approval_id", Seq),
    # success | failed | denied | invalid | pending | approved | rejected | dry_run | partial | started
    # ("started": the write-ahead intent of a call, written before it runs; its outcome entry follows)
    Column("outcome", String(20), nullable=False),
    Column("error", Text),
    # Microseconds, an integer: it reads back identically on every engine.
    Column("duration_us", BigInteger),
    Column("policy_hash", String(64)),
    Column("details", CanonicalJson),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False, unique=True),
    # HMAC of seq and entry_hash under the audit key; NULL only for entries written before the key existed.
    Column("mac", String(64)),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_actor_at", "actor", "at"),
    Index("ix_audit_log_tool_at", "tool", "at"),
    # Whether an approval was settled already (inventory/policy/approvals.py), whatever its row says now.
    Index("ix_audit_log_approval_id", "approval_id"),
)

# The newest entry of the log, kept by the database: an AFTER INSERT trigger on audit_log moves it, only forward
# (migration 0007_replicas). Every replica sees it; the runtime role may only read it. ``mac`` is the entry's own
# mac, so a process holding another audit key finds out before it appends (audit/log.py).
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("mac", String(64)),
    CheckConstraint("id = 1", name="one_row"),
)

# Where the database's part of the chain starts: the last entry moved to an archive file, and that file's hash.
# Written by ``inventory audit archive`` (inventory/audit/archive.py) before it deletes the entries up to
# ``last_seq``. The database refuses a checkpoint that does not name an entry of the log by seq and hash, that
# skips entries or that would archive the newest entry, and it refuses to delete an entry above the newest
# checkpoint, or to change a checkpoint (migrations/versions/0006_retention.py). ``mac`` keys the row with the
# audit key, so that whoever can only write the database cannot forge one.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Id, primary_key=True),
    Column("first_seq", Seq, nullable=False),
    Column("last_seq", Seq, nullable=False, unique=True),
    Column("entry_hash", String(64), nullable=False),
    Column("archived_at", UTCDateTime, nullable=False, default=utcnow),
    Column("archived_by", String(200), nullable=False),
    # The archive file's name (as given) and the sha256 of its bytes.
    Column("archive_name", String(1000), nullable=False),
    Column("archive_sha256", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Id, primary_key=True),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("requester", String(200), nullable=False, index=True),
    # The name the requester acted for (--actor); rules matching it applied to the call.
    Column("on_behalf_of", String(200)),
    # After this the approval can no longer be granted (policy approvals.expires_after).
    Column("expires_at", UTCDateTime),
    Column("tool", String(200), nullable=False),
    # The target as resolved when the call was made, as Target.ref: "<type>:<source>/<kind>/<external_id>".
    Column("target", String(1000), nullable=False),
    Column("target_name", String(500)),
    Column("source", String(200)),
    # Validated arguments; calls whose arguments carry secrets are never queued (see approvals.py).
    Column("arguments", JsonValue, nullable=False, default=dict),
    Column("tool_class", String(20), nullable=False),
    Column("matched_rule", String(200)),
    Column("policy_hash", String(64)),
    # pending | approved | rejected | expired
    Column("status", String(20), nullable=False, default="pending", index=True),
    Column("decided_by", String(200)),
    Column("decided_at", UTCDateTime),
    Column("reason", Text),
    # success | failed, once an approved call ran
    Column("outcome", String(20)),
    Column("request_seq", Seq),
    # HMAC under the audit key over every field above (inventory/audit/row_macs.py); NULL: never signed, refused.
    Column("mac", String(64)),
)

# A revoked token, for good: the table refuses UPDATE and DELETE (triggers), and authentication reads it.
token_revocations = Table(
    TOKEN_REVOCATIONS_TABLE,
    metadata,
    Column("token_id", Id, primary_key=True, autoincrement=False),
    Column("revoked_at", UTCDateTime, nullable=False),
    Column("revoked_by", String(200), nullable=False),
)

# A policy applied by an admin (``inventory policy apply``): its full text, kept for good. The newest row (highest
# id) is the policy in force. Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL); the runtime role may
# only SELECT and INSERT. ``id`` is taken as the newest id + 1 under the audit log's append lock (no sequence), so
# that it is part of the mac: a copy of an older row inserted later does not verify. ``previous_sha256`` names the
# policy it replaced; ``audit_seq`` the audit entry that recorded the apply.
applied_policies = Table(
    APPLIED_POLICIES_TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("sha256", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
    Column("applied_by", String(200), nullable=False),
    Column("previous_sha256", String(64)),
    Column("audit_seq", Seq, nullable=False),
    # HMAC under the audit key over every column above (inventory/audit/row_macs.py).
    Column("mac", String(64), nullable=False),
)

# The database's random id, made by migration 0012_applied_policy: it names the audit key and head files (one pair
# per database, not per OS user). One row; triggers refuse changing or deleting it.
database_identity = Table(
    DATABASE_IDENTITY_TABLE,
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("database_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("id = 1", name="one_row"),
)
