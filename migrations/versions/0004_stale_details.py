"""details kept stale, and the warnings of a run

Revision ID: 0004_stale_details
Revises: 0003_trust
Create Date: 2026-11-24

An object whose details could not be read keeps their last known values and says since
when (``details_stale_since``); a run keeps the facts it found (``sync_runs.warnings``),
which are not failures.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_stale_details"
down_revision = "0003_trust"
branch_labels = None
depends_on = None

_OBJECT_TABLES = ("hosts", "workloads", "services")


def upgrade() -> None:
    for table in _OBJECT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("details_stale_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("warnings", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("warnings")
    for table in _OBJECT_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("details_stale_since")
