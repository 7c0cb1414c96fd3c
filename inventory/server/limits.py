"""Bounds on what one request may make the server read: its URL, its headers, its body.

An unauthenticated caller decides how long a path or a header is and how many bytes it sends, so
these are checked before any route, any token check or any log line looks at them:

- a URL (path and query) over ``max_url_bytes`` is answered 414, headers over ``max_header_bytes``
  431, a body over ``max_body_bytes`` 413, all in the API's JSON error shape;
- a body's ``Content-Length`` is checked before a byte of it is read, and a body without one
  (chunked) is counted as it streams in and cut off at the limit, so it is never held whole.

Below these, uvicorn's h11 parser refuses a request head over ``H11_MAX_HEAD_BYTES`` (400, see
``run.uvicorn_config``), and tool arguments have their own bound (``policy.tools.MAX_ARGUMENT_CHARS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_URL_BYTES = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# The request line and headers together, as uvicorn's h11 parser buffers them: above our own limits, so
# that requests just over them get our JSON answer, and a flood of header bytes is still cut off early.
H11_MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class RequestLimits:
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class _BodyTooLarge(Exception):
    """Raised into the application from ``receive`` when a streamed body passes the limit."""


async def send_json_error(send: Any, status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    """The API's error shape from plain ASGI (no request object, no route)."""
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    """ASGI middleware enforcing ``RequestLimits`` on every HTTP request (the API, /mcp, the web UI, /health)."""

    def __init__(self, app: Any, limits: RequestLimits | None = None) -> None:
        self.app = app
        self.limits = limits or RequestLimits()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if url_bytes > limits.max_url_bytes:
            await _refuse(send, 414, "URITooLong", f"the URL is longer than {limits.max_url_bytes} bytes")
            return
        headers = scope.get("headers", [])
        if sum(len(key) + len(value) + 4 for key, value in headers) > limits.max_header_bytes:
            await _refuse(send, 431, "HeadersTooLarge", f"the headers are larger than {limits.max_header_bytes} bytes")
            return
        declared = next((value for key, value in headers if key == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await _refuse(send, 400, "UsageError", "Content-Length is not a number")
                return
            if int(declared) > limits.max_body_bytes:
                await _refuse(send, 413, "ContentTooLarge", _too_large(limits))
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Any, receive: Any, send: Any) -> None:
        """Pass the request on, counting its body as it arrives; past the limit the answer is our 413.

        Once the body overflows, ``receive`` raises into the application, and whatever the application
        makes of that (FastAPI answers "error parsing the body", a task group wraps it) is replaced by
        the 413, unless its answer had already begun.
        """
        received = 0
        overflowed = app_answered = replaced = False

        async def counting_receive() -> Any:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limits.max_body_bytes:
                    overflowed = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal app_answered, replaced
            if replaced:
                return  # our 413 went out: the application's answer is dropped
            if overflowed and not app_answered:
                replaced = True
                await _refuse(send, 413, "ContentTooLarge", _too_large(self.limits))
                return
            if message["type"] == "http.response.start":
                app_answered = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not overflowed or app_answered:
                raise
        if overflowed and not app_answered and not replaced:
            await _refuse(send, 413, "ContentTooLarge", _too_large(self.limits))


def _too_large(limits: RequestLimits) -> str:
    return f"the request body is larger than {limits.max_body_bytes} bytes"


async def _refuse(send: Any, status: int, kind: str, message: str) -> None:
    # The connection is closed after the answer: the rest of an oversized request is never read.
    await send_json_error(send, status, kind, message, [(b"connection", b"close")])
