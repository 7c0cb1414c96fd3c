"""`inventory status` and `inventory check` tell what happened: each source's last warnings on every face, a run
that could read none of its source is `forbidden` (rows kept, not fresh), and a failure names the call and the
limit it hit.

Through the real client libraries (kubernetes, proxmoxer, docker) against the loopback fakes, which answer as the
real APIs do: RBAC's 403 Status object, Proxmox VE's 403 on /cluster/status without Sys.Audit (and every node,
but no guest, to a token without VM.Audit), the Docker engine's error bodies; slow answers for timeouts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import respx
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from terminal_support import run_on_terminal

from connectors.docker.fake import FakeDocker, generate_containers
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.fake.server import FakeProxmox, build_cluster
from inventory.cli import cli
from inventory.storage.database import Database
from inventory.storage.models import HostRow, Source, SyncRun, WorkloadRow

WEBHOOK = "https://hooks.example.net/inventory"
GRANT_KUBERNETES = "kubectl create clusterrole inventory-read --verb=get,list,watch --resource=nodes,pods,"


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, namespaces=2)) as api:
        yield api


@pytest.fixture
def pve() -> Iterator[FakeProxmox]:
    with FakeProxmox(build_cluster(nodes=2, guests=6, pools=1)) as fake:
        yield fake


def write_config(path: Path, database_url: str, *sources: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"database": {"url": database_url}, "sources": list(sources)}), encoding="utf-8")
    return path


def kubernetes_source(tmp_path: Path, cluster: FakeKubernetes, **settings: object) -> dict[str, object]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster}, **settings)  # type: ignore[arg-type]
    return {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}


def proxmox_source(pve: FakeProxmox, **settings: object) -> dict[str, object]:
    return pve.source("pve", retries=0, **settings)


def inventory(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["-c", str(config), *args])


def status(config: Path) -> dict[str, dict[str, object]]:
    shown = inventory(config, "status", "-o", "json")
    assert shown.exit_code == 0, shown.output
    return {row["source"]: row for row in json.loads(shown.stdout)}


def live(db: Database, model: type[HostRow] | type[WorkloadRow]) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(model.removed_at.is_(None))) or 0)


def age_runs(db: Database, source: str, hours: int) -> None:
    """``hours`` pass for the source: its runs are moved back in time."""
    with db.write_session() as session:
        for run in session.execute(select(SyncRun).join(Source).where(Source.name == source)).scalars():
            run.started_at -= timedelta(hours=hours)
            if run.finished_at is not None:
                run.finished_at -= timedelta(hours=hours)


# -- warnings, on every face -------------------------------------------------------------------------------------


def test_status_shows_the_last_runs_warnings_and_every_face_serves_them(
    db: Database, tmp_path: Path, pve: FakeProxmox
) -> None:
    from fastapi.testclient import TestClient
    from server_support import make_tokens

    from inventory.server import create_app

    pve.cluster.node("pve2").online = False
    config = write_config(tmp_path / "inventory.yaml", db.url, proxmox_source(pve))
    synced = inventory(config, "sync", "--once")
    assert synced.exit_code == 0, synced.output  # a node off is a fact: success, with a warning

    rows = status(config)
    warnings = rows["pve"]["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 1
    warning = str(warnings[0])
    assert warning.startswith("node pve2: offline; its ") and rows["pve"]["last_status"] == "success"
    table = inventory(config, "status")
    assert table.exit_code == 0 and "WARNINGS" in table.stdout and warning in table.stdout
    as_yaml = yaml.safe_load(inventory(config, "status", "-o", "yaml").stdout)
    assert as_yaml[0]["warnings"] == [warning]
    assert json.loads(inventory(config, "sources", "-o", "json").stdout)[0]["warnings"] == [warning]

    tokens = make_tokens(db)
    with TestClient(create_app(db, mcp=False)) as client:
        api = client.get("/api/v1/sources", headers=tokens.header("viewer")).json()
        assert api[0]["warnings"] == [warning] and api[0]["last_status"] == "success"
        # Without a token /health says only ok or degraded; a reader's token gets the sources.
        health = client.get("/health", headers=tokens.header("viewer")).json()
        assert health["sources"][0]["warnings"] == [warning]
        client.post("/login", data={"token": tokens.by_name["viewer"]})
        page = client.get("/sources").text
        assert "node pve2: offline; its " in page

    # Fixed: the next run has no warning, and neither has any face.
    pve.cluster.node("pve2").online = True
    assert inventory(config, "sync", "--once").exit_code == 0
    assert status(config)["pve"]["warnings"] == []


def test_the_status_table_on_a_terminal_counts_the_warnings_and_says_each_in_full(
    sqlite_url: str, tmp_path: Path, pve: FakeProxmox
) -> None:
    for name in ("pve1", "pve2"):
        pve.cluster.node(name).online = False
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, proxmox_source(pve))
    assert inventory(config, "sync", "--once").exit_code == 0
    env = {**os.environ, "NO_COLOR": "1", "INVENTORY_CONFIG": str(config)}
    screen = run_on_terminal("status", env=env, columns=100)
    # The table is cut to the terminal's width; each warning is said in full below it (on stderr).
    assert "WARNINGS" in screen and "   (2) " in screen, screen
    assert "WARNING source 'pve': node pve1: offline; its " in screen and "WARNING source 'pve': node pve2: " in screen


# -- nothing readable is not fresh -------------------------------------------------------------------------------


def test_a_kubernetes_account_that_may_read_nothing_is_forbidden_keeps_the_rows_and_goes_stale(
    db: Database, tmp_path: Path, cluster: FakeKubernetes
) -> None:
    # Never granted: every list answers RBAC's 403, and "success, 0 objects" would be a lie.
    cluster.forbid_everything()
    config = write_config(tmp_path / "inventory.yaml", db.url, kubernetes_source(tmp_path, cluster))

    synced = inventory(config, "sync", "--once")
    assert synced.exit_code == 1, synced.output
    assert "FAILED source 'lab': nothing readable: the account system:serviceaccount:inventory:reader may not list" in (
        synced.stderr
    )
    assert GRANT_KUBERNETES in synced.stderr and "--serviceaccount=inventory:reader" in synced.stderr
    # kube-system (the cluster's identity) was refused too: namespaces are in what to grant
    assert ",ingresses.networking.k8s.io,namespaces && kubectl create clusterrolebinding" in synced.stderr
    row = status(config)["lab"]
    assert row["last_status"] == "forbidden" and row["last_success_at"] is None and row["hosts"] == 0
    assert "may not list nodes, pods" in str(row["last_error"])

    stale = inventory(config, "status", "--max-age", "1h")
    assert stale.exit_code == 1
    assert "STALE source 'lab': never synced successfully (--max-age 1h); last run forbidden: " in stale.stderr

    # Granted, synced, then revoked: the ClusterRoleBinding is deleted, the token stays valid.
    cluster.forbidden.clear()
    assert inventory(config, "sync", "--once").exit_code == 0
    good = status(config)["lab"]
    hosts, workloads = live(db, HostRow), live(db, WorkloadRow)
    assert hosts == 2 and workloads > 0

    cluster.forbid_everything()
    revoked = inventory(config, "sync", "--once", "--allow-empty")  # even --allow-empty removes nothing
    assert revoked.exit_code == 1 and "nothing readable" in revoked.stderr, revoked.output
    assert (live(db, HostRow), live(db, WorkloadRow)) == (hosts, workloads)  # rows kept
    row = status(config)["lab"]
    assert row["last_status"] == "forbidden" and row["warnings"] == [
        # what else it found stays a warning; the permission lines are the run's error
        "namespace kube-system: forbidden for context 'lab' (HTTP 403) on GET /api/v1/namespaces/kube-system: "
        'namespaces "kube-system" is forbidden: User "system:serviceaccount:inventory:reader" cannot get resource '
        '"namespaces" in API group "" in the namespace "kube-system"; the cluster has no identity (a source renamed '
        "in the config starts afresh)"
    ]
    assert row["last_success_at"] == good["last_success_at"] and row["hosts"] == hosts

    age_runs(db, "lab", hours=2)
    stale = inventory(config, "status", "--max-age", "15m")
    assert stale.exit_code == 1
    assert "STALE source 'lab': last successful sync 2h00m ago (--max-age 15m); last run forbidden: " in stale.stderr
    assert GRANT_KUBERNETES in stale.stderr

    cluster.forbidden.clear()  # granted again
    assert inventory(config, "sync", "--once").exit_code == 0
    assert inventory(config, "status", "--max-age", "15m").exit_code == 0


def test_a_proxmox_token_without_privileges_is_forbidden_not_an_empty_cluster(
    db: Database, tmp_path: Path, pve: FakeProxmox
) -> None:
    config = write_config(tmp_path / "inventory.yaml", db.url, proxmox_source(pve))
    pve.faults.permissions = "none"  # a privilege-separated token with no ACL entry of its own

    never = inventory(config, "sync", "--once")
    assert never.exit_code == 1
    assert (
        "FAILED source 'pve': nothing readable: the token inventory@pve!ro may read nothing of the cluster (GET "
        in (never.stderr)
    )
    assert "HTTP 403 Permission check failed (/, Sys.Audit)" in never.stderr
    assert "pveum acl modify / --tokens 'inventory@pve!ro' --roles PVEAuditor" in never.stderr
    assert status(config)["pve"]["last_status"] == "forbidden" and live(db, HostRow) == 0

    pve.faults.permissions = "full"
    assert inventory(config, "sync", "--once").exit_code == 0
    good = status(config)["pve"]
    hosts, workloads = live(db, HostRow), live(db, WorkloadRow)

    pve.faults.permissions = "none"  # revoked
    assert inventory(config, "sync", "--once", "--allow-empty").exit_code == 1
    row = status(config)["pve"]
    assert row["last_status"] == "forbidden" and row["last_success_at"] == good["last_success_at"]
    assert (live(db, HostRow), live(db, WorkloadRow)) == (hosts, workloads)
    age_runs(db, "pve", hours=1)
    stale = inventory(config, "status", "--max-age", "30m")
    assert stale.exit_code == 1 and "last run forbidden: source 'pve': nothing readable" in stale.stderr


@respx.mock
def test_the_loop_backs_off_a_forbidden_source_and_notifies_it_as_failed(
    sqlite_url: str, tmp_path: Path, cluster: FakeKubernetes
) -> None:
    from inventory.config import load_config
    from inventory.connector import ConnectorRegistry
    from inventory.loop import SyncLoop
    from inventory.notify import Notifier, NotifySettings
    from inventory.storage.database import open_database

    webhook = respx.post(WEBHOOK).mock(return_value=httpx.Response(204))
    cluster.forbid_everything()
    config = load_config(write_config(tmp_path / "inventory.yaml", sqlite_url, kubernetes_source(tmp_path, cluster)))
    notifier = Notifier(NotifySettings.model_validate({"targets": [{"type": "webhook", "url": WEBHOOK}]}))
    db = open_database(sqlite_url, migrate=True)
    try:
        loop = SyncLoop(
            db,
            config,
            ConnectorRegistry.discover(),
            coordinate=False,
            notifier=notifier,
            sleep=lambda _s: None,
            follow=False,  # polled: the schedule's backoff is what this is about
        )
        loop.run(max_cycles=1)
    finally:
        db.dispose()
    assert loop.schedule[0].failures == 1  # backed off as a failure is, not rescheduled as fresh
    body = json.loads(webhook.calls.last.request.content)
    assert body["event"] == "source_failed" and body["details"]["status"] == "forbidden"
    assert body["message"].startswith("source 'lab': nothing readable: the account system:serviceaccount:")


# -- check names the call and the limit --------------------------------------------------------------------------


def test_check_names_the_call_that_timed_out_and_the_option_to_raise(
    tmp_path: Path, cluster: FakeKubernetes, pve: FakeProxmox
) -> None:
    cluster.delay("pods", 6.0, page=1)  # the limits are 2s: far from a slow day's answers
    pve.faults.latency = 6.0
    with FakeDocker(generate_containers(3)) as engine:
        engine.delays["/containers/json"] = 6.0
        config = write_config(
            tmp_path / "inventory.yaml",
            f"sqlite:///{tmp_path / 'never-made.db'}",
            {**kubernetes_source(tmp_path, cluster), "timeout": 2},
            proxmox_source(pve, timeout="2s"),
            {"type": "docker", "name": "engine", "url": engine.url, "timeout": "2s"},
        )
        checked = inventory(config, "check")
    assert checked.exit_code == 1
    raise_it = "(the source's `timeout:`, raise it in {} sources[{}].timeout)"
    lines = {line.split("'")[1]: line for line in checked.stderr.splitlines() if " source '" in line}
    assert lines["lab"].startswith("PARTIAL source 'lab': ")
    assert "pods: timed out after 2s on page 1 of GET /api/v1/pods " + raise_it.format(config, 0) in lines["lab"]
    assert lines["pve"] == (
        "FAILED source 'pve': GET /api2/json/cluster/status: timed out after 2s " + raise_it.format(config, 1)
    )
    assert lines["engine"].startswith("PARTIAL source 'engine': ")
    assert (
        "containers: GET /v1.41/containers/json: no answer within 2 s " + raise_it.format(config, 2)
        in (lines["engine"])
    )
    assert not (tmp_path / "never-made.db").exists()


def test_check_names_the_call_that_was_refused(tmp_path: Path, cluster: FakeKubernetes, pve: FakeProxmox) -> None:
    cluster.forbid_everything()  # a valid token bound to no role
    pve.faults.permissions = "none"  # a valid token without any ACL entry
    wrong_secret = "0000-not-the-secret"
    wrong_token = write_kubeconfig(tmp_path / "wrong-kubeconfig", {"lab": cluster}, token="wrong-token-4f9c2b7e1d")
    with FakeDocker(generate_containers(3)) as engine, FakeDocker(generate_containers(2)) as proxied:
        engine.faults["/info"] = 403  # a socket proxy that refuses INFO
        proxied.faults["/containers/json"] = 401  # one that wants credentials for CONTAINERS
        config = write_config(
            tmp_path / "inventory.yaml",
            f"sqlite:///{tmp_path / 'never-made.db'}",
            kubernetes_source(tmp_path, cluster),
            {**kubernetes_source(tmp_path, cluster), "name": "lab-401", "kubeconfig": str(wrong_token)},
            proxmox_source(pve),
            {**proxmox_source(pve, token_secret=wrong_secret), "name": "pve-401"},
            {"type": "docker", "name": "engine", "url": engine.url},
            {"type": "docker", "name": "proxied", "url": proxied.url},
        )
        checked = inventory(config, "check", "-o", "json")
    assert checked.exit_code == 1
    rows = {row["source"]: row for row in json.loads(checked.stdout)["sources"]}
    assert rows["lab"]["status"] == "forbidden", rows["lab"]["detail"]
    assert rows["lab"]["detail"].startswith("reachable, authenticated, but nothing readable: the account system:")
    assert "--serviceaccount=inventory:reader" in rows["lab"]["detail"]
    assert rows["lab-401"]["status"] == "failed" and rows["lab-401"]["detail"] == (
        "unauthorized for context 'lab' (HTTP 401) on GET /api/v1/namespaces/kube-system: Unauthorized"
    )
    assert rows["pve"]["status"] == "forbidden"
    assert "(GET /api2/json/cluster/status: HTTP 403 Permission check failed (/, Sys.Audit))" in rows["pve"]["detail"]
    assert rows["pve-401"]["status"] == "failed"
    assert rows["pve-401"]["detail"].startswith("GET /api2/json/cluster/status: HTTP 401")
    assert "the API token or user was rejected" in rows["pve-401"]["detail"] and wrong_secret not in checked.output
    assert rows["engine"]["status"] == "failed"
    assert rows["engine"]["detail"] == "GET /v1.41/info: HTTP 403: fake engine: injected failure on /info"
    assert rows["proxied"]["status"] == "partial"
    assert "containers: GET /v1.41/containers/json: HTTP 401: fake engine" in rows["proxied"]["detail"]
