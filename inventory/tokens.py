"""API tokens: the principals of the HTTP server.

A token is 32 random bytes (``inv_`` + url-safe base64), shown once when created and
stored only as ``HMAC-SHA256(audit key, token)``: the key is outside the database, so
a copy of the table cannot even be brute-forced offline, and a high-entropy token
needs no slow hash. ``authenticate`` hashes the presented token and looks the hash
up, then compares it in constant time. Creating and revoking are audit entries; the
token itself is never logged, recorded or stored.

Only admins (``principals.admins``; default the group ``admins``) create and revoke
tokens; a refusal is an audit entry too. Each row carries a mac under the audit key
(inventory/audit/row_macs.py): a token whose row was edited (name, groups, hash,
expiry, revocation) authenticates no one, and a warning names it. A revocation is
also a row of the append-only ``token_revocations``: setting ``revoked_at`` back to
NULL, even with the row's old mac, does not bring the token back.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inventory.audit import row_macs
from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.log import AuditRecord, append, append_in
from inventory.audit.models import TokenRevocation
from inventory.audit.token_models import ApiToken
from inventory.errors import NotFound, PolicyDenied, UsageError
from inventory.principals import (
    DEFAULT_ADMINS,
    Principal,
    PrincipalKind,
    name_key,
    normalise_name,
    refuse_lookalike,
    require_admin,
)
from inventory.redact import register_secret
from inventory.storage.database import Database
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "inv_"
_PURPOSE = "api-token"
# A token's state when its row does not match its mac (edited without the audit key).
TAMPERED = "tampered"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    groups: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    intact: bool = True

    @property
    def state(self) -> str:
        if not self.intact:
            return TAMPERED
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    def as_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groups": list(self.groups),
            "state": self.state,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        }


def parse_expires(text: str | None) -> float | None:
    """A token's lifetime as `tokens create --expires` takes it ("90d", "12h"); None: it never expires."""
    from inventory.timeutil import parse_duration

    if not text:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--expires {text}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--expires {text}: must be positive")
    return seconds


def create_under(
    db: Database, policy: Any, by: Principal, name: str, groups: tuple[str, ...], expires: str | None
) -> str:
    """`tokens create` as ``by`` under ``policy`` (the applied one): its admins decide, its principals' and
    groups' names may not be looked like, its hash is recorded. The CLI (direct) and the API both call it."""
    from inventory.policy.applied import administrator

    return create_token(
        db,
        name,
        groups=groups,
        expires_in=parse_expires(expires),
        by=administrator(policy, by),
        admins=policy.principals.admins,
        known_names=[*policy.principals.names(), *policy.principal_names()],
        policy_hash=policy.sha256,
    )


def revoke_under(db: Database, policy: Any, by: Principal, name: str) -> None:
    """`tokens revoke` as ``by`` under ``policy`` (the applied one), as ``create_under``."""
    from inventory.policy.applied import administrator

    revoke_token(db, name, by=administrator(policy, by), admins=policy.principals.admins, policy_hash=policy.sha256)


def _hash(audit_secrets: AuditSecrets, token: str) -> str:
    return audit_secrets.keyed_digest(_PURPOSE, token)


def _info(row: ApiToken, revoked_at: datetime | None, intact: bool) -> TokenInfo:
    return TokenInfo(row.name, tuple(row.groups), row.created_at, row.created_by, row.expires_at, revoked_at, intact)


def _record(
    name: str,
    by: Principal,
    outcome: str,
    details: dict[str, Any],
    error: str | None = None,
    policy_hash: str | None = None,
) -> AuditRecord:
    return AuditRecord(
        policy_hash=policy_hash,
        event="token",
        actor=by.name,
        outcome=outcome,
        target=f"token:{name}",
        target_name=name,
        error=error,
        details={"principal": str(by.kind), **details},
    )


def _require_admin(db: Database, by: Principal, admins: Sequence[str], doing: str, record: AuditRecord) -> None:
    """Refuse a non-admin, and record the refusal."""
    try:
        require_admin(by, admins, doing)
    except PolicyDenied as exc:
        record.error = str(exc)
        append(db, record)
        raise


