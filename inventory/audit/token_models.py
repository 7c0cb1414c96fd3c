"""The ``api_tokens`` table: API tokens, stored as a keyed hash only (inventory/tokens.py).

Apart from the audit tables (inventory/audit/models.py) because its partial index names a
``postgresql_where``, which makes SQLAlchemy import its PostgreSQL dialect (~20 ms) to check the
argument: a sync, which never touches tokens, does not pay for it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from inventory.storage.models import Base, Id, JsonValue, UTCDateTime
from inventory.timeutil import utcnow


class ApiToken(Base):
    """An API token: stored as a keyed hash only (inventory/tokens.py); a revoked token keeps its row."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        # One live token per name.
        Index(
            "ix_api_tokens_live_name",
            "name_key",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    # The name as compared (NFC, case-folded).
    name_key: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    groups: Mapped[list[str]] = mapped_column(JsonValue, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    # HMAC under the audit key over every field above (inventory/audit/row_macs.py); NULL: never signed, refused.
    mac: Mapped[str | None] = mapped_column(String(64))
