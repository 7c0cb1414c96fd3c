"""`inventory serve` as a real process: health, tokens kept out of its logs, /metrics, and clear startup errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from subprocess import Popen

import httpx
import yaml
from policy_support import apply_policy
from server_support import lab_config, synced, write_lab
from sync_support import child_env, inventory_command, run_inventory

from inventory.principals import os_user_name
from inventory.storage.database import Database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            return httpx.get(f"{url}/health", timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("inventory serve did not answer /health")


def write_serve_config(tmp_path: Path, database_url: str, sync: str = "5m", **extra: object) -> Path:
    """A config with one static source "lab" (tmp_path/lab.yaml)."""
    lab = {"type": "static", "name": "lab", "path": str(tmp_path / "lab.yaml")}
    config_file = tmp_path / "inventory.yaml"
    document = {"database": {"url": database_url}, "sync": {"interval": sync}, "sources": [lab], **extra}
    config_file.write_text(yaml.safe_dump(document))
    # This OS user creates the tokens: an admin (principals.admins defaults to the group admins), as the policy
    # applied to the database says.
    apply_policy(config_file, {"principals": {"users": {os_user_name(): ["admins"]}}})
    return config_file


def create_token(config_file: Path, name: str, *groups: str) -> str:
    """`inventory tokens create NAME --group G...`: the token is the last line of its stdout."""
    options = [option for group in groups for option in ("--group", group)]
    created = run_inventory("-c", str(config_file), "tokens", "create", name, *options)
    assert created.returncode == 0, created.stderr
    token: str = created.stdout.splitlines()[-1]
    assert token not in created.stderr
    return token


def start_serve(config_file: Path, *options: str) -> tuple[Popen[str], str]:
    """`inventory serve` over the config; returns the process and its URL."""
    port = free_port()
    command = ["-c", str(config_file), "serve", "--port", str(port), *options]
    process = subprocess.Popen(
        inventory_command(*command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=config_file.parent,
    )
    return process, f"http://127.0.0.1:{port}"


def test_serve_answers_and_never_logs_a_token(db: Database, tmp_path: Path) -> None:
    config = lab_config(tmp_path, db.url, lab=write_lab(tmp_path / "lab.yaml"))
    synced(db, config)
    config_file = write_serve_config(tmp_path, db.url)
    token = create_token(config_file, "ops", "operators")
    revoked = create_token(config_file, "gone", "admins")
    assert run_inventory("-c", str(config_file), "tokens", "revoke", "gone").returncode == 0
    process, url = start_serve(config_file, "--metrics")
    try:
        health = wait_healthy(url, process)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        hosts = httpx.get(f"{url}/api/v1/inventory/hosts", headers={"Authorization": f"Bearer {token}"})
        assert hosts.status_code == 200 and len(hosts.json()["items"]) == 5
        # A token pasted into the query string is refused, and masked in the access log.
        assert httpx.get(f"{url}/api/v1/inventory/hosts", params={"token": token}).status_code == 401
        # A revoked token authenticates no one, whatever its groups were.
        assert (
            httpx.get(f"{url}/api/v1/inventory/hosts", headers={"Authorization": f"Bearer {revoked}"}).status_code
            == 401
        )
        refresh = httpx.post(f"{url}/api/v1/inventory/refresh", headers={"Authorization": f"Bearer {token}"})
        assert refresh.status_code == 202
        metrics = httpx.get(f"{url}/metrics").text
        assert 'inventory_http_requests_total{method="GET",route="/api/v1/inventory/hosts",status="200"} 1.0' in metrics
        assert 'inventory_objects{kind="app",source="lab",type="workload"} 15.0' in metrics
        assert "inventory_approvals_pending 0.0" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        _out, logs = process.communicate(timeout=30)
    assert "GET /api/v1/inventory/hosts HTTP/1.1" in logs and "token=***" in logs
    assert token not in logs and token[len("inv_") :] not in logs and revoked not in logs and "Traceback" not in logs
    assert process.returncode == 0


def test_a_broken_policy_is_never_applied_and_the_tokens_file_is_gone(tmp_path: Path, sqlite_url: str) -> None:
    config_file = write_serve_config(tmp_path, sqlite_url)
    (tmp_path / "broken.yaml").write_text("version: 1\nrules: [{name: r, effect: maybe}]\n")
    result = run_inventory("-c", str(config_file), "policy", "apply", "broken.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert (
        "broken.yaml" in result.stderr and "rules[0] (r).effect" in result.stderr and "Traceback" not in result.stderr
    )
    # Tokens come from `inventory tokens create`; a tokens file is no longer a way in.
    old = run_inventory("-c", str(config_file), "serve", "--tokens-file", "tokens.yaml", cwd=tmp_path)
    assert old.returncode == 2 and "No such option '--tokens-file'" in old.stderr


def test_other_commands_do_not_load_the_server_stack() -> None:
    code = (
        "import sys, inventory.cli\n"
        "loaded = {'fastapi', 'uvicorn', 'mcp', 'jinja2', 'starlette', 'inventory.server'} & set(sys.modules)\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_serve_sync_runs_the_loop_in_the_same_process(tmp_path: Path, sqlite_url: str) -> None:
    write_lab(tmp_path / "lab.yaml")
    config_file = write_serve_config(tmp_path, sqlite_url, sync="1h")
    viewer = {"Authorization": f"Bearer {create_token(config_file, 'viewer', 'viewers')}"}
    process, url = start_serve(config_file, "--sync", "--max-body-bytes", "2048")
    try:
        assert wait_healthy(url, process).json() == {"status": "ok"}  # no token: the status alone
        too_large = httpx.post(f"{url}/api/v1/inventory/refresh", content=b"{}" + b" " * 4096, headers=viewer)
        assert too_large.status_code == 413 and too_large.json()["error"]["type"] == "ContentTooLarge"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sources = httpx.get(f"{url}/health", headers=viewer).json()["sources"]
            if sources and sources[0]["last_status"] == "success":
                break
            time.sleep(0.2)
        assert [(s["name"], s["last_status"]) for s in sources] == [("lab", "success")]
    finally:
        process.send_signal(signal.SIGTERM)
        _out, logs = process.communicate(timeout=60)
    assert process.returncode == 0, logs
    assert "Traceback" not in logs
