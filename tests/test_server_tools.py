"""Tool calls, approvals and the audit log through the API, end to end against the loopback Kubernetes fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_support import Tokens, kubernetes_lab, make_tokens
from sqlalchemy import text

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from inventory.audit.log import AuditFilter, list_entries
from inventory.server import create_app
from inventory.storage.database import Database


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


@pytest.fixture
def tokens(db: Database) -> Tokens:
    return make_tokens(db)


@pytest.fixture
def client(db: Database, tmp_path: Path, cluster: MutableFakeKubernetes, tokens: Tokens) -> Iterator[TestClient]:
    runner, _config = kubernetes_lab(db, tmp_path, cluster)
    with TestClient(create_app(db, runner=runner, mcp=False, web=False)) as test_client:
        yield test_client


def test_tools_are_listed_with_annotations_from_their_class(client: TestClient, tokens: Tokens) -> None:
    tools = {t["name"]: t for t in client.get("/api/v1/tools", headers=tokens.header("viewer")).json()}
    assert tools["kubernetes.list_pods"]["annotations"] == {
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
    }
    assert tools["kubernetes.delete_namespace"]["annotations"]["destructiveHint"] is True
    assert tools["kubernetes.delete_namespace"]["class"] == "DESTRUCTIVE"


def test_a_call_runs_through_policy_and_audit_as_the_principal(
    client: TestClient, tokens: Tokens, cluster: MutableFakeKubernetes
) -> None:
    ran = client.post(
        "/api/v1/tools/kubernetes.restart_deployment/calls", json={"target": "web-0"}, headers=tokens.header("operator")
    )
    assert ran.status_code == 200, ran.text
    assert ran.json()["outcome"] == "success" and ran.json()["actor"] == "operator"
    (restart,) = cluster.mutations
    assert restart.path == "/apis/apps/v1/namespaces/app-000/deployments/web-0"
    entries = client.get(
        "/api/v1/audit", params={"tool": "kubernetes.restart_deployment"}, headers=tokens.header("approver")
    ).json()["items"]
    # Write-ahead: the intent is committed before the call runs, the outcome after, both as the token's principal.
    assert [(e["actor"], e["outcome"]) for e in entries] == [("operator", "started"), ("operator", "success")]
    assert entries[1]["details"]["intent_seq"] == entries[0]["seq"] and entries[0]["details"]["principal"] == "token"

    denied = client.post(
        "/api/v1/tools/kubernetes.delete_namespace/calls",
        json={"target": "source:lab", "arguments": {"namespace": "kube-system"}},
        headers=tokens.header("operator"),
    )
    assert denied.status_code == 403 and denied.json()["error"] == {
        "type": "PolicyDenied",
        "message": "denied by no-namespace-deletion-of-system",
    }
    bad_args = client.post(
        "/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-1", "arguments": {"replicas": "many"}},
        headers=tokens.header("operator"),
    )
    assert bad_args.status_code == 400 and "replicas" in bad_args.json()["error"]["message"]
    assert (
        client.post(
            "/api/v1/tools/kubernetes.restart_deployment/calls",
            json={"target": "web-0"},
            headers=tokens.header("viewer"),
        ).status_code
        == 403
    )
    assert len(cluster.mutations) == 1


def test_the_token_groups_reach_the_policy(
    client: TestClient, tokens: Tokens, cluster: MutableFakeKubernetes, db: Database
) -> None:
    # The shipped policy's agents-never-destroy names group:agents: the agent token's group, not its spelling.
    denied = client.post(
        "/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-0", "arguments": {"replicas": 0}},
        headers=tokens.header("agent"),
    )
    assert denied.status_code == 403 and denied.json()["error"] == {
        "type": "PolicyDenied",
        "message": "denied by agents-never-destroy",
    }
    # A body cannot name another actor: the principal is the token's holder.
    spoofed = client.post(
        "/api/v1/tools/kubernetes.restart_deployment/calls",
        json={"target": "web-0", "actor": "admin"},
        headers=tokens.header("agent"),
    )
    assert spoofed.status_code == 400 and cluster.mutations == []
    with db.session() as session:
        calls = list_entries(session, AuditFilter(event="tool_call"))
    assert [(e["actor"], e["outcome"], e["matched_rule"]) for e in calls] == [
        ("agent", "denied", "agents-never-destroy")
    ]


def test_a_destructive_call_waits_and_runs_once_when_approved(
    client: TestClient, tokens: Tokens, cluster: MutableFakeKubernetes, db: Database
) -> None:
    pending = client.post(
        "/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-0", "arguments": {"replicas": 0}},
        headers=tokens.header("operator"),
    )
    assert pending.status_code == 202 and pending.json()["outcome"] == "pending"
    approval_id = pending.json()["approval_id"]
    assert cluster.mutations == []
    queue = client.get("/api/v1/approvals", headers=tokens.header("viewer")).json()
    assert [(a["id"], a["requester"], a["status"]) for a in queue] == [(approval_id, "operator", "pending")]

    # An agent may call tools but not approve (its groups open no such door); the approver may.
    assert (
        client.post(
            f"/api/v1/approvals/{approval_id}", json={"decision": "approve"}, headers=tokens.header("agent")
        ).status_code
        == 403
    )
    approved = client.post(
        f"/api/v1/approvals/{approval_id}",
        json={"decision": "approve", "reason": "ok"},
        headers=tokens.header("approver"),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["outcome"] == "success" and approved.json()["approver"] == "approver"
    again = client.post(
        f"/api/v1/approvals/{approval_id}", json={"decision": "approve"}, headers=tokens.header("approver")
    )
    assert (
        again.status_code == 400
        and again.json()["error"]["message"] == f"approval {approval_id} is already approved (by approver)"
    )
    assert [m.body for m in cluster.mutations] == [{"spec": {"replicas": 0}}]

    # The requester cannot approve its own call, whatever its groups.
    own = client.post(
        "/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-1", "arguments": {"replicas": 0}},
        headers=tokens.header("admin"),
    ).json()
    refused = client.post(
        f"/api/v1/approvals/{own['approval_id']}", json={"decision": "approve"}, headers=tokens.header("admin")
    )
    assert refused.status_code == 403 and "cannot approve it" in refused.json()["error"]["message"]
    rejected = client.post(
        f"/api/v1/approvals/{own['approval_id']}",
        json={"decision": "reject", "reason": "no"},
        headers=tokens.header("approver"),
    )
    assert rejected.json()["outcome"] == "rejected" and len(cluster.mutations) == 1

    audit = client.get("/api/v1/audit", params={"limit": 2}, headers=tokens.header("approver")).json()
    walked = list(audit["items"])
    while audit["next_cursor"]:
        audit = client.get(
            "/api/v1/audit", params={"limit": 2, "cursor": audit["next_cursor"]}, headers=tokens.header("approver")
        ).json()
        walked += audit["items"]
    calls = [
        (e["event"], e["actor"], e["outcome"], e["approver"]) for e in walked if e["event"] in ("tool_call", "approval")
    ]
    assert calls == [
        ("tool_call", "operator", "pending", None),
        ("approval", "operator", "approved", "approver"),  # the write-ahead intent of the approved call
        ("tool_call", "operator", "success", "approver"),
        ("tool_call", "admin", "pending", None),
        ("approval", "admin", "rejected", "approver"),
    ]
    verified = client.get("/api/v1/audit/verify", headers=tokens.header("approver")).json()
    assert verified["ok"] is True and verified["checked"] == walked[-1]["seq"]
    # The server checks with its key, as `audit verify` does: an entry whose mac is wrong is found.
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET mac = :forged WHERE seq = 2"), {"forged": "0" * 64})
    forged = client.get("/api/v1/audit/verify", headers=tokens.header("approver")).json()
    assert forged["ok"] is False and forged["problem"]["seq"] == 2 and forged["problem"]["kind"] == "forged"


def test_the_notify_targets_are_told_when_an_approval_waits(
    db: Database, tmp_path: Path, cluster: MutableFakeKubernetes
) -> None:
    import json

    import httpx

    from inventory.notify import Notifier, NotifySettings

    received: list[dict[str, Any]] = []

    def webhook(request: httpx.Request) -> httpx.Response:  # the far side of the wire: the team's webhook
        received.append(json.loads(request.content))
        return httpx.Response(204)

    runner, _config = kubernetes_lab(db, tmp_path, cluster)
    settings = NotifySettings.model_validate(
        {"targets": [{"type": "webhook", "url": "https://hooks.example.net/inv", "events": ["approval_pending"]}]}
    )
    runner.notifier = Notifier(settings, transport=httpx.MockTransport(webhook))
    tokens = make_tokens(db)
    with TestClient(create_app(db, runner=runner, mcp=False, web=False)) as client:
        pending = client.post(
            "/api/v1/tools/kubernetes.scale_deployment/calls",
            json={"target": "web-0", "arguments": {"replicas": 0}},
            headers=tokens.header("operator"),
        ).json()
        assert pending["outcome"] == "pending"
        ran = client.post(
            "/api/v1/tools/kubernetes.restart_deployment/calls",
            json={"target": "web-1"},
            headers=tokens.header("operator"),
        )
        assert ran.json()["outcome"] == "success"
    (note,) = received  # the call that ran needed nobody
    assert note["event"] == "approval_pending" and note["details"]["approval_id"] == pending["approval_id"]
    title = f"inventory: approval {pending['approval_id']} waits (kubernetes.scale_deployment on {pending['target']})"
    assert note["title"] == title
    assert note["message"].startswith("operator asks to run kubernetes.scale_deployment (DESTRUCTIVE) on ")
    assert f"inventory approvals approve {pending['approval_id']}" in note["message"]
