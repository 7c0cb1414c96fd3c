"""applied policy: the policy in force belongs to the database; the database has an identity

Revision ID: 0012_applied_policy
Revises: 0011_fixed_search_path
Create Date: 2026-12-06

- applied_policies: every policy applied with `inventory policy apply` (full text, sha256,
  who, when, the policy it replaced, the audit entry that recorded it, a mac under the audit
  key). The newest row decides every call, whatever config a caller names. Triggers refuse
  UPDATE and DELETE (TRUNCATE too on PostgreSQL), and on SQLite an INSERT over an existing id
  (INSERT OR REPLACE would delete the row without firing the DELETE trigger).
- database_identity: one row holding a random id made here; the audit key and head files are
  named by it (one pair per database, not one per OS user: inventory/audit/keys.py). Its
  triggers refuse changing or deleting it.

Downgrading is refused while a policy has been applied: the rows are the record of who put
which policy in force.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012_applied_policy"
down_revision = "0011_fixed_search_path"
branch_labels = None
depends_on = None

_POLICIES = "applied_policies"
_IDENTITY = "database_identity"
_REFUSALS = {
    _POLICIES: "applied_policies is append-only: an applied policy is never changed or removed",
    _IDENTITY: "database_identity never changes: the audit key is named by it",
}


def upgrade() -> None:
    op.create_table(
        _POLICIES,
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_by", sa.String(length=200), nullable=False),
        sa.Column("previous_sha256", sa.String(length=64), nullable=True),
        sa.Column("audit_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_applied_policies")),
    )
    op.create_table(
        _IDENTITY,
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("database_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_database_identity_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_database_identity")),
    )
    columns = (sa.column("id", sa.Integer), sa.column("database_id", sa.String), sa.column("created_at", sa.DateTime))
    identity = sa.table(_IDENTITY, *columns)
    op.bulk_insert(identity, [{"id": 1, "database_id": uuid.uuid4().hex, "created_at": datetime.now(UTC)}])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, refusal in _REFUSALS.items():
            op.execute(
                f"CREATE FUNCTION {table}_refuse_change() RETURNS trigger LANGUAGE plpgsql "
                "SET search_path = pg_catalog, pg_temp AS $$ "
                f"BEGIN RAISE EXCEPTION '{refusal}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse_change()"
            )
    else:
        for table, refusal in _REFUSALS.items():
            for operation in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{refusal}: {operation} refused'); END"
                )
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE id = NEW.id) "
                f"BEGIN SELECT RAISE(ABORT, '{refusal}: an existing row is never replaced'); END"
            )


def downgrade() -> None:
    bind = op.get_bind()
    count = bind.execute(sa.text(f"SELECT count(*) FROM {_POLICIES}")).scalar_one()
    if count:
        from inventory.errors import UsageError

        raise UsageError(
            f"refusing to downgrade to {down_revision}: {count} policies were applied and no migration drops "
            "the record of who put which policy in force"
        )
    if bind.dialect.name == "postgresql":
        for table in _REFUSALS:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_update_delete ON {table}")
            op.execute(f"DROP FUNCTION {table}_refuse_change()")
    op.drop_table(_IDENTITY)
    op.drop_table(_POLICIES)
