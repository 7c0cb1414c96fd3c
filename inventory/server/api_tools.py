"""Refresh, tools, tool calls, approvals and the audit log over HTTP, through the same library calls as the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from inventory.errors import NotFound, UsageError
from inventory.server.auth import Permission, Principal
from inventory.server.models import (
    ApprovalOut,
    AuditOut,
    CallOut,
    DecisionRequest,
    Page,
    RefreshOut,
    RefreshRequest,
    ToolCallRequest,
    ToolOut,
    VerifyOut,
)
from inventory.server.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, encode_cursor, json_response
from inventory.server.state import ServerState, current_state, require

router = APIRouter(prefix="/api/v1")

# --- refresh ----------------------------------------------------------------------------------


@router.post(
    "/inventory/refresh", response_model=RefreshOut, status_code=202, summary="Sync all (or the named) sources now"
)
def start_refresh(
    body: RefreshRequest | None = None,
    state: ServerState = Depends(current_state),
    principal: Principal = Depends(require(Permission.REFRESH)),
) -> Response:
    if state.refresher is None:
        raise UsageError("this server has no config with sources to refresh")
    refresh = state.refresher.start(body.sources if body else None, principal.name)
    response = json_response(refresh.as_row(), status_code=202)
    response.headers["Location"] = f"/api/v1/inventory/refresh/{refresh.id}"
    return response


@router.get("/inventory/refresh/{refresh_id}", response_model=RefreshOut, summary="A refresh and its sources' outcomes")
def get_refresh(
    refresh_id: str, state: ServerState = Depends(current_state), _p: Principal = Depends(require(Permission.READ))
) -> Response:
    if state.refresher is None:
        raise NotFound(f"no refresh {refresh_id!r}")
    return json_response(state.refresher.get(refresh_id).as_row())


# --- tools ------------------------------------------------------------------------------------


def tool_row(spec: Any) -> dict[str, Any]:
    from inventory.policy.classes import mcp_hints

    return {
        "name": spec.name,
        "class": str(spec.default_class),
        "target_type": spec.target_type,
        "target_kinds": list(spec.target_kinds),
        "summary": spec.summary,
        "arguments": spec.argument_help(),
        "annotations": mcp_hints(spec.default_class, idempotent=spec.idempotent),
    }


@router.get("/tools", response_model=list[ToolOut], summary="Registered tools with their class and arguments")
def list_tools(
    state: ServerState = Depends(current_state), _p: Principal = Depends(require(Permission.READ))
) -> Response:
    return json_response([tool_row(spec) for spec in state.tool_runner().registry])


def call_tool(
    state: ServerState,
    principal: Principal,
    tool: str,
    target: str | None,
    arguments: dict[str, Any],
    dry_run: bool = False,
) -> Any:
    """Policy, approval, execution and audit exactly as `inventory tool run --no-input`, the principal as actor."""
    return state.tool_runner().run(tool, target, arguments, principal, dry_run=dry_run)


@router.post(
    "/tools/{name}/calls", response_model=CallOut, summary="Call a tool: 200 ran, 202 waits for approval, 403 denied"
)
def post_call(
    name: str,
    body: ToolCallRequest,
    state: ServerState = Depends(current_state),
    principal: Principal = Depends(require(Permission.CALL)),
) -> Response:
    outcome = call_tool(state, principal, name, body.target, body.arguments, body.dry_run)
    return json_response(outcome.as_row(), status_code=202 if outcome.outcome == "pending" else 200)


# --- approvals --------------------------------------------------------------------------------


@router.get("/approvals", response_model=list[ApprovalOut], summary="Calls waiting for approval (or all)")
def list_approvals(
    status: str = Query("pending", pattern="^(pending|approved|rejected|all)$"),
    state: ServerState = Depends(current_state),
    _p: Principal = Depends(require(Permission.READ)),
) -> Response:
    from inventory.policy.approvals import list_approvals as listed

    return json_response(listed(state.tool_runner(), status))


def settle(
    state: ServerState, principal: Principal, approval_id: int, decision: str, reason: str | None
) -> dict[str, Any]:
    """Approve (and run) or reject a pending call as ``principal``; the library checks who may."""
    from inventory.policy.approvals import approve, reject

    runner = state.tool_runner()
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


@router.post("/approvals/{approval_id}", summary="Approve (and run) or reject a pending call")
def decide(
    approval_id: int,
    body: DecisionRequest,
    state: ServerState = Depends(current_state),
    principal: Principal = Depends(require(Permission.APPROVE)),
) -> Response:
    return json_response(settle(state, principal, approval_id, body.decision, body.reason))


# --- audit ------------------------------------------------------------------------------------


@router.get("/audit", response_model=Page[AuditOut], summary="Audit entries, oldest first")
def audit_list(
    actor: str | None = None,
    tool: str | None = None,
    event: str | None = Query(None, pattern="^(tool_call|approval|sync)$"),
    outcome: str | None = None,
    target: str | None = None,
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = None,
    state: ServerState = Depends(current_state),
    _p: Principal = Depends(require(Permission.AUDIT)),
) -> Response:
    from inventory.audit.log import AuditFilter, list_entries

    filters = {"list": "audit", "actor": actor, "tool": tool, "event": event, "outcome": outcome, "target": target}
    after_seq = decode_cursor(cursor, filters)  # the last seq of the previous page
    flt = AuditFilter(
        actor=actor, tool=tool, event=event, outcome=outcome, target=target, after_seq=after_seq, limit=limit + 1
    )
    with state.db.session() as session:
        rows = list_entries(session, flt)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["seq"], filters) if more else None
    return json_response({"items": rows, "next_cursor": next_cursor})


def verify_audit(state: ServerState) -> dict[str, Any]:
    """What `inventory audit verify` says, with this server's key: the chain, every mac, the heads."""
    from inventory.audit.keys import secrets_for
    from inventory.audit.log import verify_chain
    from inventory.policy.applied import tampered_rows

    with state.db.session() as session:
        result = verify_chain(session, audit_secrets=secrets_for(state.db))
    problem = result.problem
    policy_problems = tampered_rows(state.db)
    found = None if problem is None else {"seq": problem.seq, "kind": problem.kind, "message": problem.message}
    if found is None and policy_problems:
        found = {"seq": None, "kind": "applied_policy", "message": policy_problems[0]}
    return {
        "ok": result.ok and not policy_problems,
        "checked": result.checked,
        "last_seq": result.last_seq,
        "last_hash": result.last_hash,
        "problem": found,
        "applied_policies": policy_problems,
    }


@router.get("/audit/verify", response_model=VerifyOut, summary="Walk the hash chain")
def audit_verify(
    state: ServerState = Depends(current_state), _p: Principal = Depends(require(Permission.AUDIT))
) -> Response:
    return json_response(verify_audit(state))
