"""Global options anywhere on the line, version, shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from inventory import __version__
from inventory.cli import cli, hoist_options


@pytest.fixture
def config(tmp_path: Path, sqlite_url: str) -> Path:
    (tmp_path / "lab.yaml").write_text("hosts:\n  - {id: nas1, name: nas}\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(
        f"database: {{url: '{sqlite_url}'}}\nsources:\n  - {{type: static, name: lab, path: lab.yaml}}\n"
        "  - {type: static, name: lab-two, path: lab.yaml}\n"
    )
    return path


def test_global_options_after_the_subcommand(config: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["sync", "--once", "-c", str(config)]).exit_code == 0
    for args in (
        ["hosts", "list", "-c", str(config)],
        ["hosts", "list", f"--config={config}", "-v"],
        ["hosts", "list", "--log-format", "json", "--config", str(config)],
        ["-v", "hosts", "list", "-c", str(config), "-o", "json"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)
        assert "nas" in result.stdout


def test_hoisting_keeps_values_and_stops_at_double_dash() -> None:
    assert hoist_options(cli, ["hosts", "list", "-c", "f.yaml", "--name", "x"]) == [
        "-c",
        "f.yaml",
        "hosts",
        "list",
        "--name",
        "x",
    ]
    assert hoist_options(cli, ["-vv", "sync", "-cF", "--once"]) == ["-cF", "-vv", "sync", "--once"]
    assert hoist_options(cli, ["tool", "run", "--", "-c", "x"]) == ["tool", "run", "--", "-c", "x"]


def test_version() -> None:
    for args in (["version"], ["-V"], ["--version"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0
        assert result.stdout.strip() == f"inventory {__version__}"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert "_INVENTORY_COMPLETE" in result.stdout
    assert f"{shell}_complete" in result.stdout


def test_completion_offers_source_names_of_the_config(config: Path) -> None:
    env = {
        **os.environ,
        "_INVENTORY_COMPLETE": "bash_complete",
        "COMP_WORDS": f"inventory -c {config} sync -s lab",
        "COMP_CWORD": "5",
    }
    out = subprocess.run([sys.executable, "-m", "inventory"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["plain,lab", "plain,lab-two"]
    # The config named after the subcommand counts too.
    env["COMP_WORDS"] = f"inventory hosts list -c {config} --source lab-"
    env["COMP_CWORD"] = "6"
    out = subprocess.run([sys.executable, "-m", "inventory"], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["plain,lab-two"]
