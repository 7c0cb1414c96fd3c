"""Refresh, tools, tool calls, approvals and the audit log over HTTP, through the same library calls as the CLI."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from inventory.audit import AUDIT_EVENTS
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
    from inventory.principals import acting_for

    # Acting for someone (--actor) only where the config's principals.act_for lets this principal.
    principal = acting_for(state.principals, principal, body.actor)
    outcome = call_tool(state, principal, name, body.target, body.arguments, body.dry_run)
    return json_response(outcome.as_row(), status_code=202 if outcome.outcome == "pending" else 200)


# --- approvals --------------------------------------------------------------------------------


@router.get("/approvals", response_model=list[ApprovalOut], summary="Calls waiting for approval (or all)")
def list_approvals(
    status: str = Query("pending", pattern="^(pending|approved|rejected|expired|all)$"),
    state: ServerState = Depends(current_state),
    _p: Principal = Depends(require(Permission.READ)),
) -> Response:
    from inventory.policy.approvals import list_approvals as listed

    return json_response(listed(state.tool_runner(), status))


@router.post("/approvals/{approval_id}", summary="Approve (and run) or reject a pending call")
def decide(
    approval_id: int,
    body: DecisionRequest,
    state: ServerState = Depends(current_state),
    principal: Principal = Depends(require(Permission.APPROVE)),
) -> Response:
    from inventory.policy.approvals import settle

    return json_response(settle(state.tool_runner(), approval_id, principal, body.decision, body.reason))


# --- audit ------------------------------------------------------------------------------------


_EVENT_PATTERN = "^(" + "|".join(AUDIT_EVENTS) + ")$"


@router.get("/audit", response_model=Page[AuditOut], summary="Audit entries, oldest first")
def audit_list(
    actor: str | None = None,
    tool: str | None = None,
    event: str | None = Query(None, pattern=_EVENT_PATTERN),
    outcome: str | None = None,
    target: str | None = None,
    tool_class: str | None = Query(None, alias="class", pattern="(?i)^(READ_ONLY|SAFE_MUTATE|DESTRUCTIVE)$"),
    decision: str | None = Query(None, pattern="^(allow|require_approval|deny)$"),
    since: str | None = Query(None, description="From this long ago (7d, 1h) or an ISO time, as `audit list`."),
    until: str | None = Query(None, description="Up to this long ago or an ISO time."),
    newest: bool = Query(False, description="The newest `limit` entries (oldest first); the cursor pages back."),
    limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
    cursor: str | None = None,
    state: ServerState = Depends(current_state),
    _p: Principal = Depends(require(Permission.AUDIT)),
) -> Response:
    from inventory.audit.log import AuditFilter, list_entries
    from inventory.timeutil import parse_period

    try:
        since_at, until_at = parse_period(since, until)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    filters = {
        "list": "audit",
        "actor": actor,
        "tool": tool,
        "event": event,
        "outcome": outcome,
        "target": target,
        "class": tool_class,
        "decision": decision,
        "since": since,
        "until": until,
        "newest": newest,
    }
    # The seq the previous page ended at: after it (oldest first), or before it (newest first).
    position = decode_cursor(cursor, filters) if cursor else None
    flt = AuditFilter(
        actor=actor,
        tool=tool,
        event=event,
        outcome=outcome,
        target=target,
        tool_class=tool_class,
        decision=decision,
        since=since_at,
        until=until_at,
        after_seq=position if not newest else None,
        before_seq=position if newest else None,
        newest_first=newest,
        limit=limit + 1,
    )
    with state.db.read_session() as session:
        rows = list_entries(session, flt)
    more = len(rows) > limit
    rows = rows[1:] if newest and more else rows[:limit]
    next_cursor = encode_cursor(rows[0 if newest else -1]["seq"], filters) if more else None
    return json_response({"items": rows, "next_cursor": next_cursor})


@router.get("/audit/verify", response_model=VerifyOut, summary="Walk the hash chain")
def audit_verify(
    checkpoint_seq: int | None = Query(None, ge=1, description="An earlier export's last entry: it must be there."),
    checkpoint_hash: str | None = Query(None, pattern="^[0-9a-f]{64}$"),
    in_python: bool = Query(False, description="Re-hash every entry in the server process, not in the database."),
    state: ServerState = Depends(current_state),
    _p: Principal = Depends(require(Permission.AUDIT)),
) -> Response:
    from inventory.audit.log import Checkpoint
    from inventory.audit.verify import verify_report

    if (checkpoint_seq is None) != (checkpoint_hash is None):
        raise UsageError("checkpoint_seq and checkpoint_hash go together")
    mark = Checkpoint(checkpoint_seq, checkpoint_hash) if checkpoint_seq and checkpoint_hash else None
    return json_response(verify_report(state.db, mark, in_python=in_python))


@router.get("/audit/{seq}", response_model=AuditOut, summary="One entry with every field and its hashes")
def audit_show(
    seq: int, state: ServerState = Depends(current_state), _p: Principal = Depends(require(Permission.AUDIT))
) -> Response:
    from inventory.audit.log import get_entry

    with state.db.read_session() as session:
        return json_response(get_entry(session, seq))
