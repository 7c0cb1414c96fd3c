"""live sources: what a full sync found that a source's change stream had missed (sync_runs.drift_repaired)

Revision ID: 0015_live_sync_runs
Revises: 0014_change_causes
Create Date: 2026-12-06

A source followed by its change stream (inventory/live.py) keeps one sync_runs row per watch
session, status ``watching``, its counts growing as deltas land and ``finished_at`` moved on as
the watch beats (so that ``status --max-age`` sees the source fresh). The full sync that still runs
every ``full_sync_interval`` records here how many objects it had to repair: 0 when the stream
missed nothing. NULL on every other run. Adding a nullable column rewrites no rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_live_sync_runs"
down_revision = "0014_change_causes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("drift_repaired", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("drift_repaired")
