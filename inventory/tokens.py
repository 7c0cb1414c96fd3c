"""API tokens: the principals of the HTTP server.

A token is 32 random bytes (``inv_`` + url-safe base64), shown once when created and
stored only as ``HMAC-SHA256(audit key, token)``: the key is outside the database, so
a copy of the table cannot even be brute-forced offline, and a high-entropy token
needs no slow hash. ``authenticate`` hashes the presented token and looks the hash
up, then compares it in constant time. Creating and revoking are audit entries; the
token itself is never logged, recorded or stored.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from inventory.audit.keys import AuditSecrets, secrets_for
from inventory.audit.log import AuditRecord, append_in
from inventory.audit.models import ApiToken
from inventory.errors import NotFound, UsageError
from inventory.principals import Principal, PrincipalKind, name_key, normalise_name, refuse_lookalike
from inventory.redact import register_secret
from inventory.storage.database import Database
from inventory.timeutil import utcnow

TOKEN_PREFIX = "inv_"
_PURPOSE = "api-token"


@dataclass(frozen=True)
class TokenInfo:
    name: str
    groups: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def state(self) -> str:
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


def _hash(audit_secrets: AuditSecrets, token: str) -> str:
    return audit_secrets.keyed_digest(_PURPOSE, token)


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(row.name, tuple(row.groups), row.created_at, row.created_by, row.expires_at, row.revoked_at)


def _record(name: str, by: Principal, outcome: str, details: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        event="token", actor=by.name, outcome=outcome, target=f"token:{name}", target_name=name, details=details
    )


def create_token(
    db: Database,
    name: str,
    *,
    groups: tuple[str, ...] = (),
    expires_in: float | None = None,
    by: Principal,
    known_names: Iterable[str] = (),
) -> str:
    """A new token for principal ``name``; returns the token, which exists nowhere else afterwards.

    Refused when ``name`` looks like, without being, a name of another token (live or not: its entries
    are in the audit log) or one of ``known_names`` (the config's and the policy's principals).
    """
    name = normalise_name(name, what="token name")
    with db.session() as session:
        existing = list(session.execute(select(ApiToken.name).distinct()).scalars())
    refuse_lookalike(name, [*existing, *known_names], what="token name")
    groups = tuple(sorted({normalise_name(g, what="group name") for g in groups}))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    register_secret(token)
    audit_secrets = secrets_for(db)
    now = utcnow()
    expires_at = now + timedelta(seconds=expires_in) if expires_in else None
    try:
        with db.write_session() as session:
            session.add(
                ApiToken(
                    name=name,
                    name_key=name_key(name),
                    token_hash=_hash(audit_secrets, token),
                    groups=list(groups),
                    created_at=now,
                    created_by=by.name,
                    expires_at=expires_at,
                )
            )
            session.flush()
            details = {"groups": list(groups), "expires_at": expires_at.isoformat() if expires_at else None}
            append_in(session, _record(name, by, "created", details), audit_secrets)
    except IntegrityError:
        raise UsageError(f"a live token named {name} exists already; revoke it first") from None
    return token


def list_tokens(db: Database) -> list[TokenInfo]:
    with db.session() as session:
        return [
            _info(row) for row in session.execute(select(ApiToken).order_by(ApiToken.name_key, ApiToken.id)).scalars()
        ]


def revoke_token(db: Database, name: str, *, by: Principal) -> None:
    key = name_key(normalise_name(name, what="token name"))
    with db.write_session() as session:
        revoked = cast(
            CursorResult[Any],
            session.execute(
                update(ApiToken)
                .where(ApiToken.name_key == key, ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            ),
        ).rowcount
        if revoked != 1:
            raise NotFound(f"no live token named {name}")
        append_in(session, _record(name, by, "revoked", {}), secrets_for(db))


def authenticate(db: Database, token: str | None) -> Principal | None:
    """The principal holding this bearer token, or None (unknown, revoked, expired or malformed)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    presented = _hash(secrets_for(db), token)
    with db.session() as session:
        row = session.execute(select(ApiToken).where(ApiToken.token_hash == presented)).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.token_hash, presented):
        return None
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        return None
    return Principal(row.name, PrincipalKind.TOKEN, frozenset(row.groups))


def live_token_groups(db: Database, name: str) -> set[str]:
    """Groups of the live token named ``name`` (none without one)."""
    now = utcnow()
    with db.session() as session:
        rows = session.execute(
            select(ApiToken.groups, ApiToken.expires_at).where(
                ApiToken.name_key == name_key(name), ApiToken.revoked_at.is_(None)
            )
        ).all()
    return {g for groups, expires_at in rows if expires_at is None or expires_at > now for g in groups}


__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "authenticate",
    "create_token",
    "list_tokens",
    "live_token_groups",
    "revoke_token",
]
