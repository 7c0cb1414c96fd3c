"""A database's identity, and what it holds that only an audit key could have signed.

Migration 0012_applied_policy stores a random id in ``database_identity``; the default audit key
and head files are named by it (inventory/audit/keys.py), so that two databases of one OS user
(two `inventory demo --dir`) never share a head file. Raw SQL, no models: inventory/audit/keys.py
reads this before anything else is loaded, and the models import the storage layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from inventory.errors import StorageError


@dataclass(frozen=True)
class SignedHead:
    """The database's audit head (audit_head): the newest entry's seq, hash and mac."""

    seq: int
    entry_hash: str
    mac: str


def database_id(db: Any) -> str | None:
    """The database's id (None: a schema older than 0012_applied_policy, no row, or no SQLite file yet)."""
    url = db.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            return None  # connecting would create the file: a database that does not exist has no id
    try:
        with db.engine.connect() as conn:
            found = conn.execute(text("SELECT database_id FROM database_identity WHERE id = 1")).scalar()
    except SQLAlchemyError as exc:
        if "database_identity" in str(exc):
            return None
        raise StorageError(f"cannot read the database's identity from {db.display_url}: {exc}") from exc
    return str(found) if found else None


def newest_signed_entry(db: Any) -> SignedHead | None:
    """The newest audit entry that carries a mac (None: nothing was ever signed in this database).

    Approvals, tokens and applied policies are signed only alongside an audit entry (each is
    recorded by one), so a database with no signed entry holds nothing a key signed.
    """
    query = "SELECT seq, entry_hash, mac FROM audit_log WHERE mac IS NOT NULL ORDER BY seq DESC LIMIT 1"
    try:
        with db.engine.connect() as conn:
            row = conn.execute(text(query)).first()
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read the audit log of {db.display_url}: {exc}") from exc
    return SignedHead(int(row[0]), str(row[1]), str(row[2])) if row is not None else None


def entry_hash_at(db: Any, seq: int) -> str | None:
    with db.engine.connect() as conn:
        found = conn.execute(text("SELECT entry_hash FROM audit_log WHERE seq = :seq"), {"seq": seq}).scalar()
    return str(found) if found else None


__all__ = ["SignedHead", "database_id", "entry_hash_at", "newest_signed_entry"]
