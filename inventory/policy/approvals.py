"""Pending approvals: a call whose decision is require_approval waits here until someone settles it.

Approvers are principals, compared as principals: one of ``approvals.approvers`` when
the policy names them, never the requester unless the policy allows self-approval,
never a principal acting for someone else (--actor). Approving re-checks the call
against the policy in force at that moment (a call that is now denied is not run)
and is refused once the approval expired (``approvals.expires_after``); the
``approved`` entry is the call's write-ahead intent. Every request and settlement is
an audit entry. Only an approver or the requester (withdrawing) may reject.

Calls whose arguments carry a secret are never queued: the approvals table would
have to hold the secret to run the call later.

Each approval row carries a mac under the audit key over every field that decides
anything (inventory/audit/row_macs.py), re-signed at every settlement. A row whose mac
does not verify (a requester, tool, target or arguments rewritten in SQL) is refused by
approve and reject (``TamperedRow``, exit code 3), and the refusal is an audit entry.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory.audit import row_macs
from inventory.audit.keys import secrets_for
from inventory.audit.log import AuditRecord, append, append_in, get_entry
from inventory.audit.models import Approval, AuditEntry
from inventory.errors import InventoryError, NotFound, SourceError, TamperedRow, TargetChanged, UsageError
from inventory.policy.execute import (
    TARGET_IDENTITY,
    CallOutcome,
    Evaluation,
    PolicyDenied,
    ToolRunner,
    as_principal,
    audit_record,
    principal_details,
)
from inventory.policy.rules import Effect
from inventory.principals import Principal
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)


def approval_row(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "created_at": approval.created_at,
        "requester": approval.requester,
        "on_behalf_of": approval.on_behalf_of,
        "expires_at": approval.expires_at,
        "tool": approval.tool,
        "target": approval.target,
        "target_name": approval.target_name,
        "source": approval.source,
        "arguments": approval.arguments,
        "class": approval.tool_class,
        "matched_rule": approval.matched_rule,
        "status": approval.status,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "reason": approval.reason,
        "outcome": approval.outcome,
        "request_seq": approval.request_seq,
    }


def list_approvals(runner: ToolRunner, status: str | None = "pending") -> list[dict[str, Any]]:
    """Approvals as rows; ``intact`` is False for a row that does not match its mac (approving it is refused)."""
    stmt = select(Approval).order_by(Approval.id)
    if status and status != "all":
        stmt = stmt.where(Approval.status == status)
    audit_secrets = secrets_for(runner.db)
    with runner.db.session() as session:
        return [
            {**approval_row(a), "intact": row_macs.intact(audit_secrets, a)} for a in session.execute(stmt).scalars()
        ]


# The outcomes of the entry that ends an approved call's run (inventory.policy.execute.ToolRunner.execute).
RUN_OUTCOMES = ("success", "failed")


def run_of(runner: ToolRunner, approval_id: int) -> dict[str, Any] | None:
    """How an approved call's run ended, from its audit entry: outcome, the (redacted) error or the tool's summary.

    None while it has not run (pending, rejected, expired, or a run killed before its outcome was recorded).
    """
    with runner.db.session() as session:
        entry = session.execute(
            select(AuditEntry)
            .where(
                AuditEntry.approval_id == approval_id,
                AuditEntry.event == "tool_call",
                AuditEntry.outcome.in_(RUN_OUTCOMES),
            )
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        if entry is None:
            return None
        details = json.loads(entry.details) if entry.details else {}
        return {
            "outcome": entry.outcome,
            "error": entry.error,
            "summary": details.get("summary"),
            "audit_seq": entry.seq,
            "at": entry.at,
        }


def explain_approval(runner: ToolRunner, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a decider needs beside the request: why it needs approval (the classification's reasons and the
    rules that matched, from the request's audit entry), what it would take with it (the target's impact)
    and the target's state now. Parts that cannot be read are left out, never guessed."""
    from inventory.impact import impact

    why: list[str] = []
    explained: dict[str, Any] = {"why": why}
    with runner.db.session() as session:
        if row.get("request_seq") is not None:
            try:
                details = get_entry(session, int(row["request_seq"])).get("details") or {}
            except InventoryError:
                details = {}
            why.extend(str(reason) for reason in details.get("classification", ()))
            why.extend(f"rule {r['rule']}: {r['effect']}" for r in details.get("rules", ()) if isinstance(r, Mapping))
        if row.get("matched_rule") and not any(str(row["matched_rule"]) in line for line in why):
            why.append(f"rule {row['matched_rule']}")
        try:
            found = impact(session, str(row["target"]))
        except InventoryError:
            return explained
        explained["impact"] = {
            "summary": found.summary(),
            "down": [s.service.label for s in found.services_down],
            "count": len(found.objects),
        }
        explained["target_state"] = {"status": found.target.status, "label": found.target.label}
    return explained


