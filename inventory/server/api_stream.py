"""`/api/v1/changes/stream`: the changes list as a text/event-stream, filterable and resumable."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sse_starlette import EventSourceResponse

from inventory.query_params import ACTIONS, OBJECT_TYPES
from inventory.records import to_json_bytes
from inventory.server.auth import Permission, Principal
from inventory.server.state import ServerState, current_state, require
from inventory.server.streaming import PING_SECONDS, change_events, open_feed, resume_point

router = APIRouter(prefix="/api/v1")


@router.get(
    "/changes/stream",
    summary="Changes as they are stored, as server-sent events (resume with Last-Event-ID)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One `change` event per stored change."}},
)
async def changes_stream(
    request: Request,
    source: str | None = None,
    kind: str | None = None,
    type: str | None = Query(None, pattern=f"^({'|'.join(OBJECT_TYPES)})$"),
    action: str | None = Query(None, pattern=f"^({'|'.join(ACTIONS)})$"),
    last_event_id: str | None = Query(
        None, description="The id of the last change seen (the Last-Event-ID header takes precedence)."
    ),
    state: ServerState = Depends(current_state),
    _principal: Principal = Depends(require(Permission.READ)),
) -> EventSourceResponse:
    after = resume_point(request, last_event_id)
    filters = {"source": source, "kind": kind, "object_type": type, "action": action}
    feed = await open_feed(state.db, filters, after)
    return EventSourceResponse(change_events(request, feed, lambda row: to_json_bytes(row).decode()), ping=PING_SECONDS)
