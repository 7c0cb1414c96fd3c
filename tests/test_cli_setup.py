"""`inventory init` (a starter config from what is here) and `inventory check` (reach each source, write nothing)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from terminal_support import run_on_terminal

from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from inventory.cli import cli
from inventory.config import load_config


@pytest.fixture
def cluster() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=6, minimal_objects=True)) as api:
        yield api


@pytest.fixture
def prod() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ClusterSpec(name="prod", nodes=1, pods=3)) as api:
        yield api


@pytest.fixture
def machine(tmp_path: Path, cluster: FakeKubernetes, prod: FakeKubernetes, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with two kubeconfig contexts of two clusters (one an EKS-like ARN) and no Docker engine."""
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig", {"lab": cluster, "arn:aws:eks:eu-west-1:1:cluster/prod": prod}
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_init_writes_a_config_from_kubeconfig_contexts_that_loads(machine: Path) -> None:
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert "wrote inventory.yaml with 2 source(s)" in result.output
    config = load_config(machine / "inventory.yaml")
    assert {(s.name, s.type, s.context) for s in config.sources} == {  # type: ignore[attr-defined]
        ("lab", "kubernetes", "lab"),
        ("arn:aws:eks:eu-west-1:1:cluster-prod", "kubernetes", "arn:aws:eks:eu-west-1:1:cluster/prod"),
    }
    assert "# - type: proxmox" in (machine / "inventory.yaml").read_text()


def test_init_never_overwrites_without_asking_and_is_safe_to_rerun(machine: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    again = runner.invoke(cli, ["init"])
    assert again.exit_code == 0 and "already up to date" in again.output
    (machine / "inventory.yaml").write_text("sources: []  # mine\n")
    refused = runner.invoke(cli, ["init"])  # stdin is not a terminal: no prompt, no overwrite
    assert refused.exit_code == 2 and "--force" in refused.output
    assert (machine / "inventory.yaml").read_text() == "sources: []  # mine\n"
    forced = runner.invoke(cli, ["init", "--force"])
    assert forced.exit_code == 0 and "context: lab" in (machine / "inventory.yaml").read_text()
    assert runner.invoke(cli, ["-c", "other.yaml", "init"]).exit_code == 0
    assert (machine / "other.yaml").is_file()


def test_init_offers_a_reachable_docker_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "docker.sock"))
    listener.listen(1)
    try:
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'docker.sock'}")
        monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
        monkeypatch.chdir(tmp_path)
        result = CliRunner().invoke(cli, ["init"])
    finally:
        listener.close()
    assert result.exit_code == 0, result.output
    (source,) = load_config(tmp_path / "inventory.yaml").sources
    url = getattr(source, "url", None)
    assert (source.name, source.type, url) == ("docker-local", "docker", f"unix://{tmp_path / 'docker.sock'}")


def test_check_reaches_each_source_and_writes_nothing(machine: Path, cluster: FakeKubernetes) -> None:
    db_path = machine / "never.db"
    (machine / "inventory.yaml").write_text(
        f"database: {{url: 'sqlite:///{db_path}'}}\n"
        "sources:\n"
        "  - {type: kubernetes, name: lab, context: lab}\n"
        "  - {type: docker, name: gone, url: 'tcp://127.0.0.1:9', timeout: 2}\n"
    )
    cluster.fail_page("deployments", page=1, status=500, times=None)
    result = CliRunner().invoke(cli, ["check", "-o", "json"])
    assert result.exit_code == 1, result.output  # a source failed
    report = json.loads(result.stdout)
    by_name = {row["source"]: row for row in report["sources"]}
    assert by_name["lab"]["status"] == "partial"
    assert "deployments: HTTP 500" in by_name["lab"]["detail"] and by_name["lab"]["hosts"] > 0
    assert by_name["gone"]["status"] == "failed"
    assert not db_path.exists()  # nothing written, not even an empty database

    ok = CliRunner().invoke(cli, ["check", "-s", "lab"])
    assert ok.exit_code == 1  # still partial: deployments are refused
    cluster.faults.clear()
    ok = CliRunner().invoke(cli, ["check", "-s", "lab"])
    assert ok.exit_code == 0, ok.output
    assert "reachable, authenticated; would read" in ok.output


def test_check_says_what_a_narrow_account_may_not_read_and_counts_it_ok(machine: Path, cluster: FakeKubernetes) -> None:
    (machine / "inventory.yaml").write_text(
        "database: {url: 'postgresql://inventory:hunter2-secret@db.example:5432/inventory'}\n"
        "sources:\n  - {type: kubernetes, name: lab, context: lab}\n"
    )
    cluster.forbid("nodes")  # a namespace-scoped service account: not a failure, a fact
    result = CliRunner().invoke(cli, ["check", "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "hunter2-secret" not in result.output and report["database"].startswith("postgresql://inventory:***@")
    (row,) = report["sources"]
    assert row["status"] == "ok"
    assert row["warnings"] == [
        "permissions: skipped, forbidden for context 'lab' (HTTP 403): nodes (pods keep their last known node links; pods never linked have none)"
    ]
    table = CliRunner().invoke(cli, ["check"])
    assert table.exit_code == 0 and "note: permissions: skipped, forbidden" in " ".join(table.output.split())


def test_check_config_error_exits_2(machine: Path) -> None:
    (machine / "inventory.yaml").write_text("sources:\n  - {type: kubernetes, name: lab, contxt: lab}\n")
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "sources[0].contxt: unknown key" in result.output


def test_init_asks_on_a_terminal_before_overwriting(machine: Path) -> None:
    import os

    env = {**os.environ, "KUBECONFIG": os.environ["KUBECONFIG"], "DOCKER_HOST": "tcp://127.0.0.1:9"}
    (machine / "inventory.yaml").write_text("sources: []  # mine\n")
    kept = run_on_terminal("init", env=env, cwd=machine, answers={b"Overwrite it?": b"n"})
    assert "inventory.yaml exists. Overwrite it? [y/N]" in kept and "kept inventory.yaml" in kept
    assert (machine / "inventory.yaml").read_text() == "sources: []  # mine\n"
    replaced = run_on_terminal("init", env=env, cwd=machine, answers={b"Overwrite it?": b"y"})
    assert "wrote inventory.yaml with 2 source(s)" in replaced
    assert "context: lab" in (machine / "inventory.yaml").read_text()
