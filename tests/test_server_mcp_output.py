"""What MCP tools answer, through the SDK's own client: compact rows, ``fields``, ISO 8601 times, the declared
output schemas, failed runs with their error, and tools a deny rule always refuses left out of the list."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jsonschema  # type: ignore[import-untyped]  # no stubs installed; only its validators are used
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent
from server_support import Tokens, kubernetes_lab, make_tokens

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from inventory.audit.log import AuditFilter, list_entries
from inventory.policy.engine import always_denied_by
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import parse_policy
from inventory.principals import Principal
from inventory.server import create_app
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


@pytest.fixture
def served(db: Database, tmp_path: Path, cluster: MutableFakeKubernetes) -> Iterator[tuple[str, Tokens]]:
    runner, _config = kubernetes_lab(db, tmp_path, cluster)
    tokens = make_tokens(db)
    with BackgroundServer(create_app(db, runner=runner, web=False)) as server:
        yield server.url, tokens


def client_of(url: str, tokens: Tokens, who: str) -> Client:
    http = httpx2.AsyncClient(headers=tokens.header(who), timeout=30)
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


def text_of(result: Any) -> str:
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


def is_iso(text: str) -> bool:
    return "T" in text and datetime.fromisoformat(text).tzinfo is not None


def test_rows_are_compact_unless_fields_asks_and_times_are_iso_8601(served: tuple[str, Tokens]) -> None:
    url, tokens = served

    async def session() -> None:
        async with client_of(url, tokens, "viewer") as client:
            compact = await client.call_tool("inventory_search_workloads", {"kind": "pod"})
            rows = compact.structured_content["items"]
            assert len(rows) == compact.structured_content["total"] == 12
            assert compact.structured_content["next_cursor"] is None
            assert all(list(row) == ["id", "source", "kind", "namespace", "name", "status", "host"] for row in rows)
            # The text is the same document (for clients without structured content).
            assert json.loads(text_of(compact)) == compact.structured_content

            chosen = await client.call_tool("inventory_search_hosts", {"fields": ["name", "addresses", "changed_at"]})
            hosts = chosen.structured_content["items"]
            assert [list(h) for h in hosts] == [["name", "addresses", "changed_at"]] * 2
            assert all(is_iso(h["changed_at"]) for h in hosts)
            assert '"changed_at":"20' in text_of(chosen) and "+00:00" in text_of(chosen)

            everything = await client.call_tool("inventory_search_services", {"fields": "*", "limit": 1})
            (service,) = everything.structured_content["items"]
            assert {"labels", "attributes", "external_id", "first_seen_at"} <= set(service)
            assert is_iso(service["first_seen_at"]) and everything.structured_content["next_cursor"]
            # Comma-separated as on REST, or a list: the same rows.
            as_text = await client.call_tool("inventory_search_hosts", {"fields": "name,addresses,changed_at"})
            assert as_text.structured_content == chosen.structured_content

            unknown = await client.call_tool("inventory_search_workloads", {"fields": ["name", "nmespace", "ip"]})
            assert unknown.is_error and unknown.structured_content["error"]["type"] == "UsageError"
            assert "unknown field(s) nmespace, ip (fields: id," in unknown.structured_content["error"]["message"]

            changes = await client.call_tool("inventory_recent_changes", {})
            first = changes.structured_content["items"][0]
            assert list(first) == [
                *("id", "at", "source", "action", "object_type", "kind", "namespace", "name", "fields", "by")
            ]
            assert is_iso(first["at"]) and first["action"] == "created"
            full = await client.call_tool("inventory_recent_changes", {"fields": ["*"], "limit": 1})
            assert "cause" in full.structured_content["items"][0] and is_iso(full.structured_content["items"][0]["at"])

    asyncio.run(session())


def test_every_tool_answers_what_its_output_schema_declares(served: tuple[str, Tokens]) -> None:
    url, tokens = served

    async def session() -> None:
        async with client_of(url, tokens, "operator") as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert all(tool.output_schema for tool in listed.values()), [
                n for n, t in listed.items() if not t.output_schema
            ]
            pending = await client.call_tool("kubernetes_scale_deployment", {"target": "web-0", "replicas": 0})
            calls: dict[str, dict[str, Any]] = {
                "inventory_search_hosts": {},
                "inventory_search_workloads": {"fields": ["*"]},
                "inventory_search_services": {},
                "inventory_show": {"type": "workload", "ident": "db-0"},
                "inventory_recent_changes": {"fields": ["*"]},
                "inventory_sources_health": {},
                "inventory_impact": {"target": "workload:web-0"},
                "inventory_approval_status": {"approval_id": pending.structured_content["approval_id"]},
                "kubernetes_list_pods": {"target": "lab", "namespace": "app-000"},
            }
            answers = {name: await client.call_tool(name, arguments) for name, arguments in calls.items()}
            answers["kubernetes_scale_deployment"] = pending
            for name, answer in answers.items():
                assert not answer.is_error, (name, answer.content)
                schema = listed[name].output_schema
                jsonschema.Draft202012Validator.check_schema(schema)
                jsonschema.validate(answer.structured_content, schema)
            # A schema that would not hold them is refused: the check above can fail.
            bad = {**answers["inventory_search_hosts"].structured_content, "total": "many"}
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, listed["inventory_search_hosts"].output_schema)

    asyncio.run(session())


def test_an_approved_call_that_failed_says_why(served: tuple[str, Tokens]) -> None:
    url, tokens = served

    async def request() -> dict[str, Any]:
        async with client_of(url, tokens, "operator") as client:
            pending = await client.call_tool("kubernetes_delete_namespace", {"target": "lab", "namespace": "ghost"})
            assert not pending.is_error, pending.content
            waiting = await client.call_tool(
                "inventory_approval_status", {"approval_id": pending.structured_content["approval_id"]}
            )
            assert waiting.structured_content["status"] == "pending" and waiting.structured_content["run"] is None
            return pending.structured_content

    pending = asyncio.run(request())
    approved = httpx.post(
        f"{url}/api/v1/approvals/{pending['approval_id']}",
        json={"decision": "approve"},
        headers=tokens.header("approver"),
    )
    assert approved.status_code >= 400  # the namespace does not exist: the run failed

    async def poll() -> dict[str, Any]:
        async with client_of(url, tokens, "operator") as client:
            status = await client.call_tool("inventory_approval_status", {"approval_id": pending["approval_id"]})
            return dict(status.structured_content)

    status = asyncio.run(poll())
    assert (status["status"], status["outcome"], status["run"]["outcome"]) == ("approved", "failed", "failed")
    assert status["run"]["error"].endswith("delete namespace failed: HTTP 404 Not Found")
    assert is_iso(status["run"]["at"])


def test_a_call_that_failed_says_why_and_is_audited(
    served: tuple[str, Tokens], db: Database, cluster: MutableFakeKubernetes
) -> None:
    url, tokens = served

    async def as_operator() -> Any:
        async with client_of(url, tokens, "operator") as client:
            found = await client.call_tool("inventory_search_workloads", {"kind": "pod", "limit": 1})
            (pod,) = found.structured_content["items"]
            target = {"target": pod["name"]}
            read = await client.call_tool("kubernetes_pod_logs", target)
            assert not read.is_error and read.structured_content["outcome"] == "success", read.content
            cluster.mutate("pods", pod["name"], pod["namespace"], None)  # gone at the source, not yet synced
            return pod, await client.call_tool("kubernetes_pod_logs", target)

    pod, failed = asyncio.run(as_operator())
    assert failed.is_error and failed.structured_content["error"]["type"] == "ToolFailed"
    assert failed.structured_content["error"]["message"].endswith("read logs failed: HTTP 404 Not Found")
    with db.session() as session:
        entries = list_entries(session, AuditFilter(event="tool_call", tool="kubernetes.pod_logs"))
    assert [e["outcome"] for e in entries] == ["started", "success", "started", "failed"]  # intent, then outcome
    entry = entries[-1]
    assert (entry["outcome"], entry["target_name"]) == ("failed", pod["name"])
    assert entry["error"] == failed.structured_content["error"]["message"]


POLICY = """
version: 1
groups: {agents: ["bot-*"]}
rules:
  - {name: agents-never-destroy, effect: deny, match: {actors: ["group:agents"], classes: [DESTRUCTIVE]}}
  - {name: no-pod-deletes-for-carol, effect: deny, match: {actors: [carol], tools: ["kubernetes.delete_pod"]}}
  - {name: only-in-prod, effect: deny, match: {actors: [dave], sources: ["prod-*"]}}
  - {name: not-system, effect: deny, match: {actors: [erin], target: {namespaces: ["kube-*"]}}}
  - {name: changes-of-frank, effect: deny, match: {actors: [frank], classes: [SAFE_MUTATE]}}
"""


@pytest.mark.parametrize(
    ("principal", "hidden"),
    [
        (Principal("bot-1"), {"kubernetes.delete_namespace"}),  # by its policy group
        (Principal("tok", groups=frozenset({"agents"})), {"kubernetes.delete_namespace"}),  # by its token's group
        (Principal("carol"), {"kubernetes.delete_pod"}),
        (Principal("dave"), set()),  # denied on some sources only
        (Principal("erin"), set()),  # denied on some targets only
        # SAFE_MUTATE tools may still be raised to DESTRUCTIVE, which the rule does not deny.
        (Principal("frank"), set()),
        (Principal("alice"), set()),
    ],
)
def test_a_tool_is_hidden_only_when_a_deny_rule_refuses_every_call_of_it(
    principal: Principal, hidden: set[str]
) -> None:
    tools = ToolRegistry.discover()
    policy = parse_policy(POLICY.encode(), known_tools=tools.names())
    denied = {spec.name for spec in tools if always_denied_by(policy, principal, spec)}
    assert {name for name in denied if name.startswith("kubernetes.")} == hidden
