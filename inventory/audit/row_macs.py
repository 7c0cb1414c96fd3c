"""MACs of the rows that decide something: approvals, API tokens and applied policies.

An approval says which call runs, for whom, and whether it may; a token says who a
bearer is and in which groups. Both are rows any database writer could edit, so each
carries ``mac = HMAC-SHA256(audit key, purpose + canonical JSON of every deciding
field)`` (the key of inventory/audit/keys.py, kept outside the database). The program
re-signs a row whenever it changes one (settling an approval, revoking a token); a row
whose mac does not verify, or that has none, was written by someone without the key
and is refused where it is used: authentication refuses the token, approve and reject
refuse the approval (``TamperedRow``, exit code 3).

Rows stored before the columns existed (revision 0010_trust_rows) are signed by
``sign_unsigned_rows`` once, by the ``db upgrade`` that added the columns: that process
holds the key, and the rows are as trustworthy then as they were before the upgrade.
Afterwards an unsigned row is never signed, only refused: removing a row's mac does not
get an edit signed by the next upgrade.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect, select

from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.models import AppliedPolicyRow, Approval
from inventory.audit.token_models import ApiToken, api_tokens
from inventory.errors import TamperedRow

log = logging.getLogger(__name__)

# Every column but mac: what the row says is what the mac covers.
APPROVAL_FIELDS = (
    "id",
    "created_at",
    "requester",
    "on_behalf_of",
    "expires_at",
    "tool",
    "target",
    "target_name",
    "source",
    "arguments",
    "tool_class",
    "matched_rule",
    "policy_hash",
    "status",
    "decided_by",
    "decided_at",
    "reason",
    "outcome",
    "request_seq",
)
TOKEN_FIELDS = (
    "id",
    "name",
    "name_key",
    "token_hash",
    "groups",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "revoked_by",
)
APPLIED_POLICY_FIELDS = ("id", "sha256", "text", "applied_at", "applied_by", "previous_sha256", "audit_seq")
SignedRow = Approval | ApiToken | AppliedPolicyRow
# (purpose of the keyed digest, fields, what a message calls the row)
_KINDS: dict[type, tuple[str, tuple[str, ...], str]] = {
    Approval: ("approval-row", APPROVAL_FIELDS, "approval"),
    ApiToken: ("api-token-row", TOKEN_FIELDS, "token"),
    AppliedPolicyRow: ("applied-policy-row", APPLIED_POLICY_FIELDS, "applied policy"),
}


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def row_text(row: SignedRow) -> str:
    """The deciding fields of ``row`` as canonical JSON (sorted keys, no spaces, UTC microsecond times)."""
    _purpose, fields, _label = _KINDS[type(row)]
    values = [_canonical(getattr(row, name)) for name in fields]
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_mac(audit_secrets: AuditSecrets, row: SignedRow) -> str:
    purpose, _fields, _label = _KINDS[type(row)]
    return audit_secrets.keyed_digest(purpose, row_text(row))


def sign(audit_secrets: AuditSecrets, row: SignedRow) -> None:
    """Set the row's mac to cover what it says now (call it after every change, with its id assigned)."""
    row.mac = row_mac(audit_secrets, row)


def intact(audit_secrets: AuditSecrets, row: SignedRow) -> bool:
    if row.mac is None or audit_secrets.key(create=False) is None:
        return False
    return hmac.compare_digest(row.mac, row_mac(audit_secrets, row))


def describe(row: SignedRow) -> str:
    """Why a row is refused, naming it (never a token's hash)."""
    label = _KINDS[type(row)][2]
    name = f" ({row.name})" if isinstance(row, ApiToken) else ""
    why = "carries no mac" if row.mac is None else "does not match its mac"
    return (
        f"{label} {row.id}{name} {why}: it was changed outside inventory (by someone without the audit key) "
        "and is refused"
    )


def check(audit_secrets: AuditSecrets, row: SignedRow) -> None:
    """Raise TamperedRow naming the row unless its mac verifies."""
    if not intact(audit_secrets, row):
        raise TamperedRow(describe(row))


def has_row_macs(db: Any) -> bool:
    """Whether the database's tables carry the mac columns (revision 0010_trust_rows and later)."""
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        if not inspector.has_table(api_tokens.name):
            return False
        return any(column["name"] == "mac" for column in inspector.get_columns(api_tokens.name))


def sign_unsigned_rows(db: Any) -> Mapping[str, int]:
    """Sign the rows stored before the mac columns existed; only right after the upgrade that added them.

    Without the audit key nothing is signed (such tokens could not authenticate anyway: their
    hashes are keyed too). Returns how many rows of each kind were signed.
    """
    audit_secrets = secrets_for(db)
    if audit_secrets.key(create=False) is None:
        return {}
    signed: dict[str, int] = {}
    with db.write_session() as session:
        unsigned: list[list[SignedRow]] = [
            list(session.execute(select(Approval).where(Approval.mac.is_(None))).scalars()),
            list(session.execute(select(ApiToken).where(ApiToken.mac.is_(None))).scalars()),
        ]
        for rows in filter(None, unsigned):
            for row in rows:
                sign(audit_secrets, row)
            signed[_KINDS[type(rows[0])][2]] = len(rows)
    if signed:
        log.info("signed the rows stored before row macs existed: %s", signed)
    return signed


__all__ = [
    "APPLIED_POLICY_FIELDS",
    "APPROVAL_FIELDS",
    "TOKEN_FIELDS",
    "check",
    "describe",
    "has_row_macs",
    "intact",
    "row_mac",
    "sign",
    "sign_unsigned_rows",
]
