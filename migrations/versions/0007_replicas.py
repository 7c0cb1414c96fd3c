"""replicas: web sessions in the database, the audit head kept by the database itself

Revision ID: 0007_replicas
Revises: 0006_retention
Create Date: 2026-12-06

Several `inventory serve` processes on one database share what one process used to keep:

- web_sessions: a browser's session, keyed by the sha256 of its id, holding a reference to
  the API token (the token's HMAC hash, as inventory/tokens.py stores it), never the token;
  so a session made on one replica works on every other, and sign-out ends it on all.
- audit_head: one row, the newest audit entry (seq, entry_hash and its mac), advanced by an
  AFTER INSERT trigger on audit_log on both engines and only forward. On PostgreSQL the
  trigger function is SECURITY DEFINER (the owner's rights, a fixed search_path, names
  qualified with the schema), and the runtime role gets SELECT only (storage/grants.py):
  it can append, which moves the head, but cannot move the head back or remove it.
  The row is seeded from the log as it stands, so a database upgraded in use starts with
  the right head.

On SQLite a later revision that rebuilds audit_log (batch_alter_table) drops its triggers,
audit_log_advance_head among them, and must create them again (as 0003_trust does).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_replicas"
down_revision = "0006_retention"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64
_BACKWARDS = "audit_head only moves forward"
_NOT_EXTENDING = "audit_log: the entry does not extend the audit head"
_SEED = f"""
INSERT INTO audit_head (id, seq, entry_hash, mac)
SELECT 1,
       coalesce((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0),
       coalesce((SELECT entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1), '{_GENESIS}'),
       (SELECT mac FROM audit_log ORDER BY seq DESC LIMIT 1)
"""


def _pg_statements(schema: str) -> list[str]:
    # The schema is named in every statement the SECURITY DEFINER function runs: with a fixed
    # search_path no object of the caller's choosing can stand in for audit_head.
    head = f"{schema}.audit_head"
    return [
        f"""
CREATE OR REPLACE FUNCTION {schema}.audit_log_advance_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE {head} SET seq = NEW.seq, entry_hash = NEW.entry_hash, mac = NEW.mac
    WHERE id = 1 AND seq < NEW.seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION '{_NOT_EXTENDING} (entry %): the head is missing or at or after it', NEW.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END $$
""",
        f"REVOKE ALL ON FUNCTION {schema}.audit_log_advance_head() FROM PUBLIC",
        (
            "CREATE TRIGGER audit_log_advance_head AFTER INSERT ON audit_log "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.audit_log_advance_head()"
        ),
        f"""
CREATE OR REPLACE FUNCTION {schema}.audit_head_forward_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{_BACKWARDS}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$
""",
        (
            "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.audit_head_forward_only()"
        ),
        (
            "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.audit_head_forward_only()"
        ),
    ]


_SQLITE_STATEMENTS = [
    f"""
CREATE TRIGGER audit_log_advance_head AFTER INSERT ON audit_log
BEGIN
    SELECT RAISE(ABORT, '{_NOT_EXTENDING}: the head is missing or at or after it')
    WHERE NOT EXISTS (SELECT 1 FROM audit_head WHERE id = 1 AND seq < NEW.seq);
    UPDATE audit_head SET seq = NEW.seq, entry_hash = NEW.entry_hash, mac = NEW.mac WHERE id = 1;
END
""",
    (
        "CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head "
        "WHEN NEW.seq <= OLD.seq OR NEW.id IS NOT OLD.id "
        f"BEGIN SELECT RAISE(ABORT, '{_BACKWARDS}: UPDATE refused'); END"
    ),
    f"CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head BEGIN SELECT RAISE(ABORT, '{_BACKWARDS}'); END",
    # INSERT OR REPLACE would delete the row without firing the DELETE trigger: one row, inserted once.
    (
        "CREATE TRIGGER audit_head_one_row BEFORE INSERT ON audit_head WHEN EXISTS (SELECT 1 FROM audit_head) "
        f"BEGIN SELECT RAISE(ABORT, '{_BACKWARDS}: it has one row'); END"
    ),
]


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("token_ref", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_last_seen_at"), ["last_seen_at"], unique=False)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # Appenders hold the chain lock while they insert: seed under it, so no entry slips in between.
        bind.execute(sa.text("SELECT pg_advisory_xact_lock(111888811169)"))
    op.execute(_SEED)
    if bind.dialect.name == "postgresql":
        schema = bind.dialect.identifier_preparer.quote(bind.execute(sa.text("SELECT current_schema()")).scalar_one())
        for statement in _pg_statements(schema):
            op.execute(statement)
    else:
        for statement in _SQLITE_STATEMENTS:
            op.execute(statement)


def downgrade() -> None:
    # The head is derived from the log: dropping it loses nothing the log does not hold.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_advance_head ON audit_log")
        op.execute("DROP TABLE audit_head")
        op.execute("DROP FUNCTION audit_log_advance_head()")
        op.execute("DROP FUNCTION audit_head_forward_only()")
    else:
        op.execute("DROP TRIGGER audit_log_advance_head")
        op.drop_table("audit_head")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_last_seen_at"))
    op.drop_table("web_sessions")
