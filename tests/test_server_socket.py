"""Server mode: the server on a Unix socket knows its callers by their uid; the CLI goes through it and says exactly
what direct mode says; direct mode refuses a key that is not the caller's. Both engines.

The same OS user runs both sides here (this process): tests/test_second_user.py runs the CLI as another account.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from policy_support import apply_policy_file

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.cli import cli
from inventory.cli.context import AppContext
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError, ListenFailed
from inventory.principals import os_user_name
from inventory.server import create_app
from inventory.server.local import bind_unix_listener
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database

ME = os_user_name()
# Approvers are others: the OS user running the tests may call, never approve (and is an admin for tokens).
POLICY = f"""
groups: {{approvers: [someone-else]}}
approvals: {{approvers: ["group:approvers"]}}
principals: {{users: {{{ME}: [admins]}}}}
"""


@dataclass
class Lab:
    config: Path
    socket: Path
    key: Path
    url: str = ""  # the same server over TCP

    def run(self, *args: str, direct: bool = False) -> Any:
        """`inventory ...` in this process, through the socket or (``direct``) straight to the database."""
        where = ["--socket", "" if direct else str(self.socket)]
        return CliRunner().invoke(cli, ["-c", str(self.config), *where, *args], catch_exceptions=False)


@pytest.fixture
def lab(db: Database, tmp_path: Path) -> Iterator[Lab]:
    """A fake cluster synced into the database, and `inventory serve` over it on a Unix socket."""
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=1, pods=4, replicas_per_deployment=1)) as cluster:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
        (tmp_path / "policy.yaml").write_text(POLICY)
        raw = {
            "database": {"url": db.url},
            "audit": {"key_file": str(tmp_path / "keys" / "audit.key")},
            "sources": [{"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab"}],
            # A call that changes nothing is re-read at the source this long (nobody follows it live here).
            "policy": {"observe": 2},
        }
        config = tmp_path / "inventory.yaml"
        config.write_text(yaml.safe_dump(raw))
        lab = Lab(config, tmp_path / "run" / "inventory.sock", tmp_path / "keys" / "audit.key")
        synced = CliRunner().invoke(cli, ["-c", str(config), "sync", "--once"], catch_exceptions=False)
        assert synced.exit_code == 0, synced.output
        apply_policy_file(config, tmp_path / "policy.yaml")  # the database's policy decides, on either path
        lab.socket.parent.mkdir()
        app_context = AppContext(config_path=str(config), database_url=None)
        try:
            from inventory.cli.serve import _server_state_parts

            database, runner, refresher = _server_state_parts(app_context)  # as `inventory serve` builds them
            app = create_app(database, runner=runner, refresher=refresher, web=False)
            with BackgroundServer(app, unix_socket=bind_unix_listener(lab.socket, 0o666)) as server:
                lab.url = server.url
                yield lab
        finally:
            app_context.close()


def _masked(text: str) -> Any:
    """A call's JSON outcome without what two calls never share (their audit entries, what each saw happen)."""
    row = json.loads(text)
    for key in ("audit_seq", "observed", "observed_changes"):
        row.pop(key)
    return row


