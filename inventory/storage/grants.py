"""The PostgreSQL runtime role's grants: what the service needs and nothing more.

Two roles: the owner runs `inventory db upgrade` (it owns every table, the triggers and
their functions); the runtime role runs the service with the grants below. It reads and
writes the inventory, appends to the audit log (SELECT, INSERT: no UPDATE, DELETE or
TRUNCATE), settles approvals and manages tokens; it owns nothing, so it cannot ALTER a
table or disable a trigger. It only reads ``audit_head``: the owner's SECURITY DEFINER trigger
moves it at each append, so the runtime role can neither move it back nor remove it. Web
sessions (``web_sessions``) are ordinary data: created, touched and deleted at sign-out.
"""

from __future__ import annotations

import re

from inventory.errors import UsageError

_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
APPEND_ONLY = ("audit_log",)
# Settled or revoked in place: no DELETE.
NO_DELETE = ("approvals", "api_tokens")
# Kept by the owner's triggers (audit_head) or by migrations (alembic_version): read only.
READ_ONLY = ("alembic_version", "audit_head")


def runtime_grants(role: str) -> list[str]:
    """The statements that give ``role`` what the service needs in the current database's public schema."""
    # The audit and token tables share Base.metadata: imported for their tables.
    import inventory.audit.models
    import inventory.audit.token_models  # noqa: F401
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
        # SqlStore.allocate_ids moves these past a block of new ids with setval, which needs UPDATE.
        f"GRANT UPDATE ON SEQUENCE {', '.join(_id_sequences())} TO {quoted}",
    ]
    return statements


def _id_sequences() -> list[str]:
    from inventory.schema import SCHEMA

    return [f"{object_type.row.__tablename__}_id_seq" for object_type in SCHEMA]


__all__ = ["runtime_grants"]
