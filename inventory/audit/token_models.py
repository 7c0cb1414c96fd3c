"""The ``api_tokens`` table and its ORM class: API tokens, stored as a keyed hash only (inventory/tokens.py).

Apart from the audit tables (inventory/audit/tables.py) because its partial index names a
``postgresql_where``, which makes SQLAlchemy import its PostgreSQL dialect (~20 ms) to check the
argument: a sync, which never touches tokens, does not pay for it.
"""

# No ``from __future__ import annotations`` in the model modules (inventory/storage/models.py says why).
from datetime import datetime

from sqlalchemy import Column, Index, String, Table, text
from sqlalchemy.orm import Mapped

from inventory.storage.models import Base
from inventory.storage.tables import Id, JsonValue, UTCDateTime, metadata
from inventory.timeutil import utcnow

# An API token: stored as a keyed hash only (inventory/tokens.py); a revoked token keeps its row.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False),
    # The name as compared (NFC, case-folded).
    Column("name_key", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("groups", JsonValue, nullable=False, default=list),
    Column("created_at", UTCDateTime, nullable=False, default=utcnow),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Column("revoked_by", String(200)),
    # HMAC under the audit key over every field above (inventory/audit/row_macs.py); NULL: never signed, refused.
    Column("mac", String(64)),
    # One live token per name.
    Index(
        "ix_api_tokens_live_name",
        "name_key",
        unique=True,
        sqlite_where=text("revoked_at IS NULL"),
        postgresql_where=text("revoked_at IS NULL"),
    ),
)


class ApiToken(Base):
    __table__ = api_tokens

    id: Mapped[int]
    name: Mapped[str]
    name_key: Mapped[str]
    token_hash: Mapped[str]
    groups: Mapped[list[str]]
    created_at: Mapped[datetime]
    created_by: Mapped[str]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None]
    mac: Mapped[str | None]
