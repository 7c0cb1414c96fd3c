"""change causes: who or what made each change (changes.cause)

Revision ID: 0014_change_causes
Revises: 0013_soak_indexes
Create Date: 2026-12-06

One nullable JSON column on changes, in the shape inventory.cause.Cause stores: the kind of
cause (our tool call, a Proxmox task, a Kubernetes field manager, a Docker event), who, what,
the source's id for it, and whether it was matched by time rather than stated. Rows written
before have none and read as "unknown". Adding a nullable column rewrites no rows on either engine.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014_change_causes"
down_revision = "0013_soak_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
        batch.add_column(sa.Column("cause", json, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("cause")
