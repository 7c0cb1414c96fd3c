"""MCP for agents: Streamable HTTP at ``/mcp`` (bearer tokens) and ``inventory mcp`` on stdio (the OS user).

Tools are the inventory's queries and every registered policy tool. Annotations follow our
classes (READ_ONLY -> readOnlyHint, DESTRUCTIVE -> destructiveHint, idempotentHint where the
tool says so), but they are only hints: every ``tools/call`` goes through the same permission
check, policy, approval and audit as the API and the CLI, as the calling principal. A call that
needs approval answers ``pending approval N``; ``inventory_approval_status`` polls it.

MCP tool names are ``[A-Za-z0-9_-]`` (what most clients accept): ``kubernetes.restart_deployment``
is offered as ``kubernetes_restart_deployment``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from inventory import __version__, listing, queries
from inventory.errors import InventoryError, NotFound, UsageError
from inventory.query_params import LIST_QUERIES
from inventory.server.auth import (
    EVERY_PERMISSION,
    Forbidden,
    Grants,
    NotAuthenticated,
    Permission,
    Principal,
    TooManyFailures,
    bearer_token,
    doors_of,
    may,
    permissions_of,
)
from inventory.server.limits import send_json_error
from inventory.server.mcp_output import (
    POLICY_CALL_SCHEMA,
    error_result,
    list_arguments,
    list_input_schema,
    result,
    tool_output_schemas,
)
from inventory.server.state import ServerState

SERVER_NAME = "inventory"
INSTRUCTIONS = (
    "Live infrastructure inventory (Kubernetes, Proxmox VE, Docker, hand-declared machines) and policy-gated tools. "
    "Search before acting; a tool call may answer 'pending approval N': a person must approve it, poll with "
    "inventory_approval_status."
)

READ_HINTS = types.ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or [], "additionalProperties": False}


@dataclass(frozen=True)
class QueryTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    run: Callable[[ServerState, Principal, dict[str, Any]], Any]


def _list(query_name: str) -> Callable[[ServerState, Principal, dict[str, Any]], Any]:
    """A declared list query (inventory/query_params.py) as a tool: its arguments checked by the same model
    as the REST query string; the answer is the REST page (items, next_cursor, total)."""

    def run(state: ServerState, _principal: Principal, args: dict[str, Any]) -> Any:
        values = listing.validate(query_name, list_arguments(LIST_QUERIES[query_name], args))
        with state.db.read_session() as session:
            return listing.run_list(session, query_name, values)

    return run


def _show(state: ServerState, _principal: Principal, args: dict[str, Any]) -> Any:
    with state.db.read_session() as session:
        return queries.show_object(session, args["type"], str(args["ident"]), source=args.get("source"))


def _sources(state: ServerState, _principal: Principal, _args: dict[str, Any]) -> Any:
    with state.db.read_session() as session:
        return queries.list_sources(session)


def _impact(state: ServerState, _principal: Principal, args: dict[str, Any]) -> Any:
    from inventory.documents import impact_document

    with state.db.read_session() as session:
        return impact_document(session, str(args["target"]), state.logical_services)


def _approval_status(state: ServerState, _principal: Principal, args: dict[str, Any]) -> Any:
    from inventory.policy.approvals import list_approvals, run_of

    wanted = int(args["approval_id"])
    runner = state.tool_runner()
    for row in list_approvals(runner, "all"):
        if row["id"] == wanted:
            # Once an approved call ran: how it ended, with its error, as the audit log recorded it.
            return {**row, "run": run_of(runner, wanted) if row["status"] == "approved" else None}
    raise NotFound(f"no approval {wanted}")


QUERY_TOOLS = [
    # The list queries, each the tool its declaration names (inventory/query_params.py).
    *(
        QueryTool(query.tool, query.tool_description, list_input_schema(query), _list(query.name))
        for query in LIST_QUERIES.values()
    ),
    QueryTool(
        "inventory_show",
        "One host, workload or service with its links (workloads, same machine in other sources, members) "
        "and recent changes.",
        _schema(
            {
                "type": {"type": "string", "enum": ["host", "workload", "service"]},
                "ident": {
                    "type": "string",
                    "description": "Name, namespace/name, id, Docker short id or source/kind/external_id.",
                },
                "source": {"type": "string", "description": "The object of this source (two share the name)."},
            },
            ["type", "ident"],
        ),
        _show,
    ),
    QueryTool(
        "inventory_sources_health",
        "Every source with its last sync (status, time, error) and live object counts.",
        _schema({}),
        _sources,
    ),
    QueryTool(
        "inventory_impact",
        "What goes with a host or workload: the hosts other sources see on the same machine, every workload on "
        "them, and the services that lose members (those left without a ready one first). Ask before acting.",
        _schema(
            {
                "target": {
                    "type": "string",
                    "description": "[host:|workload:]name, id or source/kind/external_id; a bare name is tried "
                    "as a Proxmox guest first, then as a host, then as any workload.",
                }
            },
            ["target"],
        ),
        _impact,
    ),
    QueryTool(
        "inventory_approval_status",
        "The state of a tool call that waits for approval (pending, approved, rejected) and its outcome.",
        _schema({"approval_id": {"type": "integer"}}, ["approval_id"]),
        _approval_status,
    ),
]
_QUERIES = {tool.name: tool for tool in QUERY_TOOLS}
OUTPUT_SCHEMAS = tool_output_schemas(LIST_QUERIES)


def mcp_tool_name(tool: str) -> str:
    return tool.replace(".", "_")


def _policy_tool(spec: Any) -> types.Tool:
    from inventory.policy.classes import mcp_hints

    args_schema = spec.args_model.model_json_schema()
    properties = {
        "target": {
            "type": "string",
            "description": f"What the call touches: a {spec.target_type} name, id or source/kind/external_id",
        },
        **args_schema.get("properties", {}),
    }
    hints = mcp_hints(spec.default_class, idempotent=spec.idempotent)
    annotations = types.ToolAnnotations(
        title=spec.name,
        read_only_hint=hints["readOnlyHint"],
        destructive_hint=hints["destructiveHint"],
        idempotent_hint=hints["idempotentHint"],
        open_world_hint=True,
    )
    schema = {"type": "object", "properties": properties, "required": ["target", *args_schema.get("required", [])]}
    if "$defs" in args_schema:
        schema["$defs"] = args_schema["$defs"]
    description = f"{spec.summary} [{spec.default_class}; enforced by the inventory's policy, approvals and audit log]"
    return types.Tool(
        name=mcp_tool_name(spec.name),
        description=description,
        input_schema=schema,
        output_schema=POLICY_CALL_SCHEMA,
        annotations=annotations,
    )


class InventoryMCP:
    """The tools of one ServerState; ``principal_of`` says who is calling (the token's holder or the OS user),
    ``grants`` which doors that principal may use (by its groups over HTTP)."""

    def __init__(
        self, state: ServerState, principal_of: Callable[[Any], Principal], grants: Grants = permissions_of
    ) -> None:
        self.state = state
        self.principal_of = principal_of
        self.grants = grants
        self.server: Server[Any] = Server(
            SERVER_NAME,
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    def _policy_specs(self) -> dict[str, Any]:
        if self.state.runner is None:
            return {}
        return {mcp_tool_name(spec.name): spec for spec in self.state.runner.registry}

    async def list_tools(self, ctx: Any, _params: Any) -> types.ListToolsResult:
        principal = self.principal_of(ctx)
        tools: list[types.Tool] = []
        if may(principal, Permission.READ, self.grants):
            tools += [
                types.Tool(
                    name=t.name,
                    description=t.description,
                    input_schema=t.input_schema,
                    output_schema=OUTPUT_SCHEMAS[t.name],
                    annotations=READ_HINTS,
                )
                for t in QUERY_TOOLS
            ]
        if may(principal, Permission.CALL, self.grants):
            tools += [_policy_tool(spec) for spec in self._usable_specs(principal)]
        return types.ListToolsResult(tools=tools)

    def _usable_specs(self, principal: Principal) -> list[Any]:
        """The policy tools the principal could ever run: one a deny rule refuses them on any target is not
        listed (an agent would only waste a call on it); calling it anyway is decided and audited as always."""
        from inventory.policy.engine import always_denied_by

        runner = self.state.runner
        if runner is None:
            return []
        policy = runner.refresh_policy()
        return [spec for spec in runner.registry if always_denied_by(policy, principal, spec) is None]

    async def call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        principal = self.principal_of(ctx)
        arguments = dict(params.arguments or {})
        return await anyio.to_thread.run_sync(self.dispatch, principal, params.name, arguments)

    def dispatch(self, principal: Principal, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Run one call as ``principal``; every refusal is a tool error the agent can read, never a crash."""
        try:
            if name in _QUERIES:
                if not may(principal, Permission.READ, self.grants):
                    raise Forbidden(principal, Permission.READ)
                return result(_QUERIES[name].run(self.state, principal, arguments))
            spec = self._policy_specs().get(name)
            if spec is None:
                raise UsageError(f"unknown tool {name!r}")
            if not may(principal, Permission.CALL, self.grants):
                raise Forbidden(principal, Permission.CALL)
            return self._call_policy_tool(principal, spec, arguments)
        except Forbidden as exc:
            return error_result("Forbidden", str(exc))
        except InventoryError as exc:
            return error_result(type(exc).__name__, str(exc))
        except (TypeError, ValueError) as exc:
            return error_result("UsageError", f"{name}: bad arguments: {exc}")

    def _call_policy_tool(self, principal: Principal, spec: Any, arguments: dict[str, Any]) -> types.CallToolResult:
        target = arguments.pop("target", None)
        # As `inventory tool run --no-input` and the API: policy, approval, execution and audit, the principal as actor.
        outcome = self.state.tool_runner().run(spec.name, target, arguments, principal)
        row = outcome.as_row()
        if outcome.outcome == "pending":
            row["message"] = (
                f"pending approval {outcome.approval_id}: {spec.name} on {row['target']} "
                "waits for a person to approve it; "
                f"poll inventory_approval_status with approval_id {outcome.approval_id}"
            )
        return result(row)


# --- Streamable HTTP at /mcp ---------------------------------------------------------------------


def _principal_from_request(ctx: Any) -> Principal:
    request = getattr(ctx, "request", None)
    principal = request.scope.get("state", {}).get("principal") if request is not None else None
    if principal is None:  # the gate below always sets it; a request without one is refused
        raise NotAuthenticated()
    return principal


class BearerGate:
    """Every request to /mcp carries a bearer token of a principal allowed to read; the principal rides in the scope."""

    def __init__(self, inner: Any, state: ServerState) -> None:
        self.inner = inner
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        header = next(
            (value.decode("latin-1") for key, value in scope.get("headers", []) if key == b"authorization"), None
        )
        try:
            principal = await anyio.to_thread.run_sync(self.state.caller, scope, bearer_token(header), Permission.READ)
        except TooManyFailures as exc:
            await _deny(send, 429, "TooManyFailures", str(exc), [(b"retry-after", str(exc.retry_after).encode())])
            return
        except NotAuthenticated:
            await _deny(send, 401, "NotAuthenticated", "a valid token is required: Authorization: Bearer <token>")
            return
        except Forbidden as exc:
            await _deny(send, 403, "Forbidden", str(exc))
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.inner(scope, receive, send)


async def _deny(
    send: Any, status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    extra = list(headers or [])
    if status == 401:
        extra.append((b"www-authenticate", b"Bearer"))
    await send_json_error(send, status, kind, message, extra)


def mount_mcp(app: Any, state: ServerState) -> None:
    """Serve MCP at /mcp on ``app`` and run its session manager for the app's lifetime."""
    from starlette.routing import Route

    mcp = InventoryMCP(state, _principal_from_request, grants=doors_of)
    # Every request needs a bearer token, which a DNS-rebinding page cannot have; the Host check would
    # only refuse legitimate names the server is reached by.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    manager = StreamableHTTPSessionManager(app=mcp.server, security_settings=security)
    app.router.routes.append(
        Route("/mcp", endpoint=BearerGate(StreamableHTTPASGIApp(manager), state), methods=["GET", "POST", "DELETE"])
    )
    inner_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        async with manager.run(), inner_lifespan(asgi_app) as value:
            yield value

    app.router.lifespan_context = lifespan


# --- stdio ---------------------------------------------------------------------------------------


def run_stdio(state: ServerState, principal: Principal) -> None:
    """``inventory mcp``: one session over stdin/stdout, every call as ``principal`` (the OS user).

    Stdio is the CLI by another door: the OS user may use every door the CLI gives them, whatever
    their groups; the policy, approvals and the audit log still decide and record, as for the CLI.
    """
    from mcp.server.stdio import stdio_server

    mcp = InventoryMCP(state, lambda _ctx: principal, grants=lambda _principal: EVERY_PERMISSION)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await mcp.server.run(read_stream, write_stream, mcp.server.create_initialization_options())

    anyio.run(main)
