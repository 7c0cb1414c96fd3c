"""fixed search_path: the audit log's trigger functions name their tables with the schema

Revision ID: 0011_fixed_search_path
Revises: 0010_trust_rows
Create Date: 2026-12-06

PostgreSQL resolves an unqualified table name in a trigger function through the caller's
search_path, where pg_temp comes first: a TEMP table named audit_log would stand in for the
real one, so that the check "an insert must extend the head" read a head of the caller's
choosing. Every trigger function of the audit tables (0003's extend-head, 0006's refusals and
checkpoint checks, 0010's revocations) is recreated with schema-qualified table names and
runs with ``search_path = pg_catalog, pg_temp``, as 0007's functions already do. SQLite has no
schemas or search_path: nothing changes there.
"""

from __future__ import annotations

import importlib
import re

import sqlalchemy as sa
from alembic import op

revision = "0011_fixed_search_path"
down_revision = "0010_trust_rows"
branch_labels = None
depends_on = None

# The trigger functions of the audit tables that 0007 did not already pin.
_FUNCTIONS = (
    "audit_log_extend_head",
    "audit_log_refuse_change",
    "audit_checkpoint_check",
    "audit_checkpoint_fixed",
    "token_revocations_refuse_change",
)
_TABLE_REFERENCE = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+(audit_log|audit_checkpoints)\b")


def _definitions() -> list[str]:
    """The functions as their own revisions made them (0003's extend-head, 0006's refusals and checks)."""
    trust = importlib.import_module("migrations.versions.0003_trust")
    retention = importlib.import_module("migrations.versions.0006_retention")
    return [trust._PG_EXTEND_HEAD, retention._PG_FUNCTIONS]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    for definition in _definitions():
        qualified = _TABLE_REFERENCE.sub(rf"\1 {schema}.\2", definition)
        op.execute(qualified.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    for function in _FUNCTIONS:
        op.execute(f"ALTER FUNCTION {schema}.{function}() SET search_path = pg_catalog, pg_temp")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    for function in _FUNCTIONS:
        op.execute(f"ALTER FUNCTION {schema}.{function}() RESET search_path")
    for definition in _definitions():
        op.execute(definition.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
