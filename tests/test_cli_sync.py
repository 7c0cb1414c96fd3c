"""`inventory sync --once`: exit codes 0 / 1 / 2, one line per failed source, nothing written on bad config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from inventory.cli import cli
from inventory.storage.database import open_database
from inventory.storage.models import HostRow, SyncRun, WorkloadRow

LAB = """
database: {{url: '{url}'}}
sources:
  - type: static
    name: lab
    hosts:
      - {{id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10], labels: {{role: storage}}}}
      - {{id: sw1, name: switch, kind: switch}}
    workloads:
      - {{id: plex, name: plex, host: nas1, status: running}}
  - type: static
    name: rack
    path: {rack}
"""

RACK = """
hosts:
  - {id: r1, name: server-1, kind: server}
workloads:
  - {id: vm-db, name: db, host: r1, kind: vm, status: stopped}
"""


@pytest.fixture
def lab_config(tmp_path: Path, database_url: str) -> Path:
    (tmp_path / "rack.yaml").write_text(RACK)
    path = tmp_path / "inventory.yaml"
    path.write_text(LAB.format(url=database_url, rack=tmp_path / "rack.yaml"))
    # SQLite migrates itself on first use; PostgreSQL is upgraded by the operator.
    result = CliRunner().invoke(cli, ["--config", str(path), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def count(url: str, model: object) -> int:
    db = open_database(url, migrate=True)
    try:
        with db.session() as session:
            return session.execute(select(func.count()).select_from(model)).scalar_one()  # type: ignore[arg-type]
    finally:
        db.dispose()


def test_sync_once_succeeds_and_is_idempotent(lab_config: Path, database_url: str) -> None:
    result = run("--config", str(lab_config), "sync", "--once")
    assert result.exit_code == 0, result.output
    assert "lab: success, 3 objects (3 created" in result.stdout
    assert "rack: success, 2 objects (2 created" in result.stdout
    again = run("--config", str(lab_config), "sync", "--once")
    assert again.exit_code == 0
    assert "lab: success, 3 objects (0 created, 0 updated, 0 removed, 0 revived, 3 unchanged)" in again.stdout
    assert count(database_url, HostRow) == 3


def test_one_failing_source_does_not_stop_the_others_and_exits_1(
    lab_config: Path, database_url: str, tmp_path: Path
) -> None:
    assert run("--config", str(lab_config), "sync", "--once").exit_code == 0
    (tmp_path / "rack.yaml").unlink()
    result = run("--config", str(lab_config), "sync", "--once")
    assert result.exit_code == 1
    assert "lab: success" in result.stdout
    assert (
        f"FAILED source 'rack', file {tmp_path / 'rack.yaml'}: cannot read: No such file or directory" in result.stderr
    )
    # The failed source removed nothing.
    assert count(database_url, WorkloadRow) == 2
    db = open_database(database_url)
    try:
        with db.session() as session:
            statuses = sorted(session.execute(select(SyncRun.status)).scalars())
    finally:
        db.dispose()
    assert statuses == ["failed", "success", "success", "success"]


def test_only_named_sources(lab_config: Path) -> None:
    result = run("--config", str(lab_config), "sync", "--once", "--source", "rack")
    assert result.exit_code == 0
    assert "rack: success" in result.stdout and "lab:" not in result.stdout
    unknown = run("--config", str(lab_config), "sync", "--once", "--source", "nope")
    assert unknown.exit_code == 2
    assert "no source named 'nope'" in unknown.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: [\n  {type: static,, }\n", "malformed YAML"),
        ("sources:\n  - {type: static, name: lab, colour: blue}\n", "sources[0].colour: unknown key"),
        (
            "sources:\n  - {type: static, name: lab, hosts: [{id: 1, name: [not, a, string]}]}\n",
            "sources[0].hosts[0].name: Input should be a valid string",
        ),
        ("sources:\n  - {type: kubernetes-ish, name: lab}\n", "sources[0].type: unknown source type"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path: Path, text: str, message: str) -> None:
    db_path = tmp_path / "never.db"
    path = tmp_path / "inventory.yaml"
    path.write_text(f"database: {{url: 'sqlite:///{db_path}'}}\n" + text)
    result = run("--config", str(path), "sync", "--once")
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(path) in result.stderr
    assert not db_path.exists()


def test_bad_config_leaves_an_existing_database_untouched(lab_config: Path, database_url: str) -> None:
    assert run("--config", str(lab_config), "sync", "--once").exit_code == 0
    before = count(database_url, SyncRun)
    lab_config.write_text(lab_config.read_text() + "    surprise: key\n")
    result = run("--config", str(lab_config), "sync", "--once")
    assert result.exit_code == 2
    assert count(database_url, SyncRun) == before


def test_missing_secret_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("sources:\n  - {type: static, name: lab, path_file: /nonexistent}\n")
    result = run("--config", str(path), "sync", "--once")
    assert result.exit_code == 2
    assert "sources[0].path_file: cannot read secret file /nonexistent" in result.stderr


def test_no_sources_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("sync", "--once")
    assert result.exit_code == 2
    assert "no sources configured" in result.stderr


def test_config_from_environment_variable(lab_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVENTORY_CONFIG", str(lab_config))
    assert run("sync", "--once").exit_code == 0


def test_postgres_behind_the_code_asks_for_db_upgrade(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"database: {{url: '{postgres_url}'}}\nsources: [{{type: static, name: lab}}]\n")
    result = run("--config", str(path), "sync", "--once")
    assert result.exit_code == 1
    assert "run `inventory db upgrade`" in result.stderr
    assert run("--config", str(path), "db", "upgrade").exit_code == 0
    current = run("--config", str(path), "db", "current")
    assert "up to date" in current.stdout
    assert run("--config", str(path), "sync", "--once").exit_code == 0


SILENT_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{{name: silent, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: abc}}}}]
contexts: [{{name: silent, context: {{cluster: silent, user: u}}}}]
current-context: silent
"""