def test_the_cli_through_the_socket_says_what_direct_mode_says(lab: Lab) -> None:
    scale = ["tool", "run", "kubernetes.scale_deployment", "--target", "web-0", "--arg", "replicas=2", "-o", "json"]
    through, direct = lab.run(*scale), lab.run(*scale, direct=True)
    assert through.exit_code == direct.exit_code == 0, through.output + direct.output
    assert _masked(through.stdout) == _masked(direct.stdout)
    assert _masked(through.stdout)["actor"] == ME and _masked(through.stdout)["outcome"] == "success"
    # The first call scaled the deployment, the second found it scaled already: each says what it saw.
    assert json.loads(through.stdout)["observed"].startswith("attributes.replicas 1 -> 2")
    assert json.loads(direct.stdout)["observed"].startswith("not observed within 2 s (re-read at the source ")

    # DESTRUCTIVE (replicas=0): it waits for approval, exit 4 and the approval's id, on either path.
    destroy = ["tool", "run", "kubernetes.scale_deployment", "--target", "web-0", "--arg", "replicas=0"]
    waiting = lab.run(*destroy, "-o", "json")
    assert waiting.exit_code == 4, waiting.output
    approval = json.loads(waiting.stdout)["approval_id"]
    assert f"waiting for approval {approval}: inventory approvals approve {approval}" in waiting.stderr
    assert lab.run(*destroy, direct=True).exit_code == 4

    # Reading commands: byte for byte the same output and exit code.
    for command in (
        ["approvals", "list", "--status", "all", "-o", "json"],
        ["audit", "list"],
        [
            "audit",
            "list",
            "-o",
            "yaml",
            "--event",
            "tool_call",
            "--class",
            "destructive",
            "--since",
            "1h",
            "--limit",
            "2",
        ],
        ["audit", "show", "3", "-o", "json"],
        ["audit", "verify"],
        ["tokens", "list"],
    ):
        through, direct = lab.run(*command), lab.run(*command, direct=True)
        assert (through.exit_code, through.output) == (direct.exit_code, direct.output), command

    # Refusals come back with the library's words and exit codes: not an approver (3), not allowed to act for
    # someone (2), no such entry (1).
    for command, code in (
        (["approvals", "approve", str(approval)], 3),
        (["tool", "run", "kubernetes.list_pods", "--target", "source:lab", "--actor", "agent-1"], 2),
        (["audit", "show", "999"], 1),
    ):
        through, direct = lab.run(*command), lab.run(*command, direct=True)
        assert (through.exit_code, through.output) == (direct.exit_code, direct.output) and through.exit_code == code
        if code == 3:
            assert f"{ME} is not among the approvers the policy names" in through.output

    # Tokens: created, listed and revoked through the server, as this OS user (an admin by principals.users).
    created = lab.run("tokens", "create", "ci-bot", "--group", "viewers")
    assert created.exit_code == 0 and created.stdout.strip().startswith("inv_"), created.output
    assert lab.run("tokens", "revoke", "ci-bot").output == "token ci-bot revoked\n"
    listed = json.loads(lab.run("tokens", "list", "-o", "json").stdout)
    assert [(t["name"], t["state"], t["created_by"]) for t in listed] == [("ci-bot", "revoked", ME)]
    # The withdrawal by the requester goes through too.
    rejected = lab.run("approvals", "reject", str(approval))
    assert rejected.exit_code == 0 and rejected.output.startswith(f"approval {approval} rejected (audit entry ")
    _the_socket_knows_its_callers_by_uid_and_tcp_still_needs_a_token(lab)


def _the_socket_knows_its_callers_by_uid_and_tcp_still_needs_a_token(lab: Lab) -> None:
    """(Part of the test above: one lab for both.)"""
    transport = httpx.HTTPTransport(uds=str(lab.socket))
    with httpx.Client(transport=transport, base_url="http://inventory", timeout=60) as client:
        # A token on the socket is not looked at (a wrong one included): the kernel named the caller.
        answer = client.post(
            "/api/v1/tools/kubernetes.list_pods/calls",
            json={"target": "source:lab"},
            headers={"Authorization": "Bearer inv_wrong"},
        )
        assert answer.status_code == 200 and answer.json()["actor"] == ME, answer.text
        entries = client.get("/api/v1/audit", params={"event": "tool_call", "newest": "true", "limit": 1}).json()
        (entry,) = entries["items"]
        assert entry["actor"] == ME and entry["details"]["principal"] == "os-user"
        # MCP on the socket: the same OS user, every door open as for the CLI.
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        accept = {"Accept": "application/json, text/event-stream"}
        with client.stream("POST", "/mcp", json=hello, headers=accept, timeout=10) as answer:
            assert answer.status_code == 200
    # Over TCP nothing changed: no token, no answer.
    with httpx.Client(base_url=lab.url) as tcp:
        assert tcp.get("/api/v1/audit").status_code == 401


