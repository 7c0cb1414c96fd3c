"""Web UI sessions in the database, so that every server on it (every replica) knows them.

The browser holds a random session id; the ``web_sessions`` table holds only its sha256,
the session's CSRF token, its times and a *reference* to the API token it was opened
with: the token's keyed hash, as ``api_tokens`` stores it (``TokenAuthenticator.reference``).
Every request re-authorizes through that reference, so a revoked or expired token ends its
sessions on every replica at once; signing out deletes the row, which ends the session
everywhere. A session idle for ``SESSION_IDLE_SECONDS`` is over; idle rows are pruned,
set-based, whenever a session is opened.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from sqlalchemy import delete, select, update

from inventory.principals import Principal
from inventory.server.auth import Authenticator
from inventory.storage.database import Database
from inventory.storage.models import WebSessionRow
from inventory.timeutil import utcnow

SESSION_IDLE_SECONDS = 12 * 3600
# last_seen_at is written at most this often per session: a page view is not a database write.
TOUCH_SECONDS = 60


@runtime_checkable
class TokenReferences(Protocol):
    """An authenticator that can name a token without keeping it, and authorize by that name later."""

    def reference(self, token: str) -> str | None: ...

    def by_reference(self, reference: str) -> Principal | None: ...


class ProcessTokens:
    """For an authenticator handed over in code that cannot authorize by reference (a test's token table):
    the tokens stay in this process, so its sessions do too. `inventory serve` never needs it."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self._tokens: dict[str, str] = {}

    def reference(self, token: str) -> str | None:
        reference = hashlib.sha256(token.encode()).hexdigest()
        self._tokens[reference] = token
        return reference

    def by_reference(self, reference: str) -> Principal | None:
        token = self._tokens.get(reference)
        return self._authenticator(token) if token is not None else None


def token_references(authenticator: Authenticator) -> TokenReferences:
    return authenticator if isinstance(authenticator, TokenReferences) else ProcessTokens(authenticator)


@dataclass(frozen=True)
class WebSession:
    id_hash: str
    token_ref: str
    csrf: str


def _id_hash(session_id: str) -> str:
    # The id is 32 random bytes: a plain digest cannot be turned back into it.
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, token_ref: str) -> tuple[str, WebSession]:
        session_id = secrets.token_urlsafe(32)
        session = WebSession(_id_hash(session_id), token_ref, secrets.token_urlsafe(32))
        now = utcnow()
        with self.db.write_session() as db_session:
            db_session.execute(
                delete(WebSessionRow).where(WebSessionRow.last_seen_at < now - timedelta(seconds=SESSION_IDLE_SECONDS))
            )
            db_session.add(
                WebSessionRow(
                    id_hash=session.id_hash, token_ref=token_ref, csrf=session.csrf, created_at=now, last_seen_at=now
                )
            )
        return session_id, session

    def get(self, session_id: str | None) -> WebSession | None:
        """The live session with this id, touched; None when unknown, signed out or idle too long."""
        if not session_id or len(session_id) > 200:
            return None
        id_hash = _id_hash(session_id)
        with self.db.read_session() as db_session:
            row = db_session.execute(
                select(WebSessionRow.token_ref, WebSessionRow.csrf, WebSessionRow.last_seen_at).where(
                    WebSessionRow.id_hash == id_hash
                )
            ).first()
        if row is None:
            return None
        idle = (utcnow() - row.last_seen_at).total_seconds()
        if idle > SESSION_IDLE_SECONDS:
            self._drop_hash(id_hash)
            return None
        if idle > TOUCH_SECONDS:
            with self.db.write_session() as db_session:
                db_session.execute(
                    update(WebSessionRow).where(WebSessionRow.id_hash == id_hash).values(last_seen_at=utcnow())
                )
        return WebSession(id_hash, row.token_ref, row.csrf)

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._drop_hash(_id_hash(session_id))

    def _drop_hash(self, id_hash: str) -> None:
        with self.db.write_session() as db_session:
            db_session.execute(delete(WebSessionRow).where(WebSessionRow.id_hash == id_hash))


__all__ = [
    "SESSION_IDLE_SECONDS",
    "ProcessTokens",
    "SessionStore",
    "TokenReferences",
    "WebSession",
    "token_references",
]
