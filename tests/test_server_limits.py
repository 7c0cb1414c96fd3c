"""Hostile requests cost the server little: bounded URL, headers and body, slowed token guessing, a terse /health.

Everything goes through a real uvicorn on loopback (BackgroundServer), with httpx or a raw socket where
the point is what the server does before it has read a request whole.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import Tokens, make_tokens

from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.policy.tools import MAX_ARGUMENT_CHARS
from inventory.server import create_app
from inventory.server.auth import FailedAttempts
from inventory.server.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_URL_BYTES
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database, open_database


@pytest.fixture
def sqlite_db(migrated_sqlite_url: str) -> Iterator[Database]:
    # What is tested is the HTTP layer, the same over either engine: SQLite keeps it quick.
    database = open_database(migrated_sqlite_url, migrate=True)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def served(sqlite_db: Database) -> Iterator[tuple[str, Tokens]]:
    runner = ToolRunner(sqlite_db, builtin_policy(), ToolRegistry.discover())
    tokens = make_tokens(sqlite_db)
    app = create_app(sqlite_db, runner=runner, failed_attempts=FailedAttempts(burst=3))
    with BackgroundServer(app) as server:
        yield server.url, tokens


def raw_exchange(url: str, head: bytes, body_chunks: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    """Send a request head (and chunks) on a plain socket; the server's whole answer up to its close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(head)
        for chunk in body_chunks:
            connection.sendall(chunk)
        answer = b""
        while data := connection.recv(65536):
            answer += data
    return answer


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_long_url_is_414_and_large_headers_431_in_the_api_error_shape(served: tuple[str, Tokens]) -> None:
    url, tokens = served
    hostile_path = "/api/v1/inventory/hosts/" + "a:@//" * (DEFAULT_MAX_URL_BYTES // 5 + 1)
    long_url = httpx.get(url + hostile_path, timeout=10)
    assert long_url.status_code == 414 and error_of(long_url)["type"] == "URITooLong"
    assert "a:@//" not in long_url.text  # the path is not echoed
    big_headers = httpx.get(f"{url}/health", headers={"X-Padding": "b" * 40_000}, timeout=10)
    assert big_headers.status_code == 431 and error_of(big_headers)["type"] == "HeadersTooLarge"
    # Well past the parser's own bound (64 KiB of request head), uvicorn refuses before any of our code runs:
    # a 400, or a reset when the rest of what the client sent was never read.
    try:
        huge_status = httpx.get(f"{url}/health", headers={"X-Padding": "b" * 200_000}, timeout=10).status_code
    except httpx.ReadError:
        huge_status = 400
    assert huge_status == 400
    # The server is none the worse: it answers at once.
    assert httpx.get(f"{url}/api/v1/inventory/hosts", headers=tokens.header("viewer"), timeout=10).status_code == 200


def test_a_body_over_the_limit_is_413_before_it_is_read(served: tuple[str, Tokens]) -> None:
    url, tokens = served
    authorization = f"Authorization: Bearer {tokens.by_name['operator']}\r\n".encode()
    # Content-Length says too much: refused with no byte of the body sent.
    declared = raw_exchange(
        url,
        b"POST /api/v1/tools/kubernetes.restart/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + authorization
        + f"Content-Length: {100 * DEFAULT_MAX_BODY_BYTES}\r\n\r\n".encode(),
    )
    assert declared.startswith(b"HTTP/1.1 413 ") and b'"ContentTooLarge"' in declared
    # Chunked, no length: counted as it streams and refused once past the limit (the last chunk sent passes it,
    # so that the server has read all that was sent when it answers and closes).
    chunk = b"x" * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (DEFAULT_MAX_BODY_BYTES // len(chunk)) + [b"1\r\nx\r\n"]
    streamed = raw_exchange(
        url,
        b"POST /api/v1/tools/kubernetes.restart/calls HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + authorization
        + b"Transfer-Encoding: chunked\r\n\r\n",
        chunks,
    )
    assert streamed.startswith(b"HTTP/1.1 413 ") and b'"ContentTooLarge"' in streamed
    assert b"request body is larger than 1048576 bytes" in streamed


def test_a_tool_argument_over_its_bound_is_refused_naming_the_key_never_the_value(served: tuple[str, Tokens]) -> None:
    url, tokens = served
    value = "canary-" + "z" * MAX_ARGUMENT_CHARS
    response = httpx.post(
        f"{url}/api/v1/tools/kubernetes.restart/calls",
        json={"target": "anything", "arguments": {"reason": value}},
        headers=tokens.header("operator"),
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert "'reason'" in error_of(response)["message"] and str(MAX_ARGUMENT_CHARS) in error_of(response)["message"]
    assert "canary-" not in response.text


def test_wrong_tokens_are_slowed_per_address_and_other_clients_are_not(served: tuple[str, Tokens]) -> None:
    url, tokens = served
    hosts = f"{url}/api/v1/inventory/hosts"
    with (
        httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as guesser,
        httpx.Client(timeout=10) as other,
    ):
        answers = [guesser.get(hosts, headers={"Authorization": f"Bearer inv_guess{n}"}) for n in range(3)]
        assert [a.status_code for a in answers] == [401, 401, 401]
        refused = guesser.get(hosts, headers={"Authorization": "Bearer inv_guess4"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert error_of(refused)["type"] == "TooManyFailures"
        # A right guess is refused alike: a 200 would tell the guesser it had found one.
        assert guesser.get(hosts, headers=tokens.header("viewer")).status_code == 429
        # The MCP door and the web sign-in count the same failures.
        assert guesser.post(f"{url}/mcp", headers={"Authorization": "Bearer inv_x"}, json={}).status_code == 429
        assert guesser.post(f"{url}/login", data={"token": "inv_x"}).status_code == 429
        # Another address, with a valid token or a wrong one, is not slowed.
        assert other.get(hosts, headers=tokens.header("viewer")).status_code == 200
        assert other.get(hosts, headers={"Authorization": "Bearer inv_typo"}).status_code == 401
        # No token at all is no guess.
        assert other.get(f"{url}/health").status_code == 200


def test_failed_attempts_refill_with_time() -> None:
    now = [0.0]
    attempts = FailedAttempts(burst=2, per_minute=10, clock=lambda: now[0])
    attempts.failed("10.0.0.1")
    attempts.failed("10.0.0.1")
    with pytest.raises(Exception, match="try again in 6 s") as refused:
        attempts.check("10.0.0.1")
    assert getattr(refused.value, "retry_after", None) == 6
    attempts.check("10.0.0.2")  # another address
    now[0] = 6.0  # one attempt's worth refilled
    attempts.check("10.0.0.1")
    attempts.failed("10.0.0.1")
    with pytest.raises(Exception, match="try again"):
        attempts.check("10.0.0.1")
    now[0] = 600.0
    attempts.check("10.0.0.1")


def test_health_without_a_token_says_only_ok_or_degraded(served: tuple[str, Tokens], tmp_path: Path) -> None:
    url, tokens = served
    anonymous = httpx.get(f"{url}/health", timeout=10)
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    full = httpx.get(f"{url}/health", headers=tokens.header("viewer"), timeout=10).json()
    assert full["status"] == "ok" and full["process"]["version"] and full["database"]["reachable"] is True
    assert httpx.get(f"{url}/health", headers={"Authorization": "Bearer inv_wrong"}, timeout=10).status_code == 401
    # A database that cannot be reached: degraded, with no error text, no URL and no version for anonymous callers.
    unreachable = Database(f"sqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    with BackgroundServer(create_app(unreachable, mcp=False, web=False)) as server:
        degraded = httpx.get(f"{server.url}/health", timeout=10)
    assert degraded.status_code == 503 and degraded.json() == {"status": "degraded"}
