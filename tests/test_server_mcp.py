"""MCP with the SDK's own client, over Streamable HTTP (a real uvicorn on loopback) and over stdio (a real process)."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from policy_support import apply_policy
from server_support import PROJECT_ROOT, Tokens, kubernetes_lab, make_tokens
from sync_support import child_env

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from inventory.audit.log import AuditFilter, list_entries
from inventory.impact import impact as impact_of
from inventory.query_params import LIST_QUERIES
from inventory.server import create_app
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


def iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def annotations_of(listed: Any) -> dict[str, Any]:
    return {tool.name: tool.annotations for tool in listed.tools}


def tool_calls(db: Database) -> list[tuple[str, str, str | None]]:
    with db.session() as session:
        return [(e["actor"], e["outcome"], e["tool"]) for e in list_entries(session, AuditFilter(event="tool_call"))]


@pytest.fixture
def served(db: Database, tmp_path: Path, cluster: MutableFakeKubernetes) -> Iterator[tuple[str, Tokens]]:
    runner, _config = kubernetes_lab(db, tmp_path, cluster)
    tokens = make_tokens(db)
    with BackgroundServer(create_app(db, runner=runner, web=False)) as server:
        yield server.url, tokens


def mcp_client(url: str, tokens: Tokens, who: str) -> Client:
    http = httpx2.AsyncClient(headers=tokens.header(who), timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def test_streamable_http_lists_calls_and_holds_destructive_calls_for_approval(
    served: tuple[str, Tokens], db: Database, cluster: MutableFakeKubernetes
) -> None:
    url, tokens = served

    async def as_agent() -> dict[str, Any]:
        async with mcp_client(url, tokens, "agent") as client:
            assert client.server_info is not None and client.server_info.name == "inventory"
            hints = annotations_of(await client.list_tools())
            assert hints["inventory_search_workloads"].read_only_hint is True
            assert (
                hints["kubernetes_list_pods"].read_only_hint is True
                and hints["kubernetes_list_pods"].idempotent_hint is True
            )
            # The policy denies group:agents every DESTRUCTIVE call, and delete_namespace is never less: not listed.
            assert "kubernetes_delete_namespace" not in hints and "kubernetes_scale_deployment" in hints

            pods = await client.call_tool(
                "inventory_search_workloads", {"kind": "pod", "namespace": "app-000", "limit": 3}
            )
            assert not pods.is_error and [p["namespace"] for p in pods.structured_content["items"]] == ["app-000"] * 3
            # The REST page, from the same declaration: cursor, total, and the parameters' one schema.
            more = await client.call_tool(
                "inventory_search_workloads",
                {"kind": "pod", "namespace": "app-000", "limit": 3, "cursor": pods.structured_content["next_cursor"]},
            )
            assert not more.is_error, more.content
            first_ids = {p["id"] for p in pods.structured_content["items"]}
            assert first_ids.isdisjoint(p["id"] for p in more.structured_content["items"])
            assert more.structured_content["total"] == pods.structured_content["total"] >= 4
            schemas = {tool.name: tool.input_schema for tool in (await client.list_tools()).tools}
            assert set(schemas["inventory_search_workloads"]["properties"]) == {
                p.name for p in LIST_QUERIES["workloads"].api_params
            }
            wrong = await client.call_tool("inventory_search_hosts", {"stauts": "Ready"})
            assert wrong.is_error and "stauts" in wrong.structured_content["error"]["message"]
            shown = await client.call_tool("inventory_show", {"type": "workload", "ident": "db-0"})
            assert shown.structured_content["name"] == "db-0" and "changes" in shown.structured_content
            assert hints["inventory_impact"].read_only_hint is True
            impact = await client.call_tool("inventory_impact", {"target": "workload:web-0"})
            assert not impact.is_error, impact.content
            with db.session() as session:
                expected = json.loads(json.dumps(impact_of(session, "workload:web-0").as_dict(), default=iso))
            assert impact.structured_content == expected and expected["workloads"]  # the deployment's pods
            unknown = await client.call_tool("inventory_impact", {"target": "workload:nope"})
            assert unknown.is_error and unknown.structured_content["error"]["type"] == "NotFound"

            # The token's group is the policy's group:agents, which may never destroy.
            denied = await client.call_tool("kubernetes_scale_deployment", {"target": "web-0", "replicas": 0})
            assert denied.is_error and denied.structured_content["error"] == {
                "type": "PolicyDenied",
                "message": "denied by agents-never-destroy",
            }

        async with mcp_client(url, tokens, "operator") as client:
            hints = annotations_of(await client.list_tools())
            assert (
                hints["kubernetes_delete_namespace"].destructive_hint is True
                and hints["kubernetes_delete_namespace"].read_only_hint is False
            )
            pending = await client.call_tool("kubernetes_scale_deployment", {"target": "web-0", "replicas": 0})
            assert not pending.is_error, pending.content
            result: dict[str, Any] = pending.structured_content
            assert result["outcome"] == "pending" and result["message"].startswith(
                f"pending approval {result['approval_id']}:"
            )
            return result

    pending = asyncio.run(as_agent())
    assert cluster.mutations == []  # not executed
    assert tool_calls(db) == [  # audited as the tokens' principals
        ("agent", "denied", "kubernetes.scale_deployment"),
        ("operator", "pending", "kubernetes.scale_deployment"),
    ]

    approved = httpx.post(
        f"{url}/api/v1/approvals/{pending['approval_id']}",
        json={"decision": "approve"},
        headers=tokens.header("approver"),
    )
    assert approved.status_code == 200 and approved.json()["outcome"] == "success"
    assert [m.body for m in cluster.mutations] == [{"spec": {"replicas": 0}}]  # ran once

    async def poll() -> Any:
        async with mcp_client(url, tokens, "operator") as client:
            return (
                await client.call_tool("inventory_approval_status", {"approval_id": pending["approval_id"]})
            ).structured_content

    status = asyncio.run(poll())
    assert (status["status"], status["outcome"], status["decided_by"]) == ("approved", "success", "approver")
    assert (status["run"]["outcome"], status["run"]["error"]) == ("success", None) and status["run"]["summary"]
    assert len(cluster.mutations) == 1


def test_a_principal_is_refused_at_call_time_whatever_it_listed(
    served: tuple[str, Tokens], db: Database, cluster: MutableFakeKubernetes
) -> None:
    url, tokens = served

    async def as_viewer() -> None:
        async with mcp_client(url, tokens, "viewer") as client:
            names = set(annotations_of(await client.list_tools()))
            assert "inventory_search_hosts" in names and "kubernetes_restart_deployment" not in names
            refused = await client.call_tool("kubernetes_restart_deployment", {"target": "web-0"})
            assert (
                refused.is_error
                and refused.structured_content["error"]["message"]
                == "viewer may not call: none of its groups grants it"
            )

    asyncio.run(as_viewer())
    assert cluster.mutations == [] and tool_calls(db) == []
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
        assert response.status_code == 401
    nobody = httpx.post(
        f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=tokens.header("nobody")
    )
    assert nobody.status_code == 403


def test_stdio_acts_as_the_os_user(db: Database, tmp_path: Path, cluster: MutableFakeKubernetes) -> None:
    kubernetes_lab(db, tmp_path, cluster)
    config = tmp_path / "inventory.yaml"
    source = {
        "type": "kubernetes",
        "name": "lab",
        "kubeconfig": str(tmp_path / "kubeconfig"),
        "context": "lab",
        "timeout": 5,
    }
    config.write_text(yaml.safe_dump({"database": {"url": db.url}, "sources": [source]}), encoding="utf-8")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "inventory", "-c", str(config), "mcp"],
        env=child_env(),
        cwd=str(PROJECT_ROOT),
    )

    async def session() -> tuple[Any, Any]:
        async with Client(params) as client:
            names = annotations_of(await client.list_tools())
            assert (
                names["kubernetes_delete_pod"].destructive_hint is False
                and names["inventory_sources_health"].read_only_hint
            )
            health = await client.call_tool("inventory_sources_health", {})
            pending = await client.call_tool("kubernetes_scale_deployment", {"target": "web-1", "replicas": 0})
            return health.structured_content, pending.structured_content

    health, pending = asyncio.run(session())
    assert [(s["name"], s["last_status"]) for s in health["items"]] == [("lab", "success")]
    assert pending["outcome"] == "pending" and pending["actor"] == getpass.getuser()
    assert cluster.mutations == [] and tool_calls(db) == [(getpass.getuser(), "pending", "kubernetes.scale_deployment")]


def test_stdio_principal_has_the_groups_the_applied_policy_gives_the_os_user(
    db: Database, tmp_path: Path, cluster: MutableFakeKubernetes
) -> None:
    kubernetes_lab(db, tmp_path, cluster)
    config = tmp_path / "inventory.yaml"
    source = {"type": "kubernetes", "name": "lab", "kubeconfig": str(tmp_path / "kubeconfig"), "context": "lab"}
    document = {"database": {"url": db.url}, "sources": [source]}
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    policy = (PROJECT_ROOT / "config" / "policy.yaml").read_text()
    apply_policy(config, policy + f"principals: {{users: {{{getpass.getuser()}: [agents, admins]}}}}\n")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "inventory", "-c", str(config), "mcp"], env=child_env(), cwd=str(tmp_path)
    )

    async def session() -> Any:
        async with Client(params) as client:
            return await client.call_tool("kubernetes_scale_deployment", {"target": "web-1", "replicas": 0})

    denied = asyncio.run(session())
    # The OS user is in group agents by the applied policy: its agents-never-destroy applies to them.
    assert denied.is_error and denied.structured_content["error"]["message"] == "denied by agents-never-destroy"
    assert cluster.mutations == [] and tool_calls(db) == [(getpass.getuser(), "denied", "kubernetes.scale_deployment")]


def rpc(url: str, token: str, body: dict[str, Any], session: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    if session:
        headers.update({"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-06-18"})
    return httpx.post(f"{url}/mcp", json=body, headers=headers, timeout=30)


def rpc_result(response: httpx.Response) -> Any:
    """The JSON-RPC message of a response, whether sent as JSON or as one server-sent event."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[len("data:") :].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def test_a_session_opened_with_one_token_cannot_call_with_another(
    served: tuple[str, Tokens], db: Database, cluster: MutableFakeKubernetes
) -> None:
    url, tokens = served
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "attack", "version": "1"}}
    opened = rpc(url, tokens.by_name["agent"], {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
    session = opened.headers["mcp-session-id"]
    rpc(url, tokens.by_name["agent"], {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    call = {"name": "kubernetes_restart_deployment", "arguments": {"target": "web-0"}}
    # The agent's session, a viewer's token: the call is judged by the token of this request.
    hijacked = rpc_result(
        rpc(url, tokens.by_name["viewer"], {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, session)
    )
    assert hijacked["result"]["isError"] is True
    assert (
        hijacked["result"]["structuredContent"]["error"]["message"]
        == "viewer may not call: none of its groups grants it"
    )
    assert (
        rpc(url, "stolen-session-no-token", {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, session).status_code
        == 401
    )
    assert cluster.mutations == [] and tool_calls(db) == []