def _read(runner: ToolRunner, approval_id: int, decider: Principal) -> Approval:
    """The approval row, its mac verified; a tampered row is refused and the refusal recorded."""
    with runner.db.session() as session:
        approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id}")
    if not row_macs.intact(secrets_for(runner.db), approval):
        _refuse_tampered(runner, approval, decider, row_macs.describe(approval))
    return approval


def _load(runner: ToolRunner, approval_id: int, decider: Principal) -> Approval:
    """The pending approval: its mac verified, and not settled according to the audit log."""
    approval = _read(runner, approval_id, decider)
    if approval.status == "pending":
        settled = _settled_in_log(runner, approval_id)
        if settled is not None:
            # Settled by someone else since the row was read (the row and its entry commit together), or restored.
            approval = _read(runner, approval_id, decider)
            if approval.status == "pending":
                message = (
                    f"approval {approval_id} was settled by audit entry {settled}, but its row says pending: an "
                    "older copy of the row was restored outside inventory, and it is refused"
                )
                _refuse_tampered(runner, approval, decider, message)
    if approval.status != "pending":
        raise UsageError(f"approval {approval_id} is already {approval.status} (by {approval.decided_by})")
    return approval


# The outcomes of an approval's settlement entry; "refused" (the source could not be read) settles nothing.
SETTLED_OUTCOMES = ("approved", "rejected", "expired")


def _settled_in_log(runner: ToolRunner, approval_id: int) -> int | None:
    """The seq of the audit entry that settled the approval, if any: the chain outlives any edit of the row."""
    with runner.db.session() as session:
        return session.execute(
            select(AuditEntry.seq)
            .where(
                AuditEntry.approval_id == approval_id,
                AuditEntry.event == "approval",
                AuditEntry.outcome.in_(SETTLED_OUTCOMES),
            )
            .limit(1)
        ).scalar()


def _refuse_tampered(runner: ToolRunner, approval: Approval, decider: Principal, message: str) -> None:
    """Record, then raise, the refusal of an approval row edited without the audit key (the row is left as it is)."""
    log.warning("%s (settling attempted by %s)", message, decider.label)
    # The row's own fields are not to be trusted: the entry names the row and who tried, nothing it claims.
    append(
        runner.db,
        AuditRecord(
            event="approval",
            actor=decider.name,
            outcome="refused",
            target=f"approval:{approval.id}",
            approval_id=approval.id,
            error=message,
            policy_hash=runner.policy.sha256,
            details=principal_details(decider),
        ),
    )
    raise TamperedRow(message)


def _locked(session: Session, approval_id: int) -> Approval | None:
    """The approval row, locked until the transaction ends (SQLite: the write transaction already is)."""
    return session.execute(select(Approval).where(Approval.id == approval_id).with_for_update()).scalar_one_or_none()


