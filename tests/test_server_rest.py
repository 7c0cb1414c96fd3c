"""REST that scripts can rely on: sort=, totals, keyset cursors under a writing sync, unknown parameters,
one error shape (404, 405, 500, 503), the OpenAPI document checked against every answer, offline docs.

Through httpx (Starlette's TestClient) against the real application, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from fastapi.testclient import TestClient
from server_support import Tokens, lab_config, make_tokens, synced, write_lab

from inventory import queries
from inventory.config import Config
from inventory.connector import ConnectorRegistry
from inventory.principals import Principal
from inventory.query_params import LIST_QUERIES
from inventory.server import create_app
from inventory.server.refresh import Refresher
from inventory.storage.database import Database


@pytest.fixture
def lab(db: Database, tmp_path: Path) -> Config:
    config = lab_config(tmp_path, db.url, lab=write_lab(tmp_path / "lab.yaml", hosts=6, pods_per_host=4))
    synced(db, config)
    return config


@pytest.fixture
def tokens(db: Database) -> Tokens:
    return make_tokens(db)


@pytest.fixture
def client(db: Database, lab: Config) -> Iterator[TestClient]:
    refresher = Refresher(db, lab, ConnectorRegistry.discover())
    with TestClient(create_app(db, refresher=refresher, mcp=False, web=False)) as test_client:
        yield test_client
    refresher.stop()


@pytest.fixture
def bare_client(migrated_sqlite_url: str) -> Iterator[TestClient]:
    """An app over an empty SQLite database: for what does not depend on the engine (routes, docs)."""
    from inventory.storage.database import open_database

    db = open_database(migrated_sqlite_url, migrate=True)
    with TestClient(create_app(db, mcp=False, web=False)) as test_client:
        yield test_client
    db.dispose()


def walk(client: TestClient, headers: dict[str, str], path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        answer = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return pages


def test_sort_total_fields_and_unknown_parameters(client: TestClient, tokens: Tokens) -> None:
    viewer = tokens.header("viewer")
    page = client.get("/api/v1/inventory/workloads", params={"sort": "-name,status", "limit": 5}, headers=viewer).json()
    assert page["total"] == 24 and len(page["items"]) == 5
    names = [w["name"] for pages in walk(client, viewer, "/api/v1/inventory/workloads", sort="-name") for w in pages]
    assert names == sorted(names, reverse=True) and len(names) == 24
    by_status = walk(client, viewer, "/api/v1/inventory/workloads", sort="status,-id", limit=7)
    rows = [w for p in by_status for w in p]
    assert [(w["status"], -w["id"]) for w in rows] == sorted((w["status"], -w["id"]) for w in rows)
    stopped = client.get("/api/v1/inventory/workloads", params={"status": "stopped", "limit": 2}, headers=viewer)
    assert stopped.json()["total"] == 6 and stopped.json()["next_cursor"]
    of_lab = client.get("/api/v1/inventory/workloads", params={"source": "lab", "limit": 1}, headers=viewer).json()
    assert of_lab["total"] == 24
    lab_changes = client.get("/api/v1/changes", params={"source": "lab", "limit": 1}, headers=viewer).json()
    assert lab_changes["total"] == 6 + 24 + 1  # every object's creation
    narrow = client.get("/api/v1/inventory/hosts", params={"fields": "id,name", "limit": 2}, headers=viewer).json()
    assert [set(h) for h in narrow["items"]] == [{"id", "name"}] * 2

    unknown_sort = client.get("/api/v1/inventory/hosts", params={"sort": "labels"}, headers=viewer)
    assert unknown_sort.status_code == 400
    assert unknown_sort.json()["error"]["message"].startswith("cannot sort by 'labels' (sortable: id, source")
    unknown_field = client.get("/api/v1/inventory/hosts", params={"fields": "id,nope"}, headers=viewer)
    assert unknown_field.status_code == 400 and "nope" in unknown_field.json()["error"]["message"]
    # A cursor holds its order: another sort= with it is refused.
    cursor = page["next_cursor"]
    other = client.get("/api/v1/inventory/workloads", params={"sort": "name", "cursor": cursor}, headers=viewer)
    assert other.status_code == 400 and "another order" in other.json()["error"]["message"]
    changes = client.get("/api/v1/changes", params={"sort": "-at", "limit": 3, "type": "host"}, headers=viewer).json()
    assert changes["total"] == 6 and [c["object_type"] for c in changes["items"]] == ["host"] * 3

    # Unknown query parameters are refused by name, on every route.
    for path in ("/api/v1/inventory/hosts", "/api/v1/inventory/hosts/node-1", "/api/v1/sources", "/health"):
        answer = client.get(path, params={"stauts": "running", "limit": 5 if "hosts" in path else None}, headers=viewer)
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["error"]["type"] == "UsageError" and "stauts" in answer.json()["error"]["message"]
    # Without a token the caller hears of the token first, never of the parameters.
    assert client.get("/api/v1/inventory/hosts", params={"stauts": "x"}).status_code == 401


def test_keyset_pages_do_not_shift_while_a_sync_writes(
    client: TestClient, tokens: Tokens, db: Database, lab: Config, tmp_path: Path
) -> None:
    viewer = tokens.header("viewer")
    first = client.get("/api/v1/inventory/workloads", params={"limit": 10, "sort": "name"}, headers=viewer).json()
    last_seen = first["items"][-1]["name"]
    # A sync adds workloads that sort before the page already read and after it, and updates some.
    path = tmp_path / "lab.yaml"
    data = yaml.safe_load(path.read_text())
    data["workloads"] += [{"id": f"new-{i}", "name": f"aaa-new-{i}", "host": "h0"} for i in range(5)]
    data["workloads"] += [{"id": "late", "name": "zzz-late", "host": "h1"}]
    for workload in data["workloads"][:12]:
        workload["status"] = "failed"
    path.write_text(yaml.safe_dump(data))
    synced(db, lab)

    rest = walk(client, viewer, "/api/v1/inventory/workloads", limit=10, sort="name", cursor=first["next_cursor"])
    following = [w["name"] for page in rest for w in page]
    with db.session() as session:
        now = [
            w["name"] for w in queries.list_workloads(session, queries.ObjectFilter(sort=(queries.SortKey("name"),)))
        ]
    # The next page starts right after the last row read, whatever was written before it; nothing twice.
    assert following == now[now.index(last_seen) + 1 :]
    assert not {w["name"] for w in first["items"]} & set(following)
    assert "zzz-late" in following and not any(n.startswith("aaa-new") for n in following)
    # With offsets, the five rows written before the cursor would have been read again.
    assert now[10:15] != following[:5]


def test_impact_report_and_status_are_the_cli_documents(client: TestClient, tokens: Tokens, db: Database) -> None:
    from inventory.documents import impact_document, report_document
    from inventory.render import to_json
    from inventory.report import source_status

    viewer = tokens.header("viewer")
    impact = client.get("/api/v1/impact/node-0", headers=viewer)
    assert impact.status_code == 200, impact.text
    report = client.get("/api/v1/report", params={"since": "7d"}, headers=viewer)
    status = client.get("/api/v1/status", headers=viewer)

    with db.session() as session:
        assert impact.json() == json.loads(to_json(impact_document(session, "node-0")))
        expected = json.loads(to_json(report_document(session, "7d")))
        statuses = source_status(session, [("lab", "static")])
    # The same document but for the times it was made at (a second apart at most).
    timeless = {"generated_at", "since", "sources"}
    assert set(report.json()) == set(expected)
    assert {k: v for k, v in report.json().items() if k not in timeless} == {
        k: v for k, v in expected.items() if k not in timeless
    }
    assert [s["name"] for s in report.json()["sources"]] == ["lab"]
    assert (
        [(s["source"], s["configured"], s["hosts"], s["workloads"]) for s in status.json()]
        == [(s["source"], s["configured"], s["hosts"], s["workloads"]) for s in statuses]
        == [("lab", True, 6, 24)]
    )
    assert client.get("/api/v1/impact/nope", headers=viewer).status_code == 404
    assert client.get("/api/v1/report", params={"since": "soon"}, headers=viewer).status_code == 400


def test_one_error_shape_for_unknown_routes_methods_and_failures(bare_client: TestClient) -> None:
    client = bare_client
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": {"type": "NotFound", "message": "no such route"}}
    wrong_method = client.delete("/api/v1/inventory/hosts")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["type"] == "MethodNotAllowed"
    assert "GET" in wrong_method.headers["allow"]

    # A handler that fails unexpectedly: a 500 in the same shape, its text kept for the log only.
    @client.app.get("/api/v1/fails")  # type: ignore[attr-defined]
    def fails() -> None:
        raise RuntimeError("password=hunter2 in an unexpected place")

    with TestClient(client.app, raise_server_exceptions=False) as quiet:
        failed = quiet.get("/api/v1/fails")
    assert failed.status_code == 500 and failed.json() == {
        "error": {"type": "InternalError", "message": "the server failed to answer; see its log"}
    }


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens there once the probe is closed


def test_a_database_that_is_away_answers_a_json_503(tmp_path: Path, postgres_url: str) -> None:
    away = Database(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/inventory?connect_timeout=2")
    tokens = {"t0ken-for-eve": Principal("eve", groups=frozenset({"viewers"}))}
    header = {"Authorization": "Bearer t0ken-for-eve"}
    with TestClient(create_app(away, authenticator=tokens.get, mcp=False), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/inventory/hosts", headers=header)
        assert answer.status_code == 503, answer.text
        assert answer.json() == {
            "error": {"type": "DatabaseUnavailable", "message": "the database is not reachable now; try again shortly"}
        }
    # The tokens themselves live in the database: signing in (API or web) meets the same 503, not a plain 500.
    shaped = "inv_" + "A" * 43  # shaped as `inventory tokens create` makes them: looked up in the database
    with TestClient(create_app(away, mcp=False), raise_server_exceptions=False) as client:
        answer = client.get("/api/v1/sources", headers={"Authorization": f"Bearer {shaped}"})
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "DatabaseUnavailable", answer.text
        page = client.post("/login", data={"token": shaped}, follow_redirects=False)
        assert page.status_code == 503 and "not reachable" in page.text and "Traceback" not in page.text

    # A database that goes away under a running server: its connections are cut, then refused.
    live = Database(postgres_url)
    from inventory.storage.migrate import upgrade

    upgrade(live)
    with TestClient(create_app(live, authenticator=tokens.get, mcp=False), raise_server_exceptions=False) as client:
        assert client.get("/api/v1/inventory/hosts", headers=header).status_code == 200
        database = live.engine.url.database
        from sqlalchemy import create_engine, text

        admin = create_engine(live.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
                ),
                {"d": database},
            )
        try:
            gone = client.get("/api/v1/inventory/hosts", headers=header)
            assert gone.status_code == 503 and gone.json()["error"]["type"] == "DatabaseUnavailable", gone.text
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
            admin.dispose()
    live.dispose()


# --- the OpenAPI document against what is sent --------------------------------------------------


def _check(document: dict[str, Any], method: str, path: str, answer: Any) -> None:
    operation = document["paths"][path][method]
    declared = operation["responses"]
    status = str(answer.status_code)
    assert status in declared, f"{method.upper()} {path} answered {status}, not declared ({sorted(declared)})"
    content = declared[status].get("content", {}).get("application/json")
    assert content is not None, f"{method.upper()} {path} {status}: no JSON schema declared"
    schema = {**content["schema"], "components": document["components"]}
    try:
        jsonschema.Draft202012Validator(schema).validate(answer.json())
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"{method.upper()} {path} {status}: {exc.message} at {list(exc.absolute_path)}") from None


def test_every_answer_matches_the_openapi_document(client: TestClient, tokens: Tokens) -> None:
    document = client.get("/api/v1/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token",
    }
    # Rows declare every stored field of the object-type table (a hand-written copy once missed this one).
    for row in ("HostOut", "WorkloadOut", "ServiceOut"):
        assert "details_stale_since" in document["components"]["schemas"][row]["properties"]
    admin = tokens.header("admin")
    fill = {"ident": "node-2", "target": "node-2", "refresh_id": "nope", "approval_id": "1", "name": "nope", "seq": "1"}
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "422" not in operation["responses"], f"{method} {path} declares a 422 it never sends"
            url = path
            for key, value in fill.items():
                url = url.replace(f"{{{key}}}", value)
            assert "{" not in url, url
            send = getattr(client, method)
            body = {"json": {"no_such_field": 1}} if method == "post" else {}
            # A stream (changes/stream) never ends for a caller who may read it: its answers are read in
            # tests/test_change_stream.py; here its refusals are checked like every route's.
            streams = "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
            for headers in ({}, tokens.header("nobody")) if streams else (admin, {}, tokens.header("nobody")):
                answer = send(url, headers=headers, **body)
                _check(document, method, path, answer)
                checked += 1
            unknown = send(url, params={"no_such_parameter": "1"}, headers=admin, **body)
            _check(document, method, path, unknown)
            if method == "get" and "{" not in path:
                assert unknown.status_code == 400 and "no_such_parameter" in unknown.json()["error"]["message"]
    # Every list query's parameters are in the document, from their one declaration.
    for query in LIST_QUERIES.values():
        path = "/api/v1/changes" if query.row == "change" else f"/api/v1/inventory/{query.name}"
        listed = {p["name"] for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}
        assert listed == {p.name for p in query.api_params}
    assert checked >= 60
    assert not any(
        p["name"].lower() == "authorization"
        for i in document["paths"].values()
        for o in i.values()
        for p in o.get("parameters", [])
    )
    # Good answers of the lists too, with filters and a second page.
    for path in ("/api/v1/inventory/hosts", "/api/v1/inventory/workloads", "/api/v1/changes"):
        first = client.get(path, params={"limit": 3}, headers=admin)
        _check(document, "get", path, first)
        second = client.get(path, params={"limit": 3, "cursor": first.json()["next_cursor"]}, headers=admin)
        _check(document, "get", path, second)


def test_api_docs_work_without_the_internet(bare_client: TestClient) -> None:
    client = bare_client
    page = client.get("/api/docs")
    assert page.status_code == 200 and "/api/v1/openapi.json" in page.text
    assert "cdn" not in page.text.lower()
    assets = [part.split('"')[0] for part in page.text.split('src="')[1:]] + [
        part.split('"')[0] for part in page.text.split('href="')[1:]
    ]
    assert "/api/docs/assets/swagger-ui-bundle.js" in assets
    for asset in assets:
        assert asset.startswith("/"), f"{asset} is not served by the app"
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 100, asset
