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
"""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult

from inventory.audit.keys import secrets_for
from inventory.audit.log import AuditRecord, append, append_in, get_entry
from inventory.audit.models import Approval
from inventory.errors import NotFound, SourceError, TargetChanged, UsageError
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
    stmt = select(Approval).order_by(Approval.id)
    if status and status != "all":
        stmt = stmt.where(Approval.status == status)
    with runner.db.session() as session:
        return [approval_row(a) for a in session.execute(stmt).scalars()]


def _load(runner: ToolRunner, approval_id: int) -> Approval:
    with runner.db.session() as session:
        approval = session.get(Approval, approval_id)
    if approval is None:
        raise NotFound(f"no approval {approval_id}")
    if approval.status != "pending":
        raise UsageError(f"approval {approval_id} is already {approval.status} (by {approval.decided_by})")
    return approval


def _claim(
    runner: ToolRunner, approval_id: int, status: str, decider: str, reason: str | None, record: AuditRecord
) -> int:
    """Settle a pending approval and record it in one transaction; only one settler can win."""
    with runner.db.write_session() as session:
        claimed = cast(
            CursorResult[Any],
            session.execute(
                update(Approval)
                .where(Approval.id == approval_id, Approval.status == "pending")
                .values(status=status, decided_by=decider, decided_at=utcnow(), reason=reason)
            ),
        ).rowcount
        if claimed != 1:
            raise UsageError(f"approval {approval_id} was settled by someone else meanwhile")
        seq, _ = append_in(session, record, secrets_for(runner.db))
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
        approval.id,
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
    approval = _load(runner, approval_id)
    _refuse_if_expired(runner, approval, approver, started)
    requester = runner.principal_named(approval.requester, approval.on_behalf_of)
    requested = runner.evaluate(approval.tool, approval.target, approval.arguments, requester)
    evaluation = _approvable(runner, requested, approval_id, approver, started)
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
        _claim(runner, approval_id, "rejected", approver.label, "the target changed at its source", record)
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
    evaluation = _approvable(runner, live, approval_id, approver, started)
    record = audit_record(
        evaluation, "approved", started, approver=approver.name, approval_id=approval_id, event="approval"
    )
    intent_seq = _claim(runner, approval_id, "approved", approver.name, reason, record)
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
    runner: ToolRunner, evaluation: Evaluation, approval_id: int, approver: Principal, started: float
) -> Evaluation:
    """``evaluation`` if ``approver`` may approve it now; a call the policy now denies is rejected."""
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
        _claim(runner, approval_id, "rejected", approver.label, "denied by the current policy", record)
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
    approval = _load(runner, approval_id)
    withdrawing = decider.on_behalf_of is None and decider.same_as(approval.requester)
    if not withdrawing and not runner.policy.may_approve(decider):
        raise PolicyDenied(
            f"approval {approval_id}: {decider.label} may not reject it "
            "(only an approver, or the requester withdrawing it)"
        )
    return _claim(
        runner,
        approval_id,
        "rejected",
        decider.label,
        reason,
        _settlement(runner, approval, decider, "rejected", reason, started),
    )


def _set_outcome(runner: ToolRunner, approval_id: int, outcome: str) -> None:
    with runner.db.write_session() as session:
        session.execute(update(Approval).where(Approval.id == approval_id).values(outcome=outcome))
