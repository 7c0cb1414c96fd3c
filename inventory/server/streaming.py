"""Server-sent events of stored changes, shared by the API's stream and the web pages' live rows.

Each event is one change row: ``id`` its change id (what a client sends back as Last-Event-ID to
resume), ``event: change``, ``data`` the row (JSON for the API, rendered HTML for the web page).
The feed (inventory/change_feed.py) is polled in a worker thread, so a slow database never holds
the event loop; a client that goes away ends its poll loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.requests import Request

from inventory.change_feed import POLL_SECONDS, ChangeFeed
from inventory.errors import UsageError

# A comment line this often keeps proxies from closing a quiet stream.
PING_SECONDS = 15


def resume_point(request: Request, query_value: str | None) -> int | None:
    """The change id a client saw last: the Last-Event-ID header (an EventSource reconnecting) or ``last_event_id``."""
    text = request.headers.get("last-event-id") or query_value
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"Last-Event-ID must be a change id (a whole number), not {text[:40]!r}") from None
    if value < 0:
        raise UsageError("Last-Event-ID must be a change id (a whole number), not negative")
    return value


async def open_feed(db: Any, filters: dict[str, Any], after_id: int | None) -> ChangeFeed:
    return await anyio.to_thread.run_sync(lambda: ChangeFeed(db, filters, after_id=after_id))


async def change_events(
    request: Request, feed: ChangeFeed, data: Callable[[dict[str, Any]], str]
) -> AsyncIterator[dict[str, str]]:
    """Every change the feed hands out, as an event, until the client goes away."""
    while not await request.is_disconnected():
        for row in await anyio.to_thread.run_sync(feed.poll):
            yield {"id": str(row["id"]), "event": "change", "data": data(row)}
        await anyio.sleep(POLL_SECONDS)


__all__ = ["PING_SECONDS", "change_events", "open_feed", "resume_point"]