def test_a_server_that_is_down_is_an_error_naming_the_socket(tmp_path: Path) -> None:
    gone = tmp_path / "gone.sock"
    for command in (["audit", "list"], ["tool", "run", "kubernetes.list_pods"], ["approvals", "list"]):
        result = CliRunner().invoke(cli, ["--socket", str(gone), *command])
        assert result.exit_code == 2, result.output
        assert f"the inventory server at {gone} does not answer: no such socket" in result.output
        assert "Traceback" not in result.output
    # A socket nobody listens on (the server died): refused, and said so.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(gone))
    stale.close()
    result = CliRunner().invoke(cli, ["--socket", str(gone), "tokens", "list"])
    assert result.exit_code == 2 and "nobody listens on it" in result.output


def test_a_configured_socket_is_never_bypassed(tmp_path: Path, database_url: str) -> None:
    """server.socket in the config: the commands go there, or fail; they never fall back to the database."""
    config = tmp_path / "inventory.yaml"
    key = tmp_path / "audit.key"
    raw = {"database": {"url": database_url}, "audit": {"key_file": str(key)}, "server": {"socket": "run/inv.sock"}}
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(cli, ["-c", str(config), "tokens", "create", "x", "--group", "admins"])
    assert result.exit_code == 2 and f"server at {tmp_path / 'run' / 'inv.sock'} does not answer" in result.output
    assert not key.exists()


def _signed_log(database_url: str, tmp_path: Path) -> Path:
    """A database whose audit log a key signs (an entry appended in direct mode by its owner); the config."""
    config = tmp_path / "owner.yaml"
    raw = {"database": {"url": database_url}, "audit": {"key_file": str(tmp_path / "owner" / "audit.key")}}
    config.write_text(yaml.safe_dump(raw))
    made = CliRunner().invoke(cli, ["-c", str(config), "tokens", "create", "x"])
    assert made.exit_code == 3, made.output  # not an admin: refused, and the refusal is a signed entry
    return config


def test_direct_mode_never_creates_a_second_key(db: Database, tmp_path: Path) -> None:
    _signed_log(db.url, tmp_path)
    elsewhere = tmp_path / "mine" / "audit.key"
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}, "audit": {"key_file": str(elsewhere)}}))
    for command in (["tokens", "create", "evil", "--group", "admins"], ["tool", "run", "kubernetes.list_pods"]):
        result = CliRunner().invoke(cli, ["-c", str(config), *command])
        assert result.exit_code == 2, result.output
        assert "there is no audit key here, and the database's audit log is signed with one" in result.output
        assert "go through the service that holds it" in result.output
    assert not elsewhere.exists() and not elsewhere.parent.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another account needs root (CI runs as root)")
def test_direct_mode_refuses_a_key_of_another_account(tmp_path: Path, db: Database) -> None:
    key_dir = tmp_path / "service"
    key_dir.mkdir()
    key = key_dir / "audit.key"
    key.write_bytes(os.urandom(32))
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}, "audit": {"key_file": str(key)}}))
    nobody = 65534  # Debian's nobody: an account of this machine that is not the caller
    os.chown(key, nobody, nobody)
    for command in (["audit", "verify"], ["approvals", "list"], ["tokens", "list"], ["audit", "list"]):
        result = CliRunner().invoke(cli, ["-c", str(config), *command])
        assert result.exit_code == 2, result.output
        assert f"{key}: audit.key_file: direct mode needs an audit key of your own, and it belongs to nobody" in (
            result.output
        )
    # No key yet, in a directory of another account: refused before anything is created there.
    key.unlink()
    os.chown(key_dir, nobody, nobody)
    result = CliRunner().invoke(cli, ["-c", str(config), "tokens", "create", "x"])
    assert result.exit_code == 2 and f"its directory {key_dir} belongs to nobody" in result.output
    assert not key.exists()
    # Root's and account-less files are mounted secrets (Kubernetes, a bind mount): readable is enough.
    key.write_bytes(os.urandom(32))
    for owner in (0, 4242424):
        os.chown(key, owner, owner)
        os.chown(key_dir, owner, owner)
        assert CliRunner().invoke(cli, ["-c", str(config), "tokens", "list"]).exit_code == 0


