"""What `inventory audit verify` reports, as one document: the CLI (direct or through the server) and the API say it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inventory.audit.archive import verify_with_archives
from inventory.audit.keys import secrets_for
from inventory.audit.log import Checkpoint, verify_chain
from inventory.audit.restore import restore_notes
from inventory.storage.database import Database


def verify_report(
    db: Database,
    checkpoint: Checkpoint | None = None,
    *,
    in_python: bool = False,
    archives: Sequence[str] = (),
) -> dict[str, Any]:
    """Walk the chain (with ``archives``, those files first), check every mac and both heads with this process's
    key, and list the restores the log went through; ``ok`` is False at the first problem, which ``problem`` names.
    ``applied_policies`` lists every applied policy row that does not verify (a decision would refuse it)."""
    from inventory.policy.applied import tampered_rows

    audit_secrets = secrets_for(db)
    with db.session() as session:
        if archives:
            result = verify_with_archives(session, archives, audit_secrets, in_python=in_python)
        else:
            result = verify_chain(session, checkpoint, in_python=in_python, audit_secrets=audit_secrets)
        restores = restore_notes(session, audit_secrets, result)
    problem = result.problem
    # The rows that decide (applied policies) are signed too: an edited one fails the check as it is refused.
    policy_problems = tampered_rows(db)
    found = None if problem is None else {"seq": problem.seq, "kind": problem.kind, "message": problem.message}
    if found is None and policy_problems:
        found = {"seq": None, "kind": "applied_policy", "message": policy_problems[0]}
    return {
        "ok": result.ok and not policy_problems,
        "checked": result.checked,
        "archived": result.archived,
        "starts_after": result.start_seq,
        "last_seq": result.last_seq,
        "last_hash": result.last_hash,
        "problem": found,
        "restores": restores,
        "applied_policies": policy_problems,
    }


__all__ = ["verify_report"]