def test_once_on_a_terminal_shows_progress_and_each_failure_once(tmp_path: Path) -> None:
    import os
    import socket

    from terminal_support import run_on_terminal

    # An endpoint that accepts connections and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    # And one that refuses them (the client retries a refused connection: urllib3 warns of each retry).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
    try:
        (tmp_path / "kubeconfig").write_text(SILENT_KUBECONFIG.format(port=silent.getsockname()[1]))
        (tmp_path / "refused").write_text(SILENT_KUBECONFIG.format(port=refused_port))
        (tmp_path / "rack.yaml").write_text(RACK)
        config = tmp_path / "inventory.yaml"
        config.write_text(
            f"database: {{url: 'sqlite:///{tmp_path / 'inv.db'}'}}\nsources:\n"
            f"  - {{type: static, name: rack, path: {tmp_path / 'rack.yaml'}}}\n"
            f"  - {{type: kubernetes, name: k3s, kubeconfig: {tmp_path / 'kubeconfig'}, timeout: 1s}}\n"
            f"  - {{type: kubernetes, name: gone, kubeconfig: {tmp_path / 'refused'}, timeout: 1s}}\n"
        )
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
        env["TERM"] = "xterm"
        out = run_on_terminal("--config", str(config), "sync", "--once", env=env, columns=120, timeout=120)
    finally:
        silent.close()
    plain = out.replace("\r", "\n")
    # Each source's phase with its elapsed time, without -v.
    assert "k3s" in plain and "collecting" in plain and "0:00:0" in plain
    failures = [line for line in plain.splitlines() if "k3s" in line and "FAILED" in line]
    assert len(failures) == 1, plain
    assert len([line for line in plain.splitlines() if "'gone'" in line]) == 1, plain
    assert "ERROR inventory.sync" not in plain  # the FAILED line says it once
    assert "Retrying" not in plain  # urllib3's retries are -v material
    assert re.search(r"\(tried for \d+\.\ds\)", failures[0])
    assert f"database: sqlite:///{tmp_path / 'inv.db'}" in plain


def test_once_says_where_the_database_is_without_its_password(tmp_path: Path, postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    (tmp_path / "rack.yaml").write_text(RACK)
    url = make_url(postgres_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    config = tmp_path / "inventory.yaml"
    config.write_text(f"sources:\n  - {{type: static, name: rack, path: {tmp_path / 'rack.yaml'}}}\n")
    assert run("--config", str(config), "--database-url", url, "db", "upgrade").exit_code == 0
    result = run("--config", str(config), "--database-url", url, "sync", "--once")
    assert result.exit_code == 0, result.output
    assert "database: postgresql" in result.stderr and "***@" in result.stderr
    assert "s3cret-pw" not in result.output + result.stderr
