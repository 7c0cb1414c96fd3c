"""Pending approvals: a call whose decision is require_approval waits here until someone settles it.

The approver cannot be the requester unless the policy says so (``approvals.self_approval``
or the deciding rule's ``self_approval``), and must be one of ``approvals.approvers`` when
the policy names them. Approving re-checks the call against
the policy in force at that moment (a call that is now denied is not run), then
runs it; every request and settlement is an audit entry.

Calls whose arguments carry a secret are never queued: the approvals table would
have to hold the secret to run the call later.
"""

from __future__ import annotations

import time
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from inventory.audit.log import AuditRecord, append_in
from inventory.audit.models import Approval
from inventory.errors import NotFound, UsageError
from inventory.policy.execute import CallOutcome, Evaluation, PolicyDenied, ToolRunner, audit_record
from inventory.policy.rules import Effect
from inventory.redact import redact_value
from inventory.timeutil import utcnow


def request_approval(runner: ToolRunner, evaluation: Evaluation, started: float) -> CallOutcome:
    assert evaluation.spec is not None and evaluation.target is not None and evaluation.args is not None
    arguments = evaluation.args.model_dump(exclude_none=True, mode="json")
    if redact_value(arguments) != arguments:
        return runner._finish(
            evaluation,
            "failed",
            started,
            error="arguments that carry secrets cannot wait for approval; "
            "run the call on a terminal to confirm it in place",
            raise_error=UsageError,
        )
    with runner.db.write_session() as session:
        approval = Approval(
            created_at=utcnow(),
            requester=evaluation.actor,
            tool=evaluation.tool,
            target=evaluation.target.ref,
            target_name=evaluation.target.name,
            source=evaluation.target.source,
            arguments=arguments,
            tool_class=str(evaluation.classification.tool_class),
            matched_rule=evaluation.decision.rule_label,
            policy_hash=runner.policy.sha256,
            status="pending",
        )
        session.add(approval)
        session.flush()
        record = audit_record(evaluation, "pending", started, approval_id=approval.id)
        seq, _ = append_in(session, record)
        approval.request_seq = seq
    runner.notify_destructive(evaluation, "pending")
    return CallOutcome(evaluation, "pending", seq, approval.id)


def approval_row(approval: Approval) -> dict[str, Any]:
    return {
        "id": approval.id,
        "created_at": approval.created_at,
        "requester": approval.requester,
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


def _claim(runner: ToolRunner, approval_id: int, status: str, decider: str, reason: str | None, record: AuditRecord) -> int:
    """Settle a pending approval and record it in one transaction; only one settler can win."""
    with runner.db.write_session() as session:
        claimed = cast(CursorResult[Any], session.execute(
            update(Approval)
            .where(Approval.id == approval_id, Approval.status == "pending")
            .values(status=status, decided_by=decider, decided_at=utcnow(), reason=reason)
        )).rowcount
        if claimed != 1:
            raise UsageError(f"approval {approval_id} was settled by someone else meanwhile")
        seq, _ = append_in(session, record)
    return seq


def approve(runner: ToolRunner, approval_id: int, approver: str, reason: str | None = None) -> CallOutcome:
    """Approve a pending call and run it now, under the policy in force now."""
    started = time.perf_counter()
    approval = _load(runner, approval_id)
    evaluation = runner.evaluate(approval.tool, approval.target, approval.arguments, approval.requester)
    if evaluation.decision.effect is Effect.DENY:
        record = audit_record(evaluation, "rejected", started, error=f"the policy now denies it ({evaluation.decision.rule_label})", approver=approver, approval_id=approval_id, event="approval")
        _claim(runner, approval_id, "rejected", approver, "denied by the current policy", record)
        raise PolicyDenied(f"approval {approval_id}: the policy now denies this call ({evaluation.decision.rule_label}); it was " "rejected")
    if not runner.policy.may_approve(approver):
        raise PolicyDenied(f"approval {approval_id}: {approver} is not among the approvers the policy names")
    if approver == approval.requester and not evaluation.decision.self_approval:
        raise PolicyDenied(f"approval {approval_id}: {approver} requested this call and cannot approve it (the policy does not allow " "self-approval)")
    record = audit_record(evaluation, "approved", started, approver=approver, approval_id=approval_id, event="approval")
    _claim(runner, approval_id, "approved", approver, reason, record)
    try:
        outcome = runner.execute(evaluation, started, approver=approver, approval_id=approval_id)
    except Exception:
        _set_outcome(runner, approval_id, "failed")
        raise
    _set_outcome(runner, approval_id, outcome.outcome)
    return outcome


def reject(runner: ToolRunner, approval_id: int, decider: str, reason: str | None = None) -> int:
    """Reject (or, by the requester, withdraw) a pending call; returns the audit entry's seq."""
    started = time.perf_counter()
    approval = _load(runner, approval_id)
    record = AuditRecord(
        event="approval",
        actor=approval.requester,
        outcome="rejected",
        tool=approval.tool,
        target=approval.target,
        target_name=approval.target_name,
        source=approval.source,
        arguments=approval.arguments,
        tool_class=approval.tool_class,
        decision=str(Effect.REQUIRE_APPROVAL),
        matched_rule=approval.matched_rule,
        approver=decider,
        approval_id=approval_id,
        error=reason,
        duration_ms=(time.perf_counter() - started) * 1000,
        policy_hash=runner.policy.sha256,
    )
    return _claim(runner, approval_id, "rejected", decider, reason, record)


def _set_outcome(runner: ToolRunner, approval_id: int, outcome: str) -> None:
    with runner.db.write_session() as session:
        session.execute(update(Approval).where(Approval.id == approval_id).values(outcome=outcome))
