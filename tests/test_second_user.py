"""A real second OS user against a server that holds the secrets: what they can do, and what they cannot.

The server runs in this process (root in CI) with the audit key in a directory closed to others, as a
service account's state directory is, and listens on a Unix socket open to every local user. A second
account, created here with useradd, runs the CLI from a virtualenv of its own on Debian's
/usr/bin/python3 (root's interpreter may live under /root). It may not read the key or the head file,
may not mint a token in direct mode, nor create a second key; through the socket it acts as itself:
its DESTRUCTIVE call waits for approval, and it may neither approve it nor mint an admin token.

The virtualenv is built once per session (``second_user_venv``): Debian's python, the dependency closure
root's virtualenv resolved from the package index (hard links where the file system allows, else copies),
and the project installed from a wheel built from this checkout. Under CI=true a missing prerequisite
(root, useradd, runuser, /usr/bin/python3 with venv) fails; elsewhere the tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import IN_CI, PROJECT_ROOT

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.cli import cli
from inventory.cli.context import AppContext
from inventory.principals import os_user_name
from inventory.server import create_app
from inventory.server.local import bind_unix_listener
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database

USER = "invsecond"
DEBIAN_PYTHON = Path("/usr/bin/python3")
ME = os_user_name()
# The OS user running the tests approves; nobody else does. No self-approval (the default).
POLICY = f"""
groups: {{approvers: [{ME}]}}
approvals: {{approvers: ["group:approvers"]}}
"""


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs {reason} (root runs the suite there)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def second_user() -> Iterator[str]:
    """An OS account that is not the one running the tests, made now and removed afterwards."""
    if os.geteuid() != 0:
        _missing("root, to create a second OS user")
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            _missing(f"{tool} (package passwd / util-linux)")
    subprocess.run(["userdel", USER], capture_output=True)  # one left over by a killed run
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True, timeout=30
    )
    try:
        yield USER
    finally:
        subprocess.run(["userdel", USER], capture_output=True, timeout=30)


@dataclass(frozen=True)
class Venv:
    root: Path  # readable by every account: the venv, and room for the tests' shared files
    python: Path
    seconds: float  # how long building it took


@pytest.fixture(scope="session")
def second_user_venv(second_user: str) -> Iterator[Venv]:
    if not DEBIAN_PYTHON.is_file() or subprocess.run([DEBIAN_PYTHON, "-c", "import venv"]).returncode != 0:
        _missing(f"{DEBIAN_PYTHON} with its venv module (python3-venv)")
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="inventory-second-user-"))
    root.chmod(0o755)
    try:
        venv = root / "venv"
        subprocess.run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        target = venv / "lib" / version / "site-packages"
        assert target.is_dir(), f"{DEBIAN_PYTHON} is not Python {sys.version_info[:2]}: its site-packages differ"
        _copy_dependencies(Path(sysconfig.get_paths()["purelib"]), target)
        wheels = root / "wheels"
        # The project as pip installs it (a wheel of this checkout), built with root's pip and package index.
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, PROJECT_ROOT],
            check=True,
            timeout=300,
            capture_output=True,
        )
        python = venv / "bin" / "python"
        (wheel,) = wheels.glob("inventory-*.whl")
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel],
            check=True,
            timeout=120,
            capture_output=True,
        )
        yield Venv(root, python, time.monotonic() - started)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _copy_dependencies(source: Path, target: Path) -> None:
    """root's installed distributions (hard links on one file system), without the editable install of this
    checkout, which the wheel replaces (another account may not be able to read the checkout)."""
    link = source.stat().st_dev == target.stat().st_dev
    own = ("__editable__", "inventory-", "_inventory_")
    for entry in source.iterdir():
        if entry.name.startswith(own) or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=os.link if link else shutil.copy2)
        else:
            (os.link if link else shutil.copy2)(entry, target / entry.name)


@dataclass
class Service:
    socket: Path
    key: Path
    config: Path  # what the second user is given: the database and the key's path, no socket
    home: Path
    venv: Venv
    database_url: str

    def as_user(self, *argv: str | Path) -> subprocess.CompletedProcess[str]:
        env = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={self.home}", f"XDG_DATA_HOME={self.home / 'data'}"]
        command = ["runuser", "-u", USER, "--", *env, *map(str, argv)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.home)

    def inventory(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.as_user(self.venv.python, "-m", "inventory", *args)


@pytest.fixture
def service(db: Database, second_user_venv: Venv, tmp_path: Path) -> Iterator[Service]:
    shared = Path(tempfile.mkdtemp(prefix="service-", dir=second_user_venv.root))
    shared.chmod(0o755)
    state = shared / "state"  # the service account's state directory: closed to everyone else
    state.mkdir(mode=0o700)
    home = shared / "home"
    home.mkdir()
    shutil.chown(home, USER)
    (shared / "run").mkdir(mode=0o755)
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=1, pods=4, replicas_per_deployment=1)) as cluster:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
        (tmp_path / "policy.yaml").write_text(POLICY)
        key = state / "audit.key"
        raw = {
            "database": {"url": db.url},
            "audit": {"key_file": str(key)},
            "principals": {"users": {ME: ["admins"]}},
            "sources": [{"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab"}],
        }
        config = tmp_path / "inventory.yaml"
        config.write_text(yaml.safe_dump(raw))
        synced = CliRunner().invoke(cli, ["-c", str(config), "--socket", "", "sync", "--once"])
        assert synced.exit_code == 0, synced.output
        given = shared / "given.yaml"  # the attacker knows where everything is
        given.write_text(yaml.safe_dump({"database": raw["database"], "audit": raw["audit"]}))
        given.chmod(0o644)
        context = AppContext(config_path=str(config), database_url=None)
        try:
            from inventory.cli.serve import _server_state_parts

            database, runner, refresher = _server_state_parts(context)
            app = create_app(database, runner=runner, refresher=refresher, web=False, mcp=False)
            socket_path = shared / "run" / "inventory.sock"
            with BackgroundServer(app, unix_socket=bind_unix_listener(socket_path, 0o666)):
                yield Service(socket_path, key, given, home, second_user_venv, db.url)
        finally:
            context.close()
            shutil.rmtree(shared, ignore_errors=True)


def test_the_second_users_venv_is_built_in_reasonable_time(second_user_venv: Venv) -> None:
    assert second_user_venv.seconds < 60, f"building the second user's venv took {second_user_venv.seconds:.1f} s"
    print(f"second user's venv built in {second_user_venv.seconds:.1f} s")


def test_another_os_user_is_a_client_and_nothing_more(service: Service) -> None:
    # The secrets: closed.
    for secret in (service.key, service.key.with_name(service.key.name + ".head")):
        assert secret.exists()
        read = service.as_user("cat", secret)
        assert read.returncode != 0 and "Permission denied" in read.stderr, read

    # Direct mode with the service's key: refused before anything, naming the key and what to do instead.
    minted = service.inventory(
        "-c", str(service.config), "--socket", "", "tokens", "create", "evil", "--group", "admins"
    )
    assert minted.returncode == 2, minted
    assert f"{service.key}: audit.key_file: direct mode needs an audit key of your own, and its directory " in (
        minted.stderr
    )
    assert f"is closed to {USER}" in minted.stderr and "Traceback" not in minted.stderr
    # Direct mode with a key of its own (the default path, in its home): never a second key for a signed log.
    own = service.inventory("--database-url", service.database_url, "--socket", "", "tokens", "create", "evil")
    assert own.returncode != 0 and "Traceback" not in own.stderr, own
    if service.database_url.startswith("postgresql"):  # SQLite: the service's file is closed to it anyway
        assert own.returncode == 2 and "a new key would not verify them, so none is made" in own.stderr, own
    assert not list(service.home.rglob("*.key"))

    # Through the socket: it acts as itself, and the policy decides.
    via = ["--socket", str(service.socket)]
    destroy = ["tool", "run", "kubernetes.scale_deployment", "--target", "web-0", "--arg", "replicas=0", "-o", "json"]
    waiting = service.inventory(*via, *destroy)
    assert waiting.returncode == 4, waiting
    row = json.loads(waiting.stdout)
    assert (row["actor"], row["class"], row["outcome"]) == (USER, "DESTRUCTIVE", "pending")
    approval = row["approval_id"]
    refused = service.inventory(*via, "approvals", "approve", str(approval))
    # Its own call: the requester never approves it (self-approval is off), whatever groups it holds.
    assert refused.returncode == 3 and f"{USER} requested this call and cannot approve it" in refused.stderr
    minted = service.inventory(*via, "tokens", "create", "evil", "--group", "admins")
    assert minted.returncode == 3 and f"{USER} may not create a token (for evil): only admins may" in minted.stderr
    listed = service.inventory(*via, "audit", "list", "-o", "json", "--actor", USER)
    assert listed.returncode == 0, listed
    assert [(e["event"], e["outcome"]) for e in json.loads(listed.stdout)] == [
        ("tool_call", "pending"),
        ("token", "denied"),
    ]

    # The approver (this process's OS user) approves through the socket: it runs, as the second user's call.
    approved = CliRunner().invoke(cli, ["--socket", str(service.socket), "approvals", "approve", str(approval)])
    assert approved.exit_code == 0 and "outcome: success" in approved.output, approved.output
