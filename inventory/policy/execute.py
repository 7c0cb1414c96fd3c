"""One tool call end to end: resolve the target, classify, decide, (approve), execute, audit.

Every call leaves exactly one audit entry, whatever happens: denied, invalid,
pending approval, dry run, executed or failed. The entry is written after the
outcome is known, so that it carries the outcome, the error and the duration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inventory.audit.actor import ACTOR_ENV, resolve_actor
from inventory.audit.log import AuditRecord, append
from inventory.errors import InvalidArguments, InventoryError, PolicyDenied, ToolFailed, UsageError
from inventory.policy.classes import ToolClass
from inventory.policy.engine import Call, Classification, Decision, EscalationSource, classify, decide
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import Effect, Policy
from inventory.policy.targets import Target, resolve_target
from inventory.policy.tools import ToolArgs, ToolContext, ToolResult, ToolSpec
from inventory.redact import redact_text, redact_value
from inventory.storage.database import Database

log = logging.getLogger(__name__)

INVALID_VALUE = "<invalid>"


@dataclass
class Evaluation:
    """What the engine concluded about a call before running it (``inventory policy check``)."""

    tool: str
    actor: str
    spec: ToolSpec | None
    args: ToolArgs | None
    raw_args: Mapping[str, Any]
    target: Target | None
    target_text: str | None
    classification: Classification
    decision: Decision
    policy: Policy

    @property
    def target_ref(self) -> str | None:
        return self.target.ref if self.target else self.target_text

    def as_row(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "actor": self.actor,
            "target": self.target_ref,
            "target_name": self.target.name if self.target else None,
            "class": str(self.classification.tool_class),
            "declared_class": str(self.classification.declared) if self.classification.declared else None,
            "decision": str(self.decision.effect),
            "matched_rule": self.decision.rule_label,
            "contributing_rules": [{"rule": c.rule, "effect": str(c.effect)} for c in self.decision.contributions],
            "explanation": list(self.decision.explanation),
            "hints": self.classification.hints,
            "self_approval": self.decision.self_approval,
            "policy": self.policy.label,
            "policy_hash": self.policy.sha256,
            "arguments": redact_value(self.args.model_dump(exclude_none=True) if self.args else dict(self.raw_args)),
            **self.classification.details,
        }


@dataclass
class CallOutcome:
    evaluation: Evaluation
    # success | failed | denied | pending | rejected | dry_run
    outcome: str
    audit_seq: int
    approval_id: int | None = None
    result: ToolResult | None = None
    error: str | None = None
    approver: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            **self.evaluation.as_row(),
            "outcome": self.outcome,
            "audit_seq": self.audit_seq,
            "approval_id": self.approval_id,
            "approver": self.approver,
            "summary": self.result.summary if self.result else None,
            "data": self.result.data if self.result else None,
            "error": self.error,
        }


# A terminal confirmation: shown the evaluation, returns whether the person typed the target's name.
Confirm = Callable[[Evaluation], bool]
SourceConfigLookup = Callable[[str], Any]


@dataclass
class ToolRunner:
    db: Database
    policy: Policy
    registry: ToolRegistry
    # The SourceConfig of a source by name (connection settings); only needed to execute.
    source_config: SourceConfigLookup | None = None
    # inventory.notify.Notifier: told when a DESTRUCTIVE call is requested (waits for approval) or has run.
    notifier: Any | None = None
    # Consulted by classify() beside the protection rules; None: the impact of the call (inventory.impact).
    escalation_sources: list[EscalationSource] | None = None

    def __post_init__(self) -> None:
        if self.escalation_sources is None:
            from inventory.policy.escalations import ImpactEscalation

            self.escalation_sources = [ImpactEscalation(self.db)]

    def notify_destructive(self, evaluation: Evaluation, outcome: str) -> None:
        if self.notifier is None or evaluation.classification.tool_class is not ToolClass.DESTRUCTIVE:
            return
        if outcome not in ("pending", "success", "failed"):
            return  # denied, dry runs and invalid calls changed nothing and asked for nothing
        self.notifier.destructive_tool(
            tool=evaluation.tool,
            target=evaluation.target.ref if evaluation.target else (evaluation.target_text or "-"),
            actor=evaluation.actor,
            stage="requested" if outcome == "pending" else "run",
            decision=evaluation.decision.effect.value,
            outcome=None if outcome == "pending" else outcome,
        )

    # --- evaluation ---------------------------------------------------------------------------

    def evaluate(self, tool: str, target_text: str | None, raw_args: Mapping[str, Any], actor: str) -> Evaluation:
        """Classify and decide; raises UsageError / NotFound / Ambiguous for a call that names nothing valid."""
        spec = self.registry.get(tool)
        args = spec.parse_args(raw_args) if spec else None
        target = self._resolve(spec, target_text)
        return self._conclude(tool, actor, spec, args, raw_args, target, target_text)

    def _conclude(
        self,
        tool: str,
        actor: str,
        spec: ToolSpec | None,
        args: ToolArgs | None,
        raw_args: Mapping[str, Any],
        target: Target | None,
        target_text: str | None,
    ) -> Evaluation:
        classification = classify(spec, args, target, self.policy, tool_name=tool, escalation_sources=self.escalation_sources or ())
        call = Call(tool, actor, target, spec.source_type if spec else None, getattr(args, "namespace", None))
        decision = decide(call, classification, self.policy)
        return Evaluation(tool, actor, spec, args, raw_args, target, target_text, classification, decision, self.policy)

    def _resolve(self, spec: ToolSpec | None, target_text: str | None) -> Target | None:
        if not target_text:
            if spec is not None:
                raise UsageError(f"tool {spec.name} needs --target " f"({spec.target_type}{' of kind ' + '/'.join(spec.target_kinds) if spec.target_kinds else ''})")
            return None
        if spec is None:
            return None  # an unknown tool's target is recorded as given; nothing will run
        with self.db.session() as session:
            return resolve_target(
                session, target_text, default_type=spec.target_type, source_type=spec.source_type, kinds=spec.target_kinds
            )

    # --- running ------------------------------------------------------------------------------

    def run(
        self,
        tool: str,
        target_text: str | None,
        raw_args: Mapping[str, Any],
        actor: str,
        *,
        dry_run: bool = False,
        confirm: Confirm | None = None,
    ) -> CallOutcome:
        started = time.perf_counter()
        try:
            evaluation = self.evaluate(tool, target_text, raw_args, actor)
        except InventoryError as exc:
            # The call names nothing valid; it is still recorded, as refused before any decision.
            self._record_invalid(tool, target_text, raw_args, actor, exc, started)
            raise
        decision = evaluation.decision
        if evaluation.spec is None and decision.effect is not Effect.DENY:
            return self._finish(evaluation, "failed", started, error=f"unknown tool {tool!r}: nothing to run", raise_error=UsageError)
        if decision.effect is Effect.DENY:
            return self._finish(evaluation, "denied", started, error=f"denied by {decision.rule_label}", raise_error=PolicyDenied)
        if dry_run:
            return self._finish(evaluation, "dry_run", started)
        approver = None
        if decision.effect is Effect.REQUIRE_APPROVAL:
            if confirm is not None and self.policy.document.approvals.tty_confirmation:
                if not confirm(evaluation):
                    return self._finish(evaluation, "rejected", started, error="not confirmed on the terminal", raise_error=PolicyDenied)
                approver = f"{actor} (terminal confirmation)"
            else:
                from inventory.policy.approvals import request_approval

                return request_approval(self, evaluation, started)
        return self.execute(evaluation, started, approver=approver)

    def execute(self, evaluation: Evaluation, started: float, *, approver: str | None = None, approval_id: int | None = None) -> CallOutcome:
        """Run an allowed (or approved) call and record it; a failure is recorded, then raised."""
        spec, target, args = evaluation.spec, evaluation.target, evaluation.args
        assert spec is not None and target is not None and args is not None
        try:
            if self.source_config is None:
                raise UsageError("no inventory config: cannot reach the target's source")
            try:
                source_config = self.source_config(target.source)
            except InventoryError as exc:
                raise UsageError(f"source {target.source!r} of {target.ref} is not configured: {exc}") from None
            result = spec.implementation(ToolContext(spec, args, target, source_config))
        except InventoryError as exc:
            kind = UsageError if isinstance(exc, UsageError) else ToolFailed
            return self._finish(evaluation, "failed", started, error=str(exc), approver=approver, approval_id=approval_id, raise_error=kind)
        except Exception as exc:  # an implementation bug: recorded, then reported
            message = f"tool {spec.name} on {target.ref}: {type(exc).__name__}: {exc}"
            return self._finish(evaluation, "failed", started, error=message, approver=approver, approval_id=approval_id, raise_error=ToolFailed)
        return self._finish(evaluation, "success", started, result=result, approver=approver, approval_id=approval_id)

    def _finish(
        self,
        evaluation: Evaluation,
        outcome: str,
        started: float,
        *,
        error: str | None = None,
        result: ToolResult | None = None,
        approver: str | None = None,
        approval_id: int | None = None,
        raise_error: type[InventoryError] | None = None,
    ) -> CallOutcome:
        error = redact_text(error) if error else None
        record = audit_record(evaluation, outcome, started, error=error, result=result, approver=approver, approval_id=approval_id)
        seq = append(self.db, record)
        call = CallOutcome(evaluation, outcome, seq, approval_id, result, error, approver)
        self.notify_destructive(evaluation, outcome)
        if raise_error is not None and error is not None:
            # Not chained: an SDK exception's text may carry what redaction just removed.
            raise raise_error(error) from None
        return call

    def _record_invalid(self, tool: str, target_text: str | None, raw_args: Mapping[str, Any], actor: str, exc: Exception, started: float) -> None:
        if isinstance(exc, InvalidArguments):
            # A value that failed validation is not recorded: it may be a secret pasted into the wrong key.
            raw_args = {key: INVALID_VALUE if key in exc.keys else value for key, value in raw_args.items()}
        record = AuditRecord(
            event="tool_call",
            actor=actor,
            outcome="invalid",
            tool=tool,
            target=target_text,
            arguments=dict(raw_args),
            error=redact_text(str(exc)),
            duration_ms=(time.perf_counter() - started) * 1000,
            policy_hash=self.policy.sha256,
        )
        append(self.db, record)


def audit_record(
    evaluation: Evaluation,
    outcome: str,
    started: float,
    *,
    error: str | None = None,
    result: ToolResult | None = None,
    approver: str | None = None,
    approval_id: int | None = None,
    event: str = "tool_call",
) -> AuditRecord:
    args = evaluation.args.model_dump(exclude_none=True, mode="json") if evaluation.args else dict(evaluation.raw_args)
    details: dict[str, Any] = {}
    if evaluation.classification.reasons:
        details["classification"] = list(evaluation.classification.reasons)
    if evaluation.decision.contributions:
        details["rules"] = [{"rule": c.rule, "effect": str(c.effect)} for c in evaluation.decision.contributions]
    details.update(evaluation.classification.details)
    if result is not None:
        details["summary"] = result.summary
        details.update(result.details)
    return AuditRecord(
        event=event,
        actor=evaluation.actor,
        outcome=outcome,
        tool=evaluation.tool,
        target=evaluation.target_ref,
        target_name=evaluation.target.name if evaluation.target else None,
        source=evaluation.target.source if evaluation.target else None,
        arguments=args,
        tool_class=str(evaluation.classification.tool_class),
        decision=str(evaluation.decision.effect),
        matched_rule=evaluation.decision.rule_label,
        approver=approver,
        approval_id=approval_id,
        error=error,
        duration_ms=(time.perf_counter() - started) * 1000,
        policy_hash=evaluation.policy.sha256,
        details=details or None,
    )


__all__ = ["ACTOR_ENV", "CallOutcome", "Evaluation", "PolicyDenied", "ToolFailed", "ToolRunner", "audit_record", "resolve_actor"]
