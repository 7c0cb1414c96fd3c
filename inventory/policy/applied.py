"""The policy in force belongs to the database: applied by an admin, stored whole, signed, audited.

``inventory policy apply FILE`` validates the file and stores its full text and sha256 as a
new row of ``applied_policies`` (append-only: triggers refuse UPDATE and DELETE; the runtime
role may only SELECT and INSERT), signed under the audit key (inventory/audit/row_macs.py)
in the transaction of the audit entry that records it (event ``policy``: who applied which
hash, and the hash it replaced). The newest row decides every call, approval and token
admin check, whatever config the caller names: a config's policy file is a draft, which
``inventory policy check FILE`` compares with the applied one and which never decides.

A row that does not verify (edited by someone without the key) is refused: nothing is
decided under it (``TamperedRow``, exit 3) and ``audit verify`` reports it.

Before any policy was applied the built-in defaults decide (inventory/policy/rules.py): no
groups, no act_for, no admins. The first ``policy apply`` may be made by the OS user who owns
the database's audit key (who can sign anything anyway) or by the database's owner (the SQLite
file's OS owner; PostgreSQL's owner role, which runs the migrations); later ones only by an admin
of the policy in force. A policy under which its applier would no longer be an admin is refused, so
no apply locks everyone out.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inventory.audit import row_macs
from inventory.audit.keys import secrets_for
from inventory.audit.log import AuditRecord, append, append_in
from inventory.audit.models import AppliedPolicyRow
from inventory.errors import PolicyDenied, TamperedRow, UsageError
from inventory.policy.rules import Policy, builtin_policy, parse_policy
from inventory.principals import Principal, named_by
from inventory.storage.database import Database
from inventory.timeutil import utcnow

APPLY_EVENT = "policy"


@dataclass(frozen=True)
class AppliedInfo:
    """Who applied the policy in force, and when (None fields: the built-in defaults, never applied)."""

    id: int | None
    sha256: str
    applied_by: str | None
    applied_at: datetime | None
    previous_sha256: str | None
    audit_seq: int | None
    text: str | None

    def as_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "applied_by": self.applied_by,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "previous_sha256": self.previous_sha256,
            "audit_seq": self.audit_seq,
            "builtin": self.id is None,
        }


BUILTIN_INFO = AppliedInfo(None, builtin_policy().sha256, None, None, None, None, None)


def _origin(row: AppliedPolicyRow) -> str:
    return f"applied policy {row.id} (sha256 {row.sha256[:12]})"


def _newest(session: Session) -> AppliedPolicyRow | None:
    return session.execute(select(AppliedPolicyRow).order_by(AppliedPolicyRow.id.desc()).limit(1)).scalar_one_or_none()


def row_problem(db: Database, row: AppliedPolicyRow) -> str | None:
    """Why the row cannot be trusted (None: its mac verifies and its hash is its text's)."""
    if not row_macs.intact(secrets_for(db), row):
        return (
            f"applied policy {row.id} does not match its mac: it was changed outside inventory (by someone "
            "without the audit key) and is refused"
        )
    if hashlib.sha256(row.text.encode("utf-8")).hexdigest() != row.sha256:
        return f"applied policy {row.id}: its text does not hash to its sha256; it is refused"
    return None


def _policy_of(db: Database, row: AppliedPolicyRow) -> Policy:
    problem = row_problem(db, row)
    if problem is not None:
        raise TamperedRow(problem + " (no call is decided until a policy is applied again)")
    # Tools are not checked against those installed now: one uninstalled since must not stop every decision.
    return parse_policy(row.text.encode("utf-8"), origin=_origin(row))


class AppliedPolicies:
    """The policy in force for one database, re-read when a newer one was applied (a long-running server)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._id: int | None = None
        self._policy: Policy | None = None
        self._info: AppliedInfo = BUILTIN_INFO

    def current(self) -> Policy:
        """The newest applied policy (its row verified once), or the built-in defaults before any."""
        with self.db.read_session() as session:
            newest_id = session.execute(select(func.max(AppliedPolicyRow.id))).scalar()
            if newest_id is None:
                self._id, self._policy, self._info = None, builtin_policy(), BUILTIN_INFO
                return self._policy
            if newest_id == self._id and self._policy is not None:
                return self._policy
            row = session.get(AppliedPolicyRow, newest_id)
            assert row is not None
            policy = _policy_of(self.db, row)
            self._id, self._policy, self._info = newest_id, policy, _info(row)
        return policy

    @property
    def info(self) -> AppliedInfo:
        self.current()
        return self._info


def _info(row: AppliedPolicyRow) -> AppliedInfo:
    return AppliedInfo(row.id, row.sha256, row.applied_by, row.applied_at, row.previous_sha256, row.audit_seq, row.text)


def policy_in_force(db: Database) -> Policy:
    return AppliedPolicies(db).current()


def applied_info(db: Database) -> AppliedInfo:
    """The policy in force's record (its row verified: a tampered one raises TamperedRow)."""
    return AppliedPolicies(db).info


def administrator(policy: Policy, principal: Principal) -> Principal:
    """The principal with every group the policy gives it (principals.users are already in a CLI principal)."""
    return replace(principal, groups=principal.groups | policy.groups_of_principal(principal))


def is_admin(policy: Policy, principal: Principal) -> bool:
    return principal.on_behalf_of is None and named_by(
        policy.principals.admins, principal, administrator(policy, principal).groups
    )


def owns_audit_key(db: Database) -> bool:
    """Whether this process's OS user owns the database's audit key (created now if there is none yet)."""
    audit_secrets = secrets_for(db)
    audit_secrets.key()  # the first use makes it, owned by this user
    try:
        return audit_secrets.key_file.stat().st_uid == os.geteuid()
    except OSError:
        return False


def owns_database(db: Database) -> bool:
    """Whether this process owns the database: the SQLite file's OS owner, or PostgreSQL's owner role (or a
    superuser), as in a deployment whose migrations run as the owner and whose key is a mounted secret."""
    from sqlalchemy import text

    if db.dialect == "sqlite":
        name = db.engine.url.database
        try:
            return bool(name) and os.stat(str(name)).st_uid == os.geteuid()
        except OSError:
            return False
    query = (
        "SELECT pg_catalog.pg_get_userbyid(d.datdba) = current_user OR r.rolsuper FROM pg_catalog.pg_database d, "
        "pg_catalog.pg_roles r WHERE d.datname = current_database() AND r.rolname = current_user"
    )
    with db.engine.connect() as conn:
        return bool(conn.execute(text(query)).scalar())


def _record(by: Principal, outcome: str, policy: Policy, previous: Policy, error: str | None = None) -> AuditRecord:
    return AuditRecord(
        event=APPLY_EVENT,
        actor=by.name,
        outcome=outcome,
        target=f"policy:{policy.sha256}",
        policy_hash=previous.sha256,
        error=error,
        details={"sha256": policy.sha256, "previous_sha256": previous.sha256, "source": policy.label},
    )


def apply_policy(
    db: Database,
    data: bytes,
    by: Principal,
    *,
    label: str,
    known_tools: Iterable[str] | None = None,
) -> AppliedInfo:
    """Validate ``data`` and put it in force; PolicyDenied (recorded) unless ``by`` may apply policies.

    ``by`` is the CLI principal as the policy in force sees it (its principals.users groups).
    """
    from pathlib import Path

    candidate = parse_policy(data, path=Path(label), known_tools=known_tools)
    tracker = AppliedPolicies(db)
    current = tracker.current()
    info = tracker.info
    if candidate.sha256 == info.sha256 and info.id is not None:
        # Re-applying the policy in force changes nothing, whoever asks: a deployment's migrate step applies its
        # policy file at every upgrade, and the same file must pass even when its applier is no admin of it.
        return info
    if info.id is None:
        allowed = is_admin(current, by) or owns_audit_key(db) or owns_database(db)
        why = "before any policy was applied, only the owner of the audit key or of the database may apply one"
    else:
        allowed = is_admin(current, by)
        admins = ", ".join(current.principals.admins) or "no one"
        why = f"only admins may (principals.admins of the applied policy names them: {admins})"
    if not allowed:
        message = f"{by.label} may not apply a policy: {why}"
        append(db, _record(by, "denied", candidate, current, message))
        raise PolicyDenied(message)
    successor = replace(by, groups=frozenset(_configured_groups(candidate, by)))
    if not is_admin(candidate, successor):
        raise UsageError(
            f"{label}: under this policy {by.name} would not be an admin, and no one named could apply "
            "another one; name them in principals.admins (or give them a group it names under principals.users); "
            "principals: belong in the policy now, not in the config"
        )
    text = data.decode("utf-8")
    audit_secrets = secrets_for(db)
    with db.write_session() as session:
        # Under the chain lock append_in takes: two applies get consecutive ids, each signed with its own.
        seq, _ = append_in(session, _record(by, "applied", candidate, current), audit_secrets)
        newest = session.execute(select(func.max(AppliedPolicyRow.id))).scalar()
        row = AppliedPolicyRow(
            id=(newest or 0) + 1,
            sha256=candidate.sha256,
            text=text,
            applied_at=utcnow(),
            applied_by=by.name,
            previous_sha256=info.sha256 if info.id is not None else None,
            audit_seq=seq,
        )
        row_macs.sign(audit_secrets, row)
        session.add(row)
        session.flush()
        applied = _info(row)
    return applied


def _configured_groups(policy: Policy, principal: Principal) -> set[str]:
    from inventory.principals import configured_for

    return set(configured_for(policy.principals.users, principal.name))


def tampered_rows(db: Database) -> list[str]:
    """Every applied policy whose row does not verify, or whose audit entry does not name it (``audit verify``)."""
    from inventory.audit.models import AuditEntry

    problems = []
    with db.session() as session:
        rows = list(session.execute(select(AppliedPolicyRow).order_by(AppliedPolicyRow.id)).scalars())
        previous: str | None = None
        for row in rows:
            problem = row_problem(db, row)
            if problem is None:
                entry = session.get(AuditEntry, row.audit_seq)
                if entry is not None and (entry.event != APPLY_EVENT or entry.target != f"policy:{row.sha256}"):
                    problem = f"applied policy {row.id}: audit entry {row.audit_seq} does not record it"
                elif row.previous_sha256 is not None and row.previous_sha256 != previous:
                    problem = f"applied policy {row.id}: the policy it replaced is not the row before it"
            if problem is not None:
                problems.append(problem)
            previous = row.sha256
    return problems


def draft_notice(config: Any, applied: AppliedPolicies) -> str | None:
    """One line when the caller's config names a policy file or principals other than those in force."""
    from inventory.principals import PrincipalSettings

    info = applied.info
    in_force = (
        f"the applied policy (sha256 {info.sha256[:12]}, applied by {info.applied_by}) decides"
        if info.id is not None
        else "no policy was applied: the built-in defaults decide (inventory policy apply FILE)"
    )
    path = getattr(config, "policy_path", None)
    if path is not None:
        try:
            draft_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            draft_hash = None
        if draft_hash != info.sha256:
            return (
                f"warning: {path} (the config's policy) is not the policy in force: {in_force}; "
                f"see inventory policy check {path}"
            )
    principals = getattr(config, "principals", None)
    if principals is not None and principals != PrincipalSettings() and principals != applied.current().principals:
        return f"warning: the config's principals: are not in force (the applied policy's principals: are): {in_force}"
    return None


def describe_difference(draft: Policy, applied: Policy, applied_text: str | None, draft_text: str) -> list[str]:
    """How a draft differs from the applied policy: per section and rule, then the text as a unified diff."""
    if draft.sha256 == applied.sha256:
        return []
    lines = []
    old, new = applied.document, draft.document
    for section in ("groups", "protected", "approvals", "principals", "version"):
        if getattr(old, section) != getattr(new, section):
            lines.append(f"{section}: differs")
    old_rules = {rule.name: rule for rule in old.rules}
    new_rules = {rule.name: rule for rule in new.rules}
    for name in new_rules.keys() - old_rules.keys():
        lines.append(f"rule {name}: only in the draft ({new_rules[name].effect})")
    for name in old_rules.keys() - new_rules.keys():
        lines.append(f"rule {name}: only in the applied policy ({old_rules[name].effect})")
    for name in sorted(new_rules.keys() & old_rules.keys()):
        if new_rules[name] != old_rules[name]:
            lines.append(f"rule {name}: differs")
    if [r.name for r in old.rules if r.name in new_rules] != [r.name for r in new.rules if r.name in old_rules]:
        lines.append("rules: in another order")
    diff = difflib.unified_diff(
        (applied_text or "").splitlines(), draft_text.splitlines(), "applied", "draft", lineterm=""
    )
    return lines + list(diff)


__all__ = [
    "APPLY_EVENT",
    "AppliedInfo",
    "AppliedPolicies",
    "administrator",
    "applied_info",
    "apply_policy",
    "describe_difference",
    "draft_notice",
    "is_admin",
    "owns_audit_key",
    "owns_database",
    "policy_in_force",
    "tampered_rows",
]
