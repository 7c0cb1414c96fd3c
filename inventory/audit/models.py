"""The ORM classes of the audit tables, mapped onto the Core tables of inventory/audit/tables.py (which says
what each table and column holds, and what the database refuses)."""

# No ``from __future__ import annotations`` in the model modules: with it, SQLAlchemy evaluates every
# ``Mapped[...]`` annotation from its text when a class is mapped; Python evaluates them for less.
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Mapped

from inventory.audit import tables
from inventory.storage.models import Base


class AuditEntry(Base):
    __table__ = tables.audit_log

    seq: Mapped[int]
    at: Mapped[datetime]
    event: Mapped[str]
    actor: Mapped[str]
    tool: Mapped[str | None]
    target: Mapped[str | None]
    target_name: Mapped[str | None]
    source: Mapped[str | None]
    arguments: Mapped[str | None]
    tool_class: Mapped[str | None]
    decision: Mapped[str | None]
    matched_rule: Mapped[str | None]
    approver: Mapped[str | None]
    approval_id: Mapped[int | None]
    outcome: Mapped[str]
    error: Mapped[str | None]
    duration_us: Mapped[int | None]
    policy_hash: Mapped[str | None]
    details: Mapped[str | None]
    prev_hash: Mapped[str]
    entry_hash: Mapped[str]
    mac: Mapped[str | None]


class AuditHeadRow(Base):
    __table__ = tables.audit_head

    id: Mapped[int]
    seq: Mapped[int]
    entry_hash: Mapped[str]
    mac: Mapped[str | None]


class AuditCheckpoint(Base):
    __table__ = tables.audit_checkpoints

    id: Mapped[int]
    first_seq: Mapped[int]
    last_seq: Mapped[int]
    entry_hash: Mapped[str]
    archived_at: Mapped[datetime]
    archived_by: Mapped[str]
    archive_name: Mapped[str]
    archive_sha256: Mapped[str]
    mac: Mapped[str]


class Approval(Base):
    __table__ = tables.approvals

    id: Mapped[int]
    created_at: Mapped[datetime]
    requester: Mapped[str]
    on_behalf_of: Mapped[str | None]
    expires_at: Mapped[datetime | None]
    tool: Mapped[str]
    target: Mapped[str]
    target_name: Mapped[str | None]
    source: Mapped[str | None]
    arguments: Mapped[dict[str, Any]]
    tool_class: Mapped[str]
    matched_rule: Mapped[str | None]
    policy_hash: Mapped[str | None]
    status: Mapped[str]
    decided_by: Mapped[str | None]
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None]
    outcome: Mapped[str | None]
    request_seq: Mapped[int | None]
    mac: Mapped[str | None]


class TokenRevocation(Base):
    __table__ = tables.token_revocations

    token_id: Mapped[int]
    revoked_at: Mapped[datetime]
    revoked_by: Mapped[str]


class AppliedPolicyRow(Base):
    __table__ = tables.applied_policies

    id: Mapped[int]
    sha256: Mapped[str]
    text: Mapped[str]
    applied_at: Mapped[datetime]
    applied_by: Mapped[str]
    previous_sha256: Mapped[str | None]
    audit_seq: Mapped[int]
    mac: Mapped[str]


class DatabaseIdentityRow(Base):
    __table__ = tables.database_identity

    id: Mapped[int]
    database_id: Mapped[str]
    created_at: Mapped[datetime]
