"""One tool call end to end: resolve the target, classify, decide, (approve), execute, audit.

Every call is recorded, whatever happens: denied, invalid, pending approval, dry run,
executed or failed. A call that executes is recorded ahead: its decision and intent
(outcome ``started``, or the ``approved`` entry of its approval) are committed before
anything runs, and if they cannot be, nothing runs; its outcome entry follows, linked
by ``details.intent_seq``. A killed process leaves an intent without an outcome, which
``audit list`` shows as outcome unknown.

A call that changes an object is classified and decided again on the object as its
source has it just before it runs (``verify_live``, inventory.policy.live): another
object under the target's name or id, or a source that cannot be read, refuses it.

After a call that ran, its target is observed (the closed loop, ``observe_timeout``): where a
watcher follows the target's source (inventory/live.py, in this process or another), the change
rows it writes for the target are awaited; where nobody does, the target is re-read at its source
(its connector's ``LiveLookup.read``) and what changed is written as a live delta is, until it
changed or the window ends (inventory/reread.py). Either way an ``observed`` entry appended after
the outcome says what was seen ("status running -> stopped after 2.4 s", "not observed within 30 s",
or why it could not be observed) and lists those change rows, whose cause is the call. A call whose
connector cannot re-read its target leaves the change to the next sync (attributed to the call all
the same, inventory/observe.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from inventory.audit import row_macs
from inventory.audit.keys import secrets_for
from inventory.audit.log import INTENT_OUTCOME, AuditRecord, append, append_in
from inventory.audit.models import Approval
from inventory.errors import (
    InvalidArguments,
    InventoryError,
    PolicyDenied,
    SourceError,
    TargetChanged,
    ToolFailed,
    UsageError,
    did_you_mean,
)
from inventory.policy.classes import ToolClass
from inventory.policy.engine import Call, Classification, Decision, EscalationSource, classify, decide
from inventory.policy.live import describe_live, reread
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import Effect, Policy
from inventory.policy.targets import Target, resolve_target
from inventory.policy.tools import (
    MAX_ARGUMENT_KEY_CHARS,
    ToolArgs,
    ToolContext,
    ToolResult,
    ToolSpec,
    check_argument_sizes,
)
from inventory.principals import (
    Principal,
    PrincipalKind,
    PrincipalSettings,
    configured_for,
    confusable_message,
    lookalike_among,
)
from inventory.redact import redact_text, redact_value
from inventory.storage.database import Database
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    from inventory.observe import Seen
    from inventory.records import Snapshot
    from inventory.reread import ReadFailed

log = logging.getLogger(__name__)

INVALID_VALUE = "<invalid>"


@dataclass
class Evaluation:
    """What the engine concluded about a call before running it (``inventory policy check``)."""

    tool: str
    principal: Principal
    spec: ToolSpec | None
    args: ToolArgs | None
    raw_args: Mapping[str, Any]
    target: Target | None
    target_text: str | None
    classification: Classification
    decision: Decision
    policy: Policy
    # Set once the target was re-read at its source (inventory.policy.live): the identity it matched;
    # ``target`` is then the live target, and the class and the decision are those of the live facts.
    live_identity: Mapping[str, str] | None = None

    @property
    def actor(self) -> str:
        return self.principal.name

    @property
    def target_ref(self) -> str | None:
        return self.target.ref if self.target else self.target_text

    def as_row(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "actor": self.actor,
            "on_behalf_of": self.principal.on_behalf_of,
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
    # What the target was seen to do after the call (the closed loop), and the change rows it caused.
    observed: str | None = None
    observed_changes: list[int] = field(default_factory=list)

    def as_row(self) -> dict[str, Any]:
        row = {
            **self.evaluation.as_row(),
            "outcome": self.outcome,
            "audit_seq": self.audit_seq,
            "approval_id": self.approval_id,
            "approver": self.approver,
            "summary": self.result.summary if self.result else None,
            "data": self.result.data if self.result else None,
            "error": self.error,
        }
        if self.observed is not None:
            row.update(observed=self.observed, observed_changes=self.observed_changes)
        return row


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
    # inventory.notify.Notifier: told when a DESTRUCTIVE call is requested or has run, and when any call waits
    # for approval.
    notifier: Any | None = None
    # Consulted by classify() beside the protection rules; None: the impact of the call (inventory.impact).
    escalation_sources: list[EscalationSource] | None = None
    # OS users' groups and whom they may act for (the policy's principals:).
    principals: PrincipalSettings = field(default_factory=PrincipalSettings)
    # Seconds to wait, after a call ran, for a live watcher to write its target's change, or to re-read it where
    # nobody follows its source (the config's policy.observe); 0: do not wait (the call is still the cause of the
    # change the next sync sees).
    observe_timeout: float = 0.0
    # inventory.policy.applied.AppliedPolicies: the database's applied policy, re-read before each decision
    # (``in_force``); None: ``policy`` as given (code that names its policy on purpose, a draft).
    applied: Any | None = None

    def __post_init__(self) -> None:
        if self.escalation_sources is None:
            from inventory.policy.escalations import ImpactEscalation

            self.escalation_sources = [ImpactEscalation(self.db)]

    @classmethod
    def in_force(cls, db: Database, registry: ToolRegistry, **kw: Any) -> ToolRunner:
        """A runner decided by the database's applied policy (and its principals), whatever any config says."""
        from inventory.policy.applied import AppliedPolicies

        applied = AppliedPolicies(db)
        policy = applied.current()
        return cls(db, policy, registry, principals=policy.principals, applied=applied, **kw)

    def refresh_policy(self) -> Policy:
        """The policy deciding now: the newest applied one when following the database (a tampered row raises)."""
        if self.applied is not None:
            policy = self.applied.current()
            if policy is not self.policy:
                self.policy, self.principals = policy, policy.principals
        return self.policy

    def current_principals(self) -> PrincipalSettings:
        """Who is who now (the server's authenticator asks at every request)."""
        self.refresh_policy()
        return self.principals

    def principal_named(self, name: str, on_behalf_of: str | None = None) -> Principal:
        """A recorded principal (an approval's requester) with its groups as configured now."""
        from inventory.tokens import live_token_groups

        groups = set(configured_for(self.principals.users, name)) | live_token_groups(self.db, name)
        if on_behalf_of:
            groups |= set(configured_for(self.principals.users, on_behalf_of))
        return Principal(name, PrincipalKind.OS_USER, frozenset(groups), on_behalf_of)

    def approval_refusal(self, evaluation: Evaluation, approver: Principal) -> str | None:
        """Why ``approver`` may not approve this call (None: it may); the same checks for every way of approving."""
        requester = evaluation.principal
        if approver.on_behalf_of is not None:
            return f"{approver.label} acts for someone else: --actor never approves"
        if not self.policy.may_approve(approver):
            return f"{approver.name} is not among the approvers the policy names"
        # Rows made before look-alike names were refused must not let "alice" (Cyrillic a) approve for alice.
        lookalike = lookalike_among(approver.name, requester.names())
        if lookalike is not None:
            return f"{confusable_message(lookalike, approver.name)}: the look-alike of a requester never approves"
        if approver.same_as(requester) and not evaluation.decision.self_approval:
            return (
                f"{approver.name} requested this call and cannot approve it (the policy does not allow self-approval)"
            )
        return None

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

    def evaluate(
        self, tool: str, target_text: str | None, raw_args: Mapping[str, Any], actor: Principal | str
    ) -> Evaluation:
        """Classify and decide; raises UsageError / NotFound / Ambiguous for a call that names nothing valid."""
        principal = as_principal(actor)
        self.refresh_policy()
        check_argument_sizes(tool, raw_args)  # an unknown tool's arguments are audited too
        spec = self.registry.get(tool)
        args = spec.parse_args(raw_args) if spec else None
        target = self._resolve(spec, target_text)
        return self._evaluate_on(tool, principal, spec, args, raw_args, target, target_text)

    def _evaluate_on(
        self,
        tool: str,
        principal: Principal,
        spec: ToolSpec | None,
        args: ToolArgs | None,
        raw_args: Mapping[str, Any],
        target: Target | None,
        target_text: str | None,
        live_identity: Mapping[str, str] | None = None,
    ) -> Evaluation:
        classification = classify(
            spec, args, target, self.policy, tool_name=tool, escalation_sources=self.escalation_sources or ()
        )
        call = Call(tool, principal, target, spec.source_type if spec else None, getattr(args, "namespace", None))
        decision = decide(call, classification, self.policy)
        return Evaluation(
            tool,
            principal,
            spec,
            args,
            raw_args,
            target,
            target_text,
            classification,
            decision,
            self.policy,
            live_identity,
        )

    def verify_live(self, evaluation: Evaluation, expected: Mapping[str, str] | None = None) -> Evaluation:
        """The call classified and decided again on its target as the source has it now.

        For a call that changes an object whose connector declares how to re-read it. ``expected``: the
        identity the call was decided for (an approval's request); else the inventory's. Raises
        TargetChanged when the source holds another object (or none), SourceError when it cannot be read.
        """
        spec, target = evaluation.spec, evaluation.target
        if (
            spec is None
            or spec.live is None
            or target is None
            or target.object_type == "source"
            or evaluation.classification.tool_class is ToolClass.READ_ONLY
        ):
            return evaluation
        live = reread(spec.live, target, self._source_config_of(target), expected)
        return self._evaluate_on(
            evaluation.tool,
            evaluation.principal,
            spec,
            evaluation.args,
            evaluation.raw_args,
            live,
            evaluation.target_text,
            dict(spec.live.identity(live)),
        )

    def _source_config_of(self, target: Target) -> Any:
        if self.source_config is None:
            raise UsageError("no inventory config: cannot reach the target's source")
        try:
            return self.source_config(target.source)
        except InventoryError as exc:
            raise UsageError(f"source {target.source!r} of {target.ref} is not configured: {exc}") from None

    def _resolve(self, spec: ToolSpec | None, target_text: str | None) -> Target | None:
        if not target_text:
            if spec is not None:
                raise UsageError(
                    f"tool {spec.name} needs --target "
                    f"({spec.target_type}{' of kind ' + '/'.join(spec.target_kinds) if spec.target_kinds else ''})"
                )
            return None
        if spec is None:
            return None  # an unknown tool's target is recorded as given; nothing will run
        with self.db.session() as session:
            return resolve_target(
                session,
                target_text,
                default_type=spec.target_type,
                source_type=spec.source_type,
                kinds=spec.target_kinds,
            )

    # --- running ------------------------------------------------------------------------------

    def run(
        self,
        tool: str,
        target_text: str | None,
        raw_args: Mapping[str, Any],
        actor: Principal | str,
        *,
        dry_run: bool = False,
        confirm: Confirm | None = None,
    ) -> CallOutcome:
        started = time.perf_counter()
        principal = as_principal(actor)
        try:
            evaluation = self.evaluate(tool, target_text, raw_args, principal)
        except InventoryError as exc:
            # The call names nothing valid; it is still recorded, as refused before any decision.
            self._record_invalid(tool, target_text, raw_args, principal, exc, started)
            raise
        if evaluation.spec is None and evaluation.decision.effect is not Effect.DENY:
            hint = did_you_mean(tool, (spec.name for spec in self.registry))
            error = f"unknown tool {tool!r}: nothing to run{hint}"
            return self._finish(evaluation, "failed", started, error=error, raise_error=UsageError)
        # Denied on the inventory's facts: denied without asking the source. A dry run does not ask it either.
        if evaluation.decision.effect is Effect.DENY:
            return self._deny(evaluation, started)
        if dry_run:
            return self._finish(evaluation, "dry_run", started)
        # A call that waits for approval anyway is queued as it is: its target is re-read when it is approved.
        if evaluation.decision.effect is not Effect.REQUIRE_APPROVAL or self._confirms_in_place(evaluation, confirm):
            try:
                evaluation = self.verify_live(evaluation)
            except (TargetChanged, SourceError, UsageError) as exc:
                return self._refuse(evaluation, started, exc)
            if evaluation.decision.effect is Effect.DENY:
                return self._deny(evaluation, started)
        approver = None
        if evaluation.decision.effect is Effect.REQUIRE_APPROVAL:
            if not self._confirms_in_place(evaluation, confirm):
                return self._request_approval(evaluation, started)
            assert confirm is not None
            if not confirm(evaluation):
                return self._finish(
                    evaluation, "rejected", started, error="not confirmed on the terminal", raise_error=PolicyDenied
                )
            approver = f"{principal.name} (terminal confirmation)"
        intent_seq = append(self.db, audit_record(evaluation, INTENT_OUTCOME, started, approver=approver))
        return self.execute(evaluation, started, approver=approver, intent_seq=intent_seq)

    def _confirms_in_place(self, evaluation: Evaluation, confirm: Confirm | None) -> bool:
        """On a terminal the requester may approve in place only where they could approve it later."""
        in_place = confirm is not None and self.policy.document.approvals.tty_confirmation
        return in_place and self.approval_refusal(evaluation, evaluation.principal) is None

    def _deny(self, evaluation: Evaluation, started: float) -> CallOutcome:
        error = f"denied by {evaluation.decision.rule_label}"
        return self._finish(evaluation, "denied", started, error=error, raise_error=PolicyDenied)

    def _refuse(self, evaluation: Evaluation, started: float, exc: InventoryError) -> CallOutcome:
        """The target could not be re-read, or is another object now: recorded as refused, then raised."""
        details = exc.details if isinstance(exc, TargetChanged) else None
        return self._finish(
            evaluation, "refused", started, error=str(exc), raise_error=lambda _error: exc, extra=details
        )

    def _request_approval(self, evaluation: Evaluation, started: float) -> CallOutcome:
        """Queue the call; the request and its audit entry are committed together."""
        assert evaluation.spec is not None and evaluation.target is not None and evaluation.args is not None
        arguments = evaluation.args.model_dump(exclude_none=True, mode="json")
        if redact_value(arguments) != arguments:
            return self._finish(
                evaluation,
                "failed",
                started,
                error="arguments that carry secrets cannot wait for approval; "
                "an approver may run the call on a terminal instead",
                raise_error=UsageError,
            )
        now = utcnow()
        with self.db.write_session() as session:
            approval = Approval(
                created_at=now,
                requester=evaluation.principal.name,
                on_behalf_of=evaluation.principal.on_behalf_of,
                tool=evaluation.tool,
                target=evaluation.target.ref,
                target_name=evaluation.target.name,
                source=evaluation.target.source,
                arguments=arguments,
                tool_class=str(evaluation.classification.tool_class),
                matched_rule=evaluation.decision.rule_label,
                policy_hash=self.policy.sha256,
                status="pending",
                expires_at=now + timedelta(seconds=self.policy.document.approvals.expires_after),
            )
            session.add(approval)
            session.flush()
            identity = {TARGET_IDENTITY: target_identity(evaluation)}
            record = audit_record(evaluation, "pending", started, approval_id=approval.id, extra=identity)
            seq, _ = append_in(session, record, secrets_for(self.db))
            approval.request_seq = seq
            row_macs.sign(secrets_for(self.db), approval)
        self.notify_destructive(evaluation, "pending")
        if self.notifier is not None:  # whatever its class: someone has to act before the call runs
            self.notifier.approval_pending(
                approval_id=approval.id,
                tool=evaluation.tool,
                target=evaluation.target.ref,
                requester=evaluation.principal.label,
                tool_class=str(evaluation.classification.tool_class),
                rule=evaluation.decision.rule_label,
                expires_at=approval.expires_at,
            )
        return CallOutcome(evaluation, "pending", seq, approval.id)

    def execute(
        self,
        evaluation: Evaluation,
        started: float,
        *,
        intent_seq: int,
        approver: str | None = None,
        approval_id: int | None = None,
    ) -> CallOutcome:
        """Run a call whose intent (entry ``intent_seq``) is committed; record the outcome, then raise a failure."""
        spec, target, args = evaluation.spec, evaluation.target, evaluation.args
        assert spec is not None and target is not None and args is not None

        def done(outcome: str, **kw: Any) -> CallOutcome:
            return self._finish(
                evaluation, outcome, started, approver=approver, approval_id=approval_id, intent_seq=intent_seq, **kw
            )

        try:
            source_config = self._source_config_of(target)
            result = spec.implementation(ToolContext(spec, args, target, source_config))
        except InventoryError as exc:
            kind = UsageError if isinstance(exc, UsageError) else ToolFailed
            return done("failed", error=str(exc), raise_error=kind)
        except Exception as exc:  # an implementation bug: recorded, then reported
            message = f"tool {spec.name} on {target.ref}: {type(exc).__name__}: {exc}"
            return done("failed", error=message, raise_error=ToolFailed)
        call = done("success", result=result)
        self.observe(call, intent_seq)
        return call

    def observe(self, call: CallOutcome, intent_seq: int) -> None:
        """The closed loop: wait (bounded) for a live watcher to write the target's change, or re-read the target
        where nobody follows its source, and append what was seen, with the change rows' ids, as an ``observed``
        entry (the log is append-only: never an edit). Observing never fails the call: it ran and is recorded."""
        from inventory.audit.models import AuditEntry
        from inventory.observe import OBSERVED_OUTCOME, changes_of, wait_for_changes, watched

        evaluation, target = call.evaluation, call.evaluation.target
        if self.observe_timeout <= 0 or target is None or target.object_type == "source":
            return
        if evaluation.classification.tool_class is ToolClass.READ_ONLY:
            return
        spec = evaluation.spec
        reread = spec.live.read if spec is not None and spec.live is not None else None
        failed: str | None = None
        try:
            with self.db.session() as session:
                follower = watched(session, target.source)
                intent_at = session.get(AuditEntry, intent_seq)
                since = intent_at.at if intent_at is not None else utcnow()
            if follower is None and reread is None:  # nothing to wait for: the next sync records the change
                return

            def read() -> list[dict[str, Any]]:
                with self.db.session() as session:
                    return changes_of(session, target.object_type, target.id, since)

            if follower is not None:
                seen = wait_for_changes(read, self.observe_timeout)
                how = f"followed live by {follower}"
            else:
                assert reread is not None
                seen, reads, stopped = self._reread(reread, target, intent_seq, read)
                how = f"re-read at the source {reads} time{'' if reads == 1 else 's'}"
                failed = stopped.reason if stopped is not None else None
        except Exception as exc:  # the call ran and its outcome is recorded: observing it must not fail it
            log.warning("observing %s on %s failed: %s", evaluation.tool, target.ref, redact_text(str(exc)))
            return
        if seen.changes:
            call.observed = seen.describe(since)
        elif failed is not None:
            call.observed = redact_text(f"could not be observed: {failed}")
        else:
            call.observed = f"not observed within {self.observe_timeout:g} s ({how})"
        call.observed_changes = seen.ids
        details = {
            **principal_details(evaluation.principal),
            "intent_seq": intent_seq,
            "outcome_seq": call.audit_seq,
            "seen": call.observed,
            "changes": seen.ids,
            "observed_by": how,
        }
        record = AuditRecord(
            event="tool_call",
            actor=evaluation.actor,
            outcome=OBSERVED_OUTCOME,
            tool=evaluation.tool,
            target=evaluation.target_ref,
            target_name=target.name,
            source=target.source,
            tool_class=str(evaluation.classification.tool_class),
            duration_ms=seen.waited * 1000,
            policy_hash=evaluation.policy.sha256,
            details=details,
        )
        try:
            append(self.db, record)
        except Exception as exc:
            log.warning("the observation of audit entry %s was not appended: %s", call.audit_seq, redact_text(str(exc)))

    def _reread(
        self,
        read_target: Callable[[Target, Any], Snapshot],
        target: Target,
        intent_seq: int,
        changes: Callable[[], list[dict[str, Any]]],
    ) -> tuple[Seen, int, ReadFailed | None]:
        """Re-read the target at its source until it changed (inventory/reread.py): (seen, reads, why it stopped)."""
        from inventory.observe import Seen
        from inventory.reread import ReadFailed, reread_until_changed, write_reread

        try:
            source_config = self._source_config_of(target)
        except InventoryError as exc:
            return Seen([], 0.0), 0, ReadFailed(str(exc))
        key = (target.object_type, target.kind, target.external_id)
        return reread_until_changed(
            lambda: read_target(target, source_config),
            lambda snapshot, wait: write_reread(self.db, target.source, snapshot, key, intent_seq, wait=wait),
            changes,
            self.observe_timeout,
        )

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
        intent_seq: int | None = None,
        raise_error: Callable[[str], InventoryError] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> CallOutcome:
        error = redact_text(error) if error else None
        record = audit_record(
            evaluation,
            outcome,
            started,
            error=error,
            result=result,
            approver=approver,
            approval_id=approval_id,
            intent_seq=intent_seq,
            extra=extra,
        )
        seq = append(self.db, record)
        call = CallOutcome(evaluation, outcome, seq, approval_id, result, error, approver)
        self.notify_destructive(evaluation, outcome)
        if raise_error is not None and error is not None:
            # Not chained: an SDK exception's text may carry what redaction just removed.
            raise raise_error(error) from None
        return call

    def _record_invalid(
        self,
        tool: str,
        target_text: str | None,
        raw_args: Mapping[str, Any],
        principal: Principal,
        exc: Exception,
        started: float,
    ) -> None:
        if isinstance(exc, InvalidArguments):
            # A value that failed validation is not recorded: it may be a secret pasted into the wrong key.
            # An over-long argument name is not recorded either (check_argument_sizes refused it).
            raw_args = {
                key: INVALID_VALUE if key in exc.keys else value
                for key, value in raw_args.items()
                if len(str(key)) <= MAX_ARGUMENT_KEY_CHARS
            }
        record = AuditRecord(
            event="tool_call",
            actor=principal.name,
            outcome="invalid",
            tool=tool,
            target=target_text,
            arguments=dict(raw_args),
            error=redact_text(str(exc)),
            duration_ms=(time.perf_counter() - started) * 1000,
            policy_hash=self.policy.sha256,
            details=principal_details(principal),
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
    intent_seq: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> AuditRecord:
    args = evaluation.args.model_dump(exclude_none=True, mode="json") if evaluation.args else dict(evaluation.raw_args)
    details: dict[str, Any] = principal_details(evaluation.principal)
    if intent_seq is not None:
        details["intent_seq"] = intent_seq
    if evaluation.classification.reasons:
        details["classification"] = list(evaluation.classification.reasons)
    if evaluation.decision.contributions:
        details["rules"] = [{"rule": c.rule, "effect": str(c.effect)} for c in evaluation.decision.contributions]
    details.update(evaluation.classification.details)
    if evaluation.live_identity is not None and evaluation.target is not None:
        details["live_target"] = describe_live(evaluation.target, evaluation.live_identity)
    if extra:
        details.update(extra)
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


# The audit detail of an approval request that says which object it was decided for.
TARGET_IDENTITY = "target_identity"


def target_identity(evaluation: Evaluation) -> dict[str, str] | None:
    """Which object the call is for: as re-read at its source, else as the inventory recorded it."""
    spec, target = evaluation.spec, evaluation.target
    if evaluation.live_identity is not None:
        return dict(evaluation.live_identity)
    if spec is None or spec.live is None or target is None or target.object_type == "source":
        return None
    return dict(spec.live.identity(target))


def as_principal(actor: Principal | str) -> Principal:
    """A library caller may name an OS user as text; it is validated like any name."""
    return actor if isinstance(actor, Principal) else Principal.of(actor)


def principal_details(principal: Principal) -> dict[str, Any]:
    """Who acted, beyond the name in ``actor``: its kind and whom it acted for."""
    details: dict[str, Any] = {"principal": str(principal.kind)}
    if principal.on_behalf_of is not None:
        details["on_behalf_of"] = principal.on_behalf_of
    return details


__all__ = ["CallOutcome", "Evaluation", "PolicyDenied", "ToolFailed", "ToolRunner", "as_principal", "audit_record"]