def _claim(
    runner: ToolRunner,
    approval: Approval,
    status: str,
    decider: str,
    reason: str | None,
    record: AuditRecord,
) -> int:
    """Settle a pending approval and record it in one transaction; only one settler can win.

    The row must still be exactly the one that was decided on (its mac as loaded, and valid); it is re-signed.
    """
    audit_secrets = secrets_for(runner.db)
    with runner.db.write_session() as session:
        row = _locked(session, approval.id)
        if row is None or row.status != "pending":
            raise UsageError(f"approval {approval.id} was settled by someone else meanwhile")
        if row.mac != approval.mac or not row_macs.intact(audit_secrets, row):
            raise TamperedRow(f"approval {approval.id} changed while it was being settled; nothing was run")
        row.status, row.decided_by, row.decided_at, row.reason = status, decider, utcnow(), reason
        row_macs.sign(audit_secrets, row)
        seq, _ = append_in(session, record, audit_secrets)
    return seq


def _settlement(
    runner: ToolRunner, approval: Approval, decider: Principal, outcome: str, error: str | None, started: float
) -> AuditRecord:
    """The audit entry of a settlement that runs nothing (rejected, expired)."""
    return AuditRecord(
        event="approval",
        actor=approval.requester,
        outcome=outcome,
        tool=approval.tool,
        target=approval.target,
        target_name=approval.target_name,
        source=approval.source,
        arguments=approval.arguments,
        tool_class=approval.tool_class,
        decision=str(Effect.REQUIRE_APPROVAL),
        matched_rule=approval.matched_rule,
        approver=decider.label,
        approval_id=approval.id,
        error=error,
        duration_ms=(time.perf_counter() - started) * 1000,
        policy_hash=runner.policy.sha256,
        details=principal_details(runner.principal_named(approval.requester, approval.on_behalf_of)),
    )


def _refuse_if_expired(runner: ToolRunner, approval: Approval, decider: Principal, started: float) -> None:
    if approval.expires_at is None or utcnow() < approval.expires_at:
        return
    message = f"approval {approval.id} expired at {approval.expires_at:%Y-%m-%d %H:%M:%S} UTC; request the call again"
    _claim(
        runner,
        approval,
        "expired",
        decider.label,
        "expired",
        _settlement(runner, approval, decider, "expired", message, started),
    )
    raise PolicyDenied(message)


def approve(runner: ToolRunner, approval_id: int, approver: Principal | str, reason: str | None = None) -> CallOutcome:
    """Approve a pending call and run it now, under the policy in force now."""
    started = time.perf_counter()
    approver = as_principal(approver)
    runner.refresh_policy()  # the database's applied policy, as it is now
    approval = _load(runner, approval_id, approver)
    _refuse_if_expired(runner, approval, approver, started)
    requester = runner.principal_named(approval.requester, approval.on_behalf_of)
    requested = runner.evaluate(approval.tool, approval.target, approval.arguments, requester)
    evaluation = _approvable(runner, requested, approval, approver, started)
    # The target as its source has it now must be the object the request was decided for.
    try:
        live = runner.verify_live(evaluation, _requested_identity(runner, approval))
    except TargetChanged as exc:
        record = audit_record(
            evaluation,
            "rejected",
            started,
            error=str(exc),
            approver=approver.label,
            approval_id=approval_id,
            event="approval",
            extra=exc.details,
        )
        _claim(runner, approval, "rejected", approver.label, "the target changed at its source", record)
        raise TargetChanged(f"approval {approval_id}: {exc}; it was rejected", exc.details) from None
    except (SourceError, UsageError) as exc:
        # The source may answer later: the approval stays pending; the refusal is recorded.
        refused = audit_record(
            evaluation,
            "refused",
            started,
            error=str(exc),
            approver=approver.label,
            approval_id=approval_id,
            event="approval",
        )
        append(runner.db, refused)
        raise
    evaluation = _approvable(runner, live, approval, approver, started)
    record = audit_record(
        evaluation, "approved", started, approver=approver.name, approval_id=approval_id, event="approval"
    )
    intent_seq = _claim(runner, approval, "approved", approver.name, reason, record)
    try:
        outcome = runner.execute(
            evaluation, started, approver=approver.name, approval_id=approval_id, intent_seq=intent_seq
        )
    except Exception:
        _set_outcome(runner, approval_id, "failed")
        raise
    _set_outcome(runner, approval_id, outcome.outcome)
    return outcome


