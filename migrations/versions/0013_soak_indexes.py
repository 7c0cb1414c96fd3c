"""soak indexes: objects are looked up by namespace and name on one index

Revision ID: 0013_soak_indexes
Revises: 0012_applied_policy
Create Date: 2026-12-06

`workloads show NS/NAME` (and services) filters on namespace and name. With one index on each,
SQLite (no statistics) chose the namespace index and scanned every row of the namespace, removed
ones included, so the lookup grew with the history retention keeps. ix_workloads_namespace and
ix_services_namespace are replaced by (namespace, name) indexes, which serve namespace-only
filters as well.
"""

from __future__ import annotations

from alembic import op

revision = "0013_soak_indexes"
down_revision = "0012_applied_policy"
branch_labels = None
depends_on = None

_TABLES = ("workloads", "services")


def upgrade() -> None:
    for table in _TABLES:
        op.create_index(f"ix_{table}_namespace_name", table, ["namespace", "name"], unique=False)
        op.drop_index(f"ix_{table}_namespace", table_name=table)


def downgrade() -> None:
    for table in _TABLES:
        op.create_index(f"ix_{table}_namespace", table, ["namespace"], unique=False)
        op.drop_index(f"ix_{table}_namespace_name", table_name=table)
