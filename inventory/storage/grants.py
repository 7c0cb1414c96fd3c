"""The PostgreSQL runtime role's grants: what the service needs and nothing more.

Two roles: the owner runs `inventory db upgrade` (it owns every table, the triggers and
their functions); the runtime role runs the service with the grants below. It reads and
writes the inventory, appends to the audit log (SELECT, INSERT: no UPDATE, DELETE or
TRUNCATE), settles approvals and manages tokens; it owns nothing, so it cannot ALTER a
table or disable a trigger. Archiving the audit log (a checkpoint, then deleting the
archived prefix) is the owner's action: the runtime role only reads the checkpoints.
"""

from __future__ import annotations

import re

from inventory.errors import UsageError

_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
APPEND_ONLY = ("audit_log",)
# Settled or revoked in place: no DELETE.
NO_DELETE = ("approvals", "api_tokens")
READ_ONLY = ("alembic_version", "audit_checkpoints")


def runtime_grants(role: str) -> list[str]:
    """The statements that give ``role`` what the service needs in the current database's public schema."""
    import inventory.audit.models  # noqa: F401  (the audit tables share Base.metadata)
    from inventory.storage.models import Base

    if not _ROLE_NAME.fullmatch(role):
        raise UsageError(f"role name {role!r}: letters, digits and underscores only, not starting with a digit")
    quoted = f'"{role}"'
    tables = sorted(Base.metadata.tables)
    data = [t for t in tables if t not in (*APPEND_ONLY, *NO_DELETE, *READ_ONLY)]
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(data)} TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(NO_DELETE)} TO {quoted}",
        f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY)} TO {quoted}",
        f"GRANT SELECT ON {', '.join(READ_ONLY)} TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
    ]
    return statements


__all__ = ["runtime_grants"]