def _approvable(
    runner: ToolRunner, evaluation: Evaluation, approval: Approval, approver: Principal, started: float
) -> Evaluation:
    """``evaluation`` if ``approver`` may approve it now; a call the policy now denies is rejected."""
    approval_id = approval.id
    if evaluation.decision.effect is Effect.DENY:
        record = audit_record(
            evaluation,
            "rejected",
            started,
            error=f"the policy now denies it ({evaluation.decision.rule_label})",
            approver=approver.label,
            approval_id=approval_id,
            event="approval",
        )
        _claim(runner, approval, "rejected", approver.label, "denied by the current policy", record)
        raise PolicyDenied(
            f"approval {approval_id}: the policy now denies this call ({evaluation.decision.rule_label}); "
            "it was rejected"
        )
    refusal = runner.approval_refusal(evaluation, approver)
    if refusal is not None:
        raise PolicyDenied(f"approval {approval_id}: {refusal}")
    return evaluation


def _requested_identity(runner: ToolRunner, approval: Approval) -> dict[str, str] | None:
    """The identity of the object the request was decided for, from its audit entry."""
    if approval.request_seq is None:
        return None
    with runner.db.session() as session:
        details = get_entry(session, approval.request_seq).get("details") or {}
    identity = details.get(TARGET_IDENTITY)
    return {str(k): str(v) for k, v in identity.items()} if isinstance(identity, dict) else None


def reject(runner: ToolRunner, approval_id: int, decider: Principal | str, reason: str | None = None) -> int:
    """Reject (or, by the requester, withdraw) a pending call; returns the audit entry's seq."""
    started = time.perf_counter()
    decider = as_principal(decider)
    runner.refresh_policy()
    approval = _load(runner, approval_id, decider)
    withdrawing = decider.on_behalf_of is None and decider.same_as(approval.requester)
    if not withdrawing and not runner.policy.may_approve(decider):
        raise PolicyDenied(
            f"approval {approval_id}: {decider.label} may not reject it "
            "(only an approver, or the requester withdrawing it)"
        )
    return _claim(
        runner,
        approval,
        "rejected",
        decider.label,
        reason,
        _settlement(runner, approval, decider, "rejected", reason, started),
    )


def _set_outcome(runner: ToolRunner, approval_id: int, outcome: str) -> None:
    """Record how the approved call ended on its row, re-signed; a row edited meanwhile is left as it is."""
    audit_secrets = secrets_for(runner.db)
    with runner.db.write_session() as session:
        row = _locked(session, approval_id)
        if row is None:
            return
        if not row_macs.intact(audit_secrets, row):
            log.warning("%s; its outcome (%s) is only in the audit log", row_macs.describe(row), outcome)
            return
        row.outcome = outcome
        row_macs.sign(audit_secrets, row)


def settle(
    runner: ToolRunner, approval_id: int, principal: Principal, decision: str, reason: str | None = None
) -> dict[str, Any]:
    """Approve (and run) or reject a pending call as ``principal`` (the API's and the web's one way to decide)."""
    if decision == "approve":
        outcome: dict[str, Any] = approve(runner, approval_id, principal, reason).as_row()
        return outcome
    if decision == "reject":
        return {
            "approval_id": approval_id,
            "outcome": "rejected",
            "audit_seq": reject(runner, approval_id, principal, reason),
        }
    raise UsageError(f"decision must be approve or reject, not {decision!r}")