def create_token(
    db: Database,
    name: str,
    *,
    groups: tuple[str, ...] = (),
    expires_in: float | None = None,
    by: Principal,
    admins: Sequence[str] = DEFAULT_ADMINS,
    known_names: Iterable[str] = (),
    policy_hash: str | None = None,
) -> str:
    """A new token for principal ``name``; returns the token, which exists nowhere else afterwards.

    ``by`` must be one of ``admins`` (with every group it holds); else PolicyDenied, recorded. Refused
    when ``name`` looks like, without being, a name of another token (live or not: its entries are in
    the audit log) or one of ``known_names`` (the config's and the policy's principals).
    """
    name = normalise_name(name, what="token name")
    groups = tuple(sorted({normalise_name(g, what="group name") for g in groups}))
    _require_admin(
        db,
        by,
        admins,
        f"create a token (for {name})",
        _record(name, by, "denied", {"groups": list(groups)}, policy_hash=policy_hash),
    )
    with db.session() as session:
        existing = list(session.execute(select(ApiToken.name).distinct()).scalars())
    refuse_lookalike(name, [*existing, *known_names], what="token name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    register_secret(token)
    audit_secrets = secrets_for(db)
    now = utcnow()
    expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    try:
        with db.write_session() as session:
            row = ApiToken(
                name=name,
                name_key=name_key(name),
                token_hash=_hash(audit_secrets, token),
                groups=list(groups),
                created_at=now,
                created_by=by.name,
                expires_at=expires_at,
            )
            session.add(row)
            session.flush()
            row_macs.sign(audit_secrets, row)
            details = {
                "token_id": row.id,
                "groups": list(groups),
                "expires_at": expires_at.isoformat() if expires_at else None,
            }
            append_in(session, _record(name, by, "created", details, policy_hash=policy_hash), audit_secrets)
    except IntegrityError:
        raise UsageError(f"a live token named {name} exists already; revoke it first") from None
    return token


def _revoked(session: Session, token_ids: Sequence[int]) -> dict[int, datetime]:
    rows = session.execute(
        select(TokenRevocation.token_id, TokenRevocation.revoked_at).where(TokenRevocation.token_id.in_(token_ids))
    )
    return {int(token_id): revoked_at for token_id, revoked_at in rows}


def list_tokens(db: Database) -> list[TokenInfo]:
    audit_secrets = secrets_for(db)
    with db.session() as session:
        rows = list(session.execute(select(ApiToken).order_by(ApiToken.name_key, ApiToken.id)).scalars())
        revoked = _revoked(session, [row.id for row in rows])
    return [_info(row, revoked.get(row.id, row.revoked_at), row_macs.intact(audit_secrets, row)) for row in rows]


def revoke_token(
    db: Database,
    name: str,
    *,
    by: Principal,
    admins: Sequence[str] = DEFAULT_ADMINS,
    policy_hash: str | None = None,
) -> None:
    """Revoke the live token of ``name`` for good: its row (re-signed) and an append-only revocation, audited."""
    name = normalise_name(name, what="token name")
    denied = _record(name, by, "denied", {"action": "revoke"}, policy_hash=policy_hash)
    _require_admin(db, by, admins, f"revoke a token (of {name})", denied)
    audit_secrets = secrets_for(db)
    with db.write_session() as session:
        row = session.execute(
            select(ApiToken).where(ApiToken.name_key == name_key(name), ApiToken.revoked_at.is_(None))
        ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"no live token named {name}")
        tampered = not row_macs.intact(audit_secrets, row)
        row.revoked_at, row.revoked_by = utcnow(), by.name
        if tampered:
            # Revoked all the same (it authenticates no one anyway), but never re-signed: the edit stays visible.
            log.warning("revoking %s", row_macs.describe(row))
        else:
            row_macs.sign(audit_secrets, row)
        if not _revoked(session, [row.id]):  # a revoked row set live again by an edit is revoked already
            session.add(TokenRevocation(token_id=row.id, revoked_at=row.revoked_at, revoked_by=by.name))
        details = {"token_id": row.id, "groups": list(row.groups)}
        append_in(session, _record(row.name, by, "revoked", details, policy_hash=policy_hash), audit_secrets)


def authenticate(db: Database, token: str | None) -> Principal | None:
    """The principal holding this bearer token, or None (unknown, revoked, expired, tampered or malformed)."""
    reference = token_reference(db, token)
    return authenticate_reference(db, reference) if reference is not None else None


def token_reference(db: Database, token: str | None) -> str | None:
    """What names a token without being it: its keyed hash, as stored (None for what cannot be a token).

    A web session keeps this instead of the token (inventory/server/sessions.py), and is
    re-authorized through it on every request, so revoking the token ends the session.
    """
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return _hash(secrets_for(db), token)


def authenticate_reference(db: Database, presented: str) -> Principal | None:
    """The principal of the live token whose keyed hash is ``presented``, or None (unknown, revoked, expired,
    tampered: its row's mac does not verify, or a revocation is recorded for it)."""
    audit_secrets = secrets_for(db)
    revoked = exists().where(TokenRevocation.token_id == ApiToken.id)
    with db.read_session() as session:
        found = session.execute(select(ApiToken, revoked).where(ApiToken.token_hash == presented)).one_or_none()
    if found is None:
        return None
    row, is_revoked = found
    if not hmac.compare_digest(row.token_hash, presented) or is_revoked:
        return None
    if not row_macs.intact(audit_secrets, row):
        log.warning("refused a bearer token: %s", row_macs.describe(row))
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return Principal(row.name, PrincipalKind.TOKEN, frozenset(row.groups))


def live_token_groups(db: Database, name: str) -> set[str]:
    """Groups of the live token named ``name`` (none without one; none from a tampered row)."""
    now = utcnow()
    audit_secrets = secrets_for(db)
    revoked = exists().where(TokenRevocation.token_id == ApiToken.id)
    with db.read_session() as session:
        rows = session.execute(
            select(ApiToken).where(ApiToken.name_key == name_key(name), ApiToken.revoked_at.is_(None), ~revoked)
        ).scalars()
        live = [row for row in rows if row.expires_at is None or row.expires_at > now]
    return {g for row in live if row_macs.intact(audit_secrets, row) for g in row.groups}


__all__ = [
    "TAMPERED",
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "authenticate_reference",
    "create_token",
    "create_under",
    "list_tokens",
    "live_token_groups",
    "parse_expires",
    "revoke_token",
    "revoke_under",
    "token_reference",
]
