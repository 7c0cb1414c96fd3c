"""retention: audit checkpoints, and deleting only the archived prefix of the audit log

Revision ID: 0006_retention
Revises: 0005_machines
Create Date: 2026-12-06

- audit_checkpoints: one row per `inventory audit archive`: the entries first_seq..last_seq
  moved to an archive file, the last one's hash, the file's sha256, a mac under the audit key.
- A checkpoint is refused unless it names an entry of the log by seq and hash, starts
  right after the previous checkpoint, and leaves the newest entry in the log (the insert
  trigger of 0003_trust chains new entries to it). Checkpoints are never updated or deleted.
- DELETE on audit_log is refused above the newest checkpoint (it was refused everywhere):
  only an archived prefix can go (same trigger names as before; on PostgreSQL the function
  of 0002_audit's triggers is replaced). UPDATE and TRUNCATE stay refused. On PostgreSQL only the
  owner may delete at all: the runtime role has no DELETE on audit_log (inventory/storage/grants.py).

Downgrading is refused once a checkpoint exists: the log would look cut off to older code.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_retention"
down_revision = "0005_machines"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_REFUSE_DELETE = "audit_log is append-only: only entries up to the newest audit checkpoint may be deleted"
_REFUSE_CHECKPOINT = (
    "audit_checkpoints: a checkpoint must name an entry of the log (seq and hash), follow the previous one "
    "and leave the newest entry in the log"
)
_FIXED = "audit_checkpoints are never changed or deleted"
# The rule, as a condition on NEW, shared by both engines.
_CHECKPOINT_OK = """
    EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.last_seq AND entry_hash = NEW.entry_hash)
    AND NEW.last_seq < (SELECT max(seq) FROM audit_log)
    AND NEW.first_seq = coalesce((SELECT max(last_seq) FROM audit_checkpoints), 0) + 1
    AND NEW.last_seq >= NEW.first_seq
"""
_ARCHIVED_ABOVE = "coalesce((SELECT max(last_seq) FROM audit_checkpoints), 0)"

_PG_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.seq <= {_ARCHIVED_ABOVE} THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION '{_REFUSE_DELETE} (entry %)', OLD.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE FUNCTION audit_checkpoint_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The appenders' chain lock: no entry is appended while the checkpoint is checked.
    PERFORM pg_advisory_xact_lock(111888811169);
    IF NOT ({_CHECKPOINT_OK}) THEN
        RAISE EXCEPTION '{_REFUSE_CHECKPOINT} (entry %)', NEW.last_seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE FUNCTION audit_checkpoint_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{_FIXED}: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", _ID, nullable=False),
        sa.Column("first_seq", _ID, nullable=False),
        sa.Column("last_seq", _ID, nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_by", sa.String(length=200), nullable=False),
        sa.Column("archive_name", sa.String(length=1000), nullable=False),
        sa.Column("archive_sha256", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
        sa.UniqueConstraint("last_seq", name=op.f("uq_audit_checkpoints_last_seq")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # The triggers of 0002_audit stay (audit_log_no_update_delete, audit_log_no_truncate); their function
        # now lets an archived entry go.
        op.execute(_PG_FUNCTIONS)
        op.execute(
            "CREATE TRIGGER audit_checkpoint_check BEFORE INSERT ON audit_checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_check()"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_fixed BEFORE UPDATE OR DELETE ON audit_checkpoints "
            "FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_fixed()"
        )
        op.execute(
            "CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoints "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_fixed()"
        )
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            f"CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log WHEN OLD.seq > {_ARCHIVED_ABOVE} "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSE_DELETE}'); END"
        )
        op.execute(
            f"CREATE TRIGGER audit_checkpoint_check BEFORE INSERT ON audit_checkpoints WHEN NOT ({_CHECKPOINT_OK}) "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSE_CHECKPOINT}'); END"
        )
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_checkpoint_no_{operation.lower()} BEFORE {operation} ON audit_checkpoints "
                f"BEGIN SELECT RAISE(ABORT, '{_FIXED}: {operation} refused'); END"
            )


def downgrade() -> None:
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM audit_checkpoints")).scalar_one()
    if count:
        from inventory.errors import UsageError

        raise UsageError(
            f"refusing to downgrade to 0005_machines: the audit log was archived ({count} checkpoints); "
            "older code would read it as cut off"
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        op.drop_table("audit_checkpoints")  # its triggers go with it
        for function in ("audit_checkpoint_check", "audit_checkpoint_fixed"):
            op.execute(f"DROP FUNCTION {function}()")
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END"
        )
        op.drop_table("audit_checkpoints")