def test_the_socket_listener(tmp_path: Path) -> None:
    path = tmp_path / "inv.sock"
    listener = bind_unix_listener(path, 0o660)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660 and stat.S_ISSOCK(path.stat().st_mode)
        listener.listen()
        with pytest.raises(ListenFailed, match="another server listens on it"):
            bind_unix_listener(path, 0o666)
    finally:
        listener.close()
    # Stale (nobody listens): replaced. Anything that is not a socket: never touched.
    bind_unix_listener(path, 0o666).close()
    plain = tmp_path / "file"
    plain.write_text("keep me")
    with pytest.raises(ListenFailed, match="it exists and is not a socket"):
        bind_unix_listener(plain, 0o666)
    assert plain.read_text() == "keep me"


def test_server_settings_in_the_config(tmp_path: Path) -> None:
    registry = ConnectorRegistry.discover()
    path = tmp_path / "inventory.yaml"
    config = build_config({"server": {"socket": "run/inv.sock", "socket_mode": "0660"}}, path=path, registry=registry)
    assert config.server_socket == tmp_path / "run" / "inv.sock" and config.server_socket_mode == 0o660
    with pytest.raises(ConfigError, match=r"inventory.yaml: server.socket_mode: .*'rw' is not an octal file mode"):
        build_config({"server": {"socket_mode": "rw"}}, path=path, registry=registry)
    # --socket / INVENTORY_SOCKET win over the config; an empty value means direct mode.
    path.write_text(yaml.safe_dump({"server": {"socket": "/run/inventory/inventory.sock"}}))
    assert AppContext(str(path), None).server_socket() == Path("/run/inventory/inventory.sock")
    assert AppContext(str(path), None, socket_option="").server_socket() is None
    assert AppContext(str(path), None, socket_option="/x.sock").server_socket() == Path("/x.sock")


def test_inventory_serve_on_the_socket_alone(sqlite_url: str, tmp_path: Path) -> None:
    """The real command: `serve --no-http` with server.socket listens there only, answers as the OS user, and
    removes its socket at SIGTERM (exit 0). One engine: the process's wiring is under test here; what the
    routes store is tested on both above."""
    import signal
    import subprocess
    import time

    from sync_support import child_env, inventory_command

    sock = tmp_path / "run" / "inventory.sock"
    sock.parent.mkdir()
    config = tmp_path / "inventory.yaml"
    raw = {
        "database": {"url": sqlite_url},
        "audit": {"key_file": str(tmp_path / "keys" / "audit.key")},
        "server": {"socket": str(sock), "socket_mode": "0660"},
    }
    config.write_text(yaml.safe_dump(raw))
    process = subprocess.Popen(
        inventory_command("-c", str(config), "serve", "--no-http"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        verified = CliRunner().invoke(cli, ["-c", str(config), "audit", "verify", "-o", "json"])
        for _ in range(100):  # bound before it listens: the first connection may come a moment early
            if verified.exit_code == 0:
                break
            time.sleep(0.1)
            verified = CliRunner().invoke(cli, ["-c", str(config), "audit", "verify", "-o", "json"])
        assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True, verified.output
    finally:
        process.send_signal(signal.SIGTERM)
        _out, logs = process.communicate(timeout=30)
    assert process.returncode == 0, logs
    assert f"inventory serving on unix:{sock} (callers by OS user)" in logs and "Traceback" not in logs
    assert not sock.exists()
    # --no-http without a socket is a usage error, said before anything starts.
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"database": {"url": sqlite_url}}))
    refused = CliRunner().invoke(cli, ["-c", str(bare), "--socket", "", "serve", "--no-http"])
    assert refused.exit_code == 2 and "--no-http needs a socket to listen on" in refused.output
