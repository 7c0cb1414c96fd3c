"""audit log (append-only, hash-chained) and approvals

Revision ID: 0002_audit
Revises: 0001_initial
Create Date: 2026-11-22

The database itself refuses to change the audit log: triggers abort UPDATE and
DELETE on both engines, and TRUNCATE on PostgreSQL (SQLite has no TRUNCATE; its
"DELETE FROM" without WHERE fires the delete trigger).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_audit"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
_REFUSAL = "audit_log is append-only"
# The audit log's JSON is kept as the exact canonical text that was hashed: json, not jsonb, on PostgreSQL.
_CANONICAL_JSON = sa.Text().with_variant(postgresql.JSON(astext_type=sa.Text()), "postgresql")

# Appending on PostgreSQL in one round trip: lock the chain, read its head, hash, insert, all
# on the server, so that the lock is held for microseconds instead of client round trips.
# The payload is exactly the one inventory/audit/log.py defines (and hashes on SQLite); the
# lock key is log.py's _PG_CHAIN_LOCK. A VOLATILE function takes a new snapshot per statement,
# so the head is read after the lock is granted.
_APPEND_FUNCTION = r"""
CREATE FUNCTION audit_append(
    p_event text, p_actor text, p_tool text, p_target text, p_target_name text, p_source text,
    p_tool_class text, p_decision text, p_matched_rule text, p_approver text, p_approval_id bigint,
    p_outcome text, p_error text, p_duration_us bigint, p_policy_hash text, p_arguments json, p_details json
) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    last_seq bigint;
    last_hash text;
    new_at timestamptz;
    new_payload text;
BEGIN
    PERFORM pg_advisory_xact_lock(111888811169);
    SELECT seq, entry_hash INTO last_seq, last_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    last_seq := coalesce(last_seq, 0);
    last_hash := coalesce(last_hash, repeat('0', 64));
    new_at := clock_timestamp();
    new_payload := json_build_array(
        to_char(new_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), p_event, p_actor, p_tool,
        p_target, p_target_name, p_source, p_tool_class, p_decision, p_matched_rule, p_approver,
        p_approval_id, p_outcome, p_error, p_duration_us, p_policy_hash
    )::text || E'\n' || coalesce(p_arguments::text, 'null') || E'\n' || coalesce(p_details::text, 'null');
    INSERT INTO audit_log (seq, at, event, actor, tool, target, target_name, source, arguments, tool_class,
        decision, matched_rule, approver, approval_id, outcome, error, duration_us, policy_hash, details,
        prev_hash, entry_hash)
    VALUES (last_seq + 1, new_at, p_event, p_actor, p_tool, p_target, p_target_name, p_source, p_arguments,
        p_tool_class, p_decision, p_matched_rule, p_approver, p_approval_id, p_outcome, p_error, p_duration_us,
        p_policy_hash, p_details, last_hash,
        encode(sha256(convert_to(last_hash || E'\n' || new_payload, 'UTF8')), 'hex'));
    RETURN last_seq + 1;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requester", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=200), nullable=False),
        sa.Column("target", sa.String(length=1000), nullable=False),
        sa.Column("target_name", sa.String(length=500), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("arguments", _JSON, nullable=False),
        sa.Column("tool_class", sa.String(length=20), nullable=False),
        sa.Column("matched_rule", sa.String(length=200), nullable=True),
        sa.Column("policy_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("request_seq", _ID, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_requester"), ["requester"], unique=False)
        batch_op.create_index(batch_op.f("ix_approvals_status"), ["status"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("seq", _ID, autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=200), nullable=True),
        sa.Column("target", sa.String(length=1000), nullable=True),
        sa.Column("target_name", sa.String(length=500), nullable=True),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("arguments", _CANONICAL_JSON, nullable=True),
        sa.Column("tool_class", sa.String(length=20), nullable=True),
        sa.Column("decision", sa.String(length=20), nullable=True),
        sa.Column("matched_rule", sa.String(length=200), nullable=True),
        sa.Column("approver", sa.String(length=200), nullable=True),
        sa.Column("approval_id", _ID, nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_us", sa.BigInteger(), nullable=True),
        sa.Column("policy_hash", sa.String(length=64), nullable=True),
        sa.Column("details", _CANONICAL_JSON, nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_audit_log_entry_hash")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_actor_at", ["actor", "at"], unique=False)
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_tool_at", ["tool", "at"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{_REFUSAL}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
        )
        op.execute(_APPEND_FUNCTION)
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}: {operation} refused'); END"
            )


def downgrade() -> None:
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    if count:
        from inventory.errors import UsageError

        # No migration drops the audit log (0003_trust refuses the same way).
        raise UsageError(f"refusing to downgrade to 0001_initial: the audit log holds {count} entries")
    # Dropping the table drops its triggers on both engines; the function goes with it.
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tool_at")
        batch_op.drop_index("ix_audit_log_at")
        batch_op.drop_index("ix_audit_log_actor_at")

    op.drop_table("audit_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_log_refuse_change()")
        op.execute(
            "DROP FUNCTION IF EXISTS audit_append(text, text, text, text, text, text, text, text, text, text, bigint, "
            "text, text, bigint, text, json, json)"
        )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_status"))
        batch_op.drop_index(batch_op.f("ix_approvals_requester"))

    op.drop_table("approvals")
