"""trust: keyed audit entries, inserts that must extend the head, approval expiry, API tokens

Revision ID: 0003_trust
Revises: 0002_audit
Create Date: 2026-11-24

- audit_log.mac: HMAC of seq and entry_hash under the audit key kept outside the
  database; entries written before this revision keep NULL (nothing is rewritten).
- A BEFORE INSERT trigger on both engines refuses any insert that does not extend the
  head: the next seq, the head's hash as prev_hash, a mac, an entry_hash not already
  in the log (on SQLite, INSERT OR REPLACE would otherwise delete the entry it collides
  with without firing the DELETE trigger). On PostgreSQL it also recomputes the hash.
- The server-side append function of 0002_audit is dropped: it cannot sign entries.
- approvals.on_behalf_of, approvals.expires_at; the api_tokens table.

Downgrading is refused while the audit log holds entries: no migration drops the log.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_trust"
down_revision = "0002_audit"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
)
_GENESIS = "0" * 64
_REFUSAL = "audit_log is append-only: an insert must extend the head"
# The hashed payload of inventory/audit/log.py, built from the new row.
_NEW_PAYLOAD = (
    "json_build_array(to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    "NEW.event, NEW.actor, NEW.tool, NEW.target, NEW.target_name, NEW.source, NEW.tool_class, NEW.decision, "
    "NEW.matched_rule, NEW.approver, NEW.approval_id, NEW.outcome, NEW.error, NEW.duration_us, NEW.policy_hash"
    ")::text || E'\\n' || coalesce(NEW.arguments::text, 'null') || E'\\n' || coalesce(NEW.details::text, 'null')"
)
_PG_EXTEND_HEAD = f"""
CREATE FUNCTION audit_log_extend_head() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash text;
BEGIN
    -- The appenders' chain lock (inventory/audit/log.py _PG_CHAIN_LOCK): one insert at a time.
    PERFORM pg_advisory_xact_lock(111888811169);
    SELECT seq, entry_hash INTO head_seq, head_hash FROM audit_log ORDER BY seq DESC LIMIT 1;
    IF NEW.seq IS DISTINCT FROM coalesce(head_seq, 0) + 1
       OR NEW.prev_hash IS DISTINCT FROM coalesce(head_hash, repeat('0', 64))
       OR NEW.mac IS NULL
       OR NEW.entry_hash IS DISTINCT FROM
          encode(sha256(convert_to(NEW.prev_hash || E'\\n' || {_NEW_PAYLOAD}, 'UTF8')), 'hex')
    THEN
        RAISE EXCEPTION '{_REFUSAL} (entry %, head %)', NEW.seq, coalesce(head_seq, 0)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$
"""
_SQLITE_EXTEND_HEAD = f"""
CREATE TRIGGER audit_log_extend_head BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM audit_log)
  OR NEW.prev_hash IS NOT coalesce((SELECT entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1), '{_GENESIS}')
  OR NEW.mac IS NULL
  OR EXISTS (SELECT 1 FROM audit_log WHERE entry_hash = NEW.entry_hash)
BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END
"""


def refuse_while_audited(target: str) -> None:
    """No migration drops the audit log: a downgrade past it waits until the log is empty (it never is, in use)."""
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
    if count:
        from inventory.errors import UsageError

        raise UsageError(
            f"refusing to downgrade to {target}: the audit log holds {count} entries and no migration drops or "
            "rewrites them (export them with `inventory audit export`, then move to a new database instead)"
        )


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("on_behalf_of", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "api_tokens",
        sa.Column("id", _ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("groups", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    # One live token per name; a revoked one keeps its row.
    op.create_index(
        "ix_api_tokens_live_name",
        "api_tokens",
        ["name_key"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS audit_append(text, text, text, text, text, text, text, text, text, text, "
            "bigint, text, text, bigint, text, json, json)"
        )
        op.execute(_PG_EXTEND_HEAD)
        op.execute(
            "CREATE TRIGGER audit_log_extend_head BEFORE INSERT ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_extend_head()"
        )
    else:
        # batch_alter_table rebuilt the table on SQLite: its triggers went with the old one.
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {operation} refused'); END"
            )
        op.execute(_SQLITE_EXTEND_HEAD)


def downgrade() -> None:
    refuse_while_audited("0002_audit")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_extend_head ON audit_log")
        op.execute("DROP FUNCTION audit_log_extend_head()")
        op.execute(importlib.import_module("migrations.versions.0002_audit")._APPEND_FUNCTION)
    else:
        op.execute("DROP TRIGGER audit_log_extend_head")
    op.drop_index("ix_api_tokens_live_name", table_name="api_tokens")
    op.drop_table("api_tokens")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("on_behalf_of")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("mac")
    if op.get_bind().dialect.name == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS audit_log_no_{operation.lower()} BEFORE {operation} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {operation} refused'); END"
            )
