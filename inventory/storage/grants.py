"""The PostgreSQL runtime role's grants: what the service needs and nothing more.

Two roles: the owner runs `inventory db upgrade` (it owns every table, the triggers and
their functions); the runtime role runs the service with the grants below. It owns
nothing, so it cannot ALTER or DROP a table or disable a trigger. It

- reads and writes the inventory (every table not named below), web sessions included
  (``web_sessions``: created, touched and deleted at sign-out);
- appends to the audit log, to token_revocations and to applied_policies (SELECT, INSERT: no UPDATE,
  DELETE or TRUNCATE), and only reads ``database_identity`` (which names the audit key);
- only reads ``audit_head``: the owner's SECURITY DEFINER trigger moves it at each append, so the
  runtime role can neither move it back nor remove it;
- only reads ``audit_checkpoints``: archiving the audit log (a checkpoint, then deleting the
  archived prefix) is the owner's action;
- inserts approvals and tokens and may UPDATE only the columns that settling an approval or
  revoking a token changes (``SETTLED_COLUMNS``): a requester, tool, target, arguments,
  token name, hash or groups can not be rewritten in place, and every row carries a mac besides
  (inventory/audit/row_macs.py);
- uses the sequence of every table with a serial id (derived from the models, so tables of later
  revisions are covered), and moves those the sync allocates ids from (``setval``: UPDATE).
"""

from __future__ import annotations

import re
from typing import Any

from inventory.errors import UsageError

_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
APPEND_ONLY = ("applied_policies", "audit_log", "token_revocations")
# Inserted, then changed only in these columns (settled, revoked, re-signed); never deleted.
SETTLED_COLUMNS = {
    "approvals": ("status", "decided_by", "decided_at", "reason", "outcome", "request_seq", "mac"),
    "api_tokens": ("revoked_at", "revoked_by", "mac"),
}
# Kept by the owner's triggers (audit_head), archives (audit_checkpoints) or migrations (alembic_version,
# database_identity): read only.
READ_ONLY = ("alembic_version", "audit_checkpoints", "audit_head", "database_identity")


def serial_sequences(tables: dict[str, Any]) -> dict[str, str]:
    """table name -> the sequence PostgreSQL made for its serial id (``<table>_<column>_seq``)."""
    sequences = {}
    for name, table in tables.items():
        column = table.autoincrement_column
        if column is not None:
            sequences[name] = f"{name}_{column.name}_seq"
    return sequences


def runtime_grants(role: str) -> list[str]:
    """The statements that give ``role`` what the service needs in the current database's public schema."""
    # The audit and token tables share Base.metadata: imported for their tables.
    import inventory.audit.models
    import inventory.audit.token_models  # noqa: F401
    from inventory.schema import SCHEMA
    from inventory.storage.models import Base

    if not _ROLE_NAME.fullmatch(role):
        raise UsageError(f"role name {role!r}: letters, digits and underscores only, not starting with a digit")
    quoted = f'"{role}"'
    tables = sorted(Base.metadata.tables)
    data = [t for t in tables if t not in (*APPEND_ONLY, *SETTLED_COLUMNS, *READ_ONLY)]
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(data)} TO {quoted}",
        *(
            f"GRANT SELECT, INSERT, UPDATE ({', '.join(columns)}) ON {table} TO {quoted}"
            for table, columns in SETTLED_COLUMNS.items()
        ),
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY)} TO {quoted}",
        f"GRANT SELECT ON {', '.join(READ_ONLY)} TO {quoted}",
    ]
    sequences = serial_sequences(dict(Base.metadata.tables))
    # The sync reserves blocks of ids of the object tables with setval (inventory/storage/store.py allocate_ids).
    allocated = {table.name for table in SCHEMA.tables.values()}
    used = [sequences[t] for t in sorted(sequences) if t not in allocated]
    moved = [sequences[t] for t in sorted(sequences) if t in allocated]
    if used:
        statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {', '.join(used)} TO {quoted}")
    if moved:
        statements.append(f"GRANT USAGE, SELECT, UPDATE ON SEQUENCE {', '.join(moved)} TO {quoted}")
    return statements


__all__ = ["APPEND_ONLY", "READ_ONLY", "SETTLED_COLUMNS", "runtime_grants", "serial_sequences"]
