"""trust rows: approvals and tokens carry a MAC, revocations are append-only

Revision ID: 0010_trust_rows
Revises: 0007_replicas
Create Date: 2026-12-06

- approvals.mac, api_tokens.mac: HMAC-SHA256 under the audit key over every field of the
  row that decides anything (inventory/audit/row_macs.py). The key lives outside the
  database, so this revision cannot compute them: rows already stored keep NULL, and
  `inventory db upgrade` (which holds the key) signs them right after the upgrade that
  added the columns. A row without a valid mac is refused wherever it is used.
- api_tokens.revoked_by.
- token_revocations: one row per revoked token; triggers refuse UPDATE and DELETE (and
  TRUNCATE on PostgreSQL), so a revocation cannot be undone by editing the database.
  Tokens revoked before this revision are copied in.
- ix_audit_log_approval_id: approving looks up whether the log already settled the approval
  (a settled row restored to pending, old mac included, is refused).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_trust_rows"
down_revision = "0007_replicas"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLE = "token_revocations"
_REFUSAL = "token_revocations is append-only: a revocation is never undone"


def upgrade() -> None:
    op.create_index("ix_audit_log_approval_id", "audit_log", ["approval_id"])
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    op.create_table(
        _TABLE,
        sa.Column("token_id", _ID, autoincrement=False, nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_token_revocations")),
    )
    op.execute(
        f"INSERT INTO {_TABLE} (token_id, revoked_at, revoked_by) "
        "SELECT id, revoked_at, 'before 0010_trust_rows' FROM api_tokens WHERE revoked_at IS NOT NULL"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION token_revocations_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_REFUSAL}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER token_revocations_no_update_delete BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION token_revocations_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER token_revocations_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION token_revocations_refuse_change()"
        )
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER token_revocations_no_{operation.lower()} BEFORE {operation} ON {_TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}: {operation} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER token_revocations_no_truncate ON {_TABLE}")
        op.execute(f"DROP TRIGGER token_revocations_no_update_delete ON {_TABLE}")
        op.execute("DROP FUNCTION token_revocations_refuse_change()")
    op.drop_table(_TABLE)
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("mac")
        batch_op.drop_column("revoked_by")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("mac")
    op.drop_index("ix_audit_log_approval_id", table_name="audit_log")
