"""changes in time order: one (at, id) index instead of the one on at alone

Revision ID: 0016_changes_time_order
Revises: 0015_live_sync_runs
Create Date: 2026-12-06

The changes timeline lists the newest rows first (the web, `changes --sort -at`, the API's
`sort=-at`), in keyset pages ordered by (at, id). A sync stamps all of its changes with one
time, so on an index of `at` alone the database had to fetch, join and sort every row of the
newest sync (25,000 after a first sync of a large cluster) to return one page. On (at, id) the
index holds the whole order and a page reads only its rows. It replaces ix_changes_at: time
filters (`--since`, retention's prune) use it as well, and the table keeps two indexes, each
maintained for every row a sync appends.
"""

from __future__ import annotations

from alembic import op

revision = "0016_changes_time_order"
down_revision = "0015_live_sync_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_changes_at_id", "changes", ["at", "id"], unique=False)
    op.drop_index("ix_changes_at", table_name="changes")


def downgrade() -> None:
    op.create_index("ix_changes_at", "changes", ["at"], unique=False)
    op.drop_index("ix_changes_at_id", table_name="changes")
