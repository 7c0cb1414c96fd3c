"""The REST API through httpx against the real application, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from server_support import Tokens, lab_config, make_tokens, synced, write_lab

from inventory import queries
from inventory.config import Config
from inventory.connector import ConnectorRegistry
from inventory.locks import source_lock
from inventory.render import to_json
from inventory.server import create_app
from inventory.server.models import HostDetail, WorkloadOut
from inventory.server.refresh import Refresher
from inventory.storage.database import Database


@pytest.fixture
def lab(db: Database, tmp_path: Path) -> Config:
    config = lab_config(
        tmp_path, db.url, lab=write_lab(tmp_path / "lab.yaml"), extra=write_lab(tmp_path / "extra.yaml", hosts=2)
    )
    synced(db, config)
    return config


@pytest.fixture
def tokens(db: Database) -> Tokens:
    return make_tokens(db)


@pytest.fixture
def client(db: Database, lab: Config, tokens: Tokens) -> Iterator[TestClient]:
    refresher = Refresher(db, lab, ConnectorRegistry.discover())
    app = create_app(db, refresher=refresher, mcp=False, web=False)
    with TestClient(app) as test_client:
        yield test_client
    refresher.stop()


def cli_json(rows: object) -> object:
    return json.loads(to_json(rows))


def test_lists_are_the_cli_json_with_the_same_filters(client: TestClient, tokens: Tokens, db: Database) -> None:
    got = client.get(
        "/api/v1/inventory/workloads", params={"source": "lab", "status": "STOPPED"}, headers=tokens.header("viewer")
    )
    assert got.status_code == 200, got.text
    with db.session() as session:
        expected = queries.list_workloads(session, queries.ObjectFilter(source="lab", status="STOPPED"))
    assert got.json()["items"] == cli_json(expected) and len(expected) == 5
    [WorkloadOut.model_validate(row) for row in got.json()["items"]]

    by_label = client.get(
        "/api/v1/inventory/hosts", params={"label": "rack=a", "name": "node-*"}, headers=tokens.header("viewer")
    ).json()
    assert sorted(h["name"] for h in by_label["items"]) == ["node-1", "node-1", "node-3"]
    on_host = client.get(
        "/api/v1/inventory/workloads", params={"host": "node-4"}, headers=tokens.header("viewer")
    ).json()
    assert {w["name"] for w in on_host["items"]} == {"app-4-0", "app-4-1", "app-4-2"}


def test_show_has_links_and_changes_and_errors_have_the_cli_words(
    client: TestClient, tokens: Tokens, db: Database
) -> None:
    viewer = tokens.header("viewer")
    host = client.get("/api/v1/inventory/hosts", params={"source": "lab", "name": "node-0"}, headers=viewer).json()[
        "items"
    ][0]
    shown = client.get(f"/api/v1/inventory/hosts/{host['id']}", headers=viewer)
    assert shown.status_code == 200
    with db.session() as session:
        assert shown.json() == cli_json(queries.show_object(session, "host", str(host["id"])))
    assert [w["name"] for w in shown.json()["workloads"]] == ["app-0-0", "app-0-1", "app-0-2"]
    assert shown.json()["same_machine"][0]["source"] == "extra" and shown.json()["changes"][0]["action"] == "created"
    HostDetail.model_validate(shown.json())

    missing = client.get("/api/v1/inventory/hosts/nope", headers=viewer)
    assert missing.status_code == 404 and missing.json() == {
        "error": {"type": "NotFound", "message": "no host named 'nope'"}
    }
    ambiguous = client.get("/api/v1/inventory/hosts/node-1", headers=viewer)
    assert ambiguous.status_code == 409 and "2 hosts are named 'node-1'" in ambiguous.json()["error"]["message"]
    picked = client.get("/api/v1/inventory/hosts/node-1", params={"source": "extra"}, headers=viewer)
    assert picked.status_code == 200 and picked.json()["source"] == "extra"
    bad_label = client.get("/api/v1/inventory/hosts", params={"label": "rack!"}, headers=viewer)
    assert bad_label.status_code == 400
    assert bad_label.json()["error"]["message"].startswith("invalid label selector 'rack!'")
    service = client.get("/api/v1/inventory/services/web", headers=viewer)
    assert service.status_code == 409  # both sources declare "web"
    assert (
        client.get("/api/v1/inventory/services/lab/service/web", headers=viewer).json()["members"][0]["name"]
        == "app-0-0"
    )


def test_cursor_pagination_walks_every_row_once(client: TestClient, tokens: Tokens, db: Database) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/inventory/workloads", params=params, headers=tokens.header("viewer")).json()
        seen += [w["id"] for w in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    with db.session() as session:
        assert seen == [w["id"] for w in queries.list_workloads(session)]  # same order as the CLI, 21 rows
    assert pages == 6
    other_filter = client.get(
        "/api/v1/inventory/workloads",
        params={"limit": 4, "source": "lab", "cursor": page_cursor(client, tokens)},
        headers=tokens.header("viewer"),
    )
    assert other_filter.status_code == 400 and "other filters" in other_filter.json()["error"]["message"]
    garbled = client.get("/api/v1/inventory/workloads", params={"cursor": "%%%"}, headers=tokens.header("viewer"))
    assert garbled.status_code == 400
    too_big = client.get("/api/v1/inventory/workloads", params={"limit": 1001}, headers=tokens.header("viewer"))
    assert too_big.status_code == 400 and too_big.json()["error"]["type"] == "UsageError"


def page_cursor(client: TestClient, tokens: Tokens) -> str:
    cursor: str = client.get(
        "/api/v1/inventory/workloads", params={"limit": 4}, headers=tokens.header("viewer")
    ).json()["next_cursor"]
    return cursor


def test_inventory_sources_changes_and_health(client: TestClient, tokens: Tokens) -> None:
    viewer = tokens.header("viewer")
    counts = client.get("/api/v1/inventory", headers=viewer).json()
    assert counts["totals"] == {"hosts": 7, "workloads": 21, "services": 2}
    assert {s["name"]: s["last_status"] for s in counts["sources"]} == {"extra": "success", "lab": "success"}
    assert [s["name"] for s in client.get("/api/v1/sources", headers=viewer).json()] == ["extra", "lab"]
    changes = client.get("/api/v1/changes", params={"source": "lab", "type": "host", "limit": 2}, headers=viewer).json()
    assert [c["action"] for c in changes["items"]] == ["created", "created"] and changes["next_cursor"]
    bad_since = client.get("/api/v1/changes", params={"since": "yesterday-ish"}, headers=viewer)
    assert bad_since.status_code == 400

    anonymous = client.get("/health")  # no token needed: the status and nothing else
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}, anonymous.text
    health = client.get("/health", headers=viewer)
    assert health.status_code == 200, health.text
    report = health.json()
    assert report["status"] == "ok" and report["database"]["reachable"] and report["database"]["revision"]
    assert {s["name"] for s in report["sources"]} == {"extra", "lab"}


def test_without_a_valid_token_401_and_without_the_group_403(client: TestClient, tokens: Tokens) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {tokens.by_name['viewer']}"},
        {"Authorization": "Bearer "},
    ):
        response = client.get("/api/v1/inventory/hosts", headers=headers)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    # A token in the query string is never accepted (it would land in access logs).
    assert (
        client.get(
            "/api/v1/inventory/hosts",
            params={"token": tokens.by_name["viewer"], "access_token": tokens.by_name["viewer"]},
        ).status_code
        == 401
    )
    nobody = client.get("/api/v1/inventory/hosts", headers=tokens.header("nobody"))
    assert (
        nobody.status_code == 403
        and nobody.json()["error"]["message"] == "nobody may not read: none of its groups grants it"
    )
    assert client.post("/api/v1/inventory/refresh", headers=tokens.header("viewer")).status_code == 403
    assert client.get("/api/v1/audit", headers=tokens.header("operator")).status_code == 403
    assert (
        client.post("/api/v1/approvals/1", json={"decision": "approve"}, headers=tokens.header("operator")).status_code
        == 403
    )


def wait_done(client: TestClient, tokens: Tokens, refresh_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row: dict[str, Any] = client.get(
            f"/api/v1/inventory/refresh/{refresh_id}", headers=tokens.header("viewer")
        ).json()
        if row["status"] == "done":
            return row
        time.sleep(0.05)
    raise AssertionError(f"refresh {refresh_id} did not finish")


def test_refresh_runs_sources_under_their_locks(client: TestClient, tokens: Tokens, db: Database) -> None:
    started = client.post("/api/v1/inventory/refresh", json={"sources": ["lab"]}, headers=tokens.header("operator"))
    assert started.status_code == 202 and started.headers["Location"].endswith(started.json()["id"])
    done = wait_done(client, tokens, started.json()["id"])
    assert [(s["source"], s["status"]) for s in done["sources"]] == [("lab", "success")]
    assert isinstance(done["sources"][0]["run_id"], int) and done["requested_by"] == "operator"

    # While another process holds a source's lock, the refresh does not sync it.
    with source_lock(db, "extra"):
        held = client.post("/api/v1/inventory/refresh", headers=tokens.header("operator")).json()
        outcomes = {o["source"]: o for o in wait_done(client, tokens, held["id"])["sources"]}
    assert outcomes["extra"]["status"] == "locked" and outcomes["lab"]["status"] == "success"

    unknown = client.post("/api/v1/inventory/refresh", json={"sources": ["nope"]}, headers=tokens.header("operator"))
    assert unknown.status_code == 400 and "no source named 'nope'" in unknown.json()["error"]["message"]
    assert client.get("/api/v1/inventory/refresh/nope", headers=tokens.header("viewer")).status_code == 404


def test_openapi_document_is_served(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert {
        "/api/v1/inventory/hosts",
        "/api/v1/inventory/hosts/{ident}",
        "/api/v1/tools/{name}/calls",
        "/health",
    } <= set(paths)


def test_the_config_adds_groups_to_a_token_name_and_revoking_takes_effect_at_once(db: Database, lab: Config) -> None:
    from server_support import TOKEN_ISSUER

    from inventory.principals import PrincipalSettings
    from inventory.server.auth import TokenAuthenticator
    from inventory.tokens import create_token, revoke_token

    token = create_token(db, "Carol", by=TOKEN_ISSUER)  # no group of its own
    header = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(db, mcp=False, web=False)) as bare:
        assert bare.get("/api/v1/inventory/hosts", headers=header).status_code == 403
    configured = TokenAuthenticator(db, PrincipalSettings(users={"carol": ["viewers"]}))  # names compare case-folded
    with TestClient(create_app(db, authenticator=configured, mcp=False, web=False)) as client:
        assert client.get("/api/v1/inventory/hosts", headers=header).status_code == 200
        assert client.post("/api/v1/inventory/refresh", headers=header).status_code == 403
        revoke_token(db, "carol", by=TOKEN_ISSUER)
        assert client.get("/api/v1/inventory/hosts", headers=header).status_code == 401


def test_prometheus_http_sd_is_the_export_document(db: Database, tmp_path: Path, tokens: Tokens) -> None:
    from inventory.exports.prometheus import target_groups

    lab = tmp_path / "sd.yaml"
    lab.write_text(
        yaml.safe_dump(
            {
                "hosts": [
                    {"id": "a", "name": "nas", "kind": "nas", "addresses": ["192.168.1.10"], "labels": {"rack": "a"}},
                    {"id": "b", "name": "pi", "kind": "sbc", "addresses": ["fd00::5"]},
                    {"id": "c", "name": "nowhere"},
                ]
            }
        ),
        encoding="utf-8",
    )
    synced(db, lab_config(tmp_path, db.url, sd=lab))
    with TestClient(create_app(db, mcp=False, web=False)) as client:
        got = client.get("/api/v1/sd/prometheus", params={"port": 9256}, headers=tokens.header("viewer"))
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
        with db.session() as session:
            assert got.json() == target_groups(session, port=9256)
        assert [g["targets"] for g in got.json()] == [["192.168.1.10:9256"], ["[fd00::5]:9256"]]
        only_nas = client.get("/api/v1/sd/prometheus", params={"kind": "nas"}, headers=tokens.header("viewer")).json()
        assert [g["labels"]["name"] for g in only_nas] == ["nas"] and only_nas[0]["labels"]["label_rack"] == "a"
        bad_port = client.get("/api/v1/sd/prometheus", params={"port": 0}, headers=tokens.header("viewer"))
        assert bad_port.status_code == 400 and bad_port.json()["error"]["message"] == "--port must be 1-65535, got 0"
        assert client.get("/api/v1/sd/prometheus").status_code == 401
        assert client.get("/api/v1/sd/prometheus", headers=tokens.header("nobody")).status_code == 403
