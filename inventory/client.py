"""The CLI's client of the server's Unix socket: the same API routes as HTTP callers use, as the calling OS user.

When a server socket is configured (``--socket``, ``INVENTORY_SOCKET``, the config's ``server.socket``),
`inventory tool run`, `approvals`, `tokens` and `audit list|show|verify` send their request to the
service that holds the audit key and the database, which knows the caller by the kernel's word
(``SO_PEERCRED``, inventory/server/local.py): no token, no key and no database access on this side.
The server's answer is the row the library returns in direct mode, so the CLI renders it the same
way; its errors come back with the same words and exit codes (``{"error": {"type", "message"}}``).

httpx is imported only here, and only by these commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from inventory.errors import InventoryError, ServerUnavailable

# The most the API gives in one page (server/pagination.py MAX_PAGE; not imported: that module loads FastAPI).
_MAX_PAGE = 1000


class ServerError(InventoryError):
    """An error the server answered, with the words and the exit code of the error class it named."""

    def __init__(self, message: str, exit_code: int, kind: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind


def _exit_code_of(kind: str, status: int) -> int:
    """The exit code of the error class the server named (any of the tree), else by the HTTP status."""
    pending: list[type[InventoryError]] = [InventoryError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == kind:
            return cls.exit_code
        pending.extend(cls.__subclasses__())
    return {400: 2, 403: 3, 409: 2}.get(status, 1)


def parse_times(row: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """``row`` with its time fields as datetimes again (JSON carries ISO text): rendered as in direct mode."""
    for name in fields:
        value = row.get(name)
        if isinstance(value, str):
            try:
                row[name] = datetime.fromisoformat(value)
            except ValueError:
                pass
    return row


class ServerClient:
    """HTTP over the server's Unix socket; each method is one API route."""

    def __init__(self, path: str | Path, *, connect_timeout: float = 5.0) -> None:
        import httpx

        self.path = Path(path)
        # No read timeout: a tool call lasts as long as its source takes, as it does in direct mode.
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.path)),
            base_url="http://inventory",
            timeout=httpx.Timeout(None, connect=connect_timeout),
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        route: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        import httpx

        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._client.request(method, "/api/v1" + route, params=query, json=body)
        except httpx.TransportError as exc:
            raise ServerUnavailable(self._unreachable(exc)) from None
        if response.is_success:
            return response.json()
        try:
            error = response.json()["error"]
            kind, message = str(error["type"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            kind = "ServerError"
            message = f"the server at {self.path} answered {response.status_code} to {method} /api/v1{route}"
        raise ServerError(message, _exit_code_of(kind, response.status_code), kind)

    def _unreachable(self, exc: Exception) -> str:
        """Why the socket did not answer, in words: not there, not ours to open, nobody listening."""
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, FileNotFoundError):
            reason = "no such socket"
        elif isinstance(cause, PermissionError):
            reason = "permission denied (the socket's mode and group say who may connect)"
        elif isinstance(cause, ConnectionRefusedError):
            reason = "nobody listens on it"
        else:
            reason = str(cause or exc) or type(exc).__name__
        return (
            f"the inventory server at {self.path} does not answer: {reason}; is `inventory serve` running "
            "(the config's server.socket, --socket or INVENTORY_SOCKET name it)?"
        )

    # --- tool calls and approvals ---------------------------------------------------------------

    def call_tool(
        self, tool: str, target: str | None, arguments: Mapping[str, Any], *, actor: str | None, dry_run: bool
    ) -> dict[str, Any]:
        body = {"target": target, "arguments": dict(arguments), "dry_run": dry_run, "actor": actor}
        row: dict[str, Any] = self.request("POST", f"/tools/{_segment(tool)}/calls", body=body)
        return row

    def approvals(self, status: str) -> list[dict[str, Any]]:
        rows = self.request("GET", "/approvals", params={"status": status})
        return [parse_times(row, ("created_at", "expires_at", "decided_at")) for row in rows]

    def settle(self, approval_id: int, decision: str, reason: str | None) -> dict[str, Any]:
        row: dict[str, Any] = self.request(
            "POST", f"/approvals/{approval_id}", body={"decision": decision, "reason": reason}
        )
        return row

    # --- tokens ---------------------------------------------------------------------------------

    def create_token(self, name: str, groups: Sequence[str], expires: str | None) -> str:
        answer = self.request("POST", "/tokens", body={"name": name, "groups": list(groups), "expires": expires})
        return str(answer["token"])

    def tokens(self) -> list[dict[str, Any]]:
        rows = self.request("GET", "/tokens")
        return [parse_times(row, ("created_at", "expires_at", "revoked_at")) for row in rows]

    def revoke_token(self, name: str) -> None:
        self.request("DELETE", f"/tokens/{_segment(name)}")

    # --- audit ----------------------------------------------------------------------------------

    def audit_entries(self, filters: Mapping[str, Any], limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries that match, oldest first, paging back as often as it takes."""
        rows: list[dict[str, Any]] = []
        cursor = None
        while len(rows) < limit:
            params = {**filters, "newest": "true", "limit": min(_MAX_PAGE, limit - len(rows)), "cursor": cursor}
            page = self.request("GET", "/audit", params=params)
            rows = list(page["items"]) + rows
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return [parse_times(row, ("at",)) for row in rows]

    def audit_entry(self, seq: int) -> dict[str, Any]:
        return parse_times(self.request("GET", f"/audit/{seq}"), ("at",))

    def audit_verify(self, checkpoint: Any | None, *, in_python: bool) -> dict[str, Any]:
        params = {"in_python": "true" if in_python else None}
        if checkpoint is not None:
            params.update(checkpoint_seq=checkpoint.seq, checkpoint_hash=checkpoint.entry_hash)
        report: dict[str, Any] = self.request("GET", "/audit/verify", params=params)
        return report


def _segment(text: str) -> str:
    """One path segment: a name with a slash or a question mark still names one thing."""
    from urllib.parse import quote

    return quote(text, safe="")


__all__ = ["ServerClient", "ServerError", "parse_times"]
