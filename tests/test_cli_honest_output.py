"""Small lies and cuts the CLI no longer tells: report times with their offset, templates that are no problem,
true/false and <none> in tables, a busy port, an empty `init`, periods that hold nothing, near-miss names."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_support import static_lab
from terminal_support import run_on_terminal
from test_cli_query import query

from inventory.cli import cli
from inventory.cli.context import invoked_as

LAB = """
hosts:
  - {id: pve1, name: pve1, status: up}
workloads:
  - {id: tpl, name: debian-template, host: pve1, status: stopped, attributes: {template: true}}
  - {id: old, name: old-vm, host: pve1, status: stopped, attributes: {template: false}}
  - {id: web, name: web, host: pve1, status: running}
services:
  - {id: svc, name: site, members: [web]}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with static_lab(request, tmp_path_factory.mktemp("lab"), LAB) as config:
        yield config


def test_report_times_offsets_templates_and_empty_cells(synced: Path) -> None:
    table = query(synced, "report")
    assert table.exit_code == 0, table.output
    assert re.search(r"changes since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", table.output)
    problems = table.output.split("Failed and stopped workloads: ")[1].split("\n\n")[0]
    assert problems.startswith("1\n") and "old-vm" in problems and "debian-template" not in problems
    # A service without a status shows <none>, as every table does, never "-".
    assert " - " not in table.output and "<none>" in table.output
    markdown = query(synced, "report", "-o", "markdown").output
    assert re.search(r"# Inventory report \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\)", markdown)
    assert "+00:00 |" in markdown  # the sources' last success times
    report = json.loads(query(synced, "report", "-o", "json").output)
    assert [w["name"] for w in report["problem_workloads"]] == ["old-vm"]


def test_impact_prints_true_and_false(synced: Path) -> None:
    out = query(synced, "impact", "host:pve1").output
    services = out.split("Services")[1]
    assert re.search(r"site\s+1\s+1\s+0\s+true", services) and "True" not in out and "False" not in out


def test_serve_on_a_busy_port_says_so_before_serving(synced: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = query(synced, "serve", "--port", str(port))
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{port}: the port is busy" in result.output
    assert "serving on" not in result.output


def test_init_with_nothing_found_writes_a_commented_starter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert "no source found on this machine" in result.output
    assert "replace `sources: []` with one of its commented examples" in result.output
    assert " check" in result.output.splitlines()[-1]  # after the edit, not instead of it
    text = (tmp_path / "inventory.yaml").read_text()
    assert "# - type: static" in text and "# - type: kubernetes" in text and "# - type: proxmox" in text
    # Uncommenting the static example (as the file says) gives a config that loads.
    edited = text.replace("sources: []", "sources:").replace("  # - type: static", "  - type: static")
    edited = edited.replace("  #   name: homelab", "    name: homelab").replace("  #   hosts:", "    hosts:")
    edited = edited.replace("  #     - {id: nas1", "      - {id: nas1")
    (tmp_path / "edited.yaml").write_text(edited)
    from inventory.config import load_config

    assert [s.name for s in load_config(tmp_path / "edited.yaml").sources] == ["homelab"]


def test_periods_that_hold_nothing_are_usage_errors(synced: Path) -> None:
    for args in (["changes", "--since", "2999-01-01"], ["changes", "--since", "1h", "--until", "2h"]):
        result = query(synced, *args)
        assert result.exit_code == 2, result.output
    assert "is in the future" in query(synced, "changes", "--since", "2999-01-01").output
    assert "is not after since 1h" in query(synced, "changes", "--since", "1h", "--until", "2h").output
    assert query(synced, "report", "--since", "2999-01-01").exit_code == 2
    assert query(synced, "audit", "list", "--since", "1h", "--until", "1d").exit_code == 2
    assert query(synced, "changes", "--since", "1h", "--until", "1s").exit_code == 0


def test_did_you_mean(synced: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sync: {intervall: 5m}\nsources:\n  - {type: static, name: a, hostss: []}\n")
    result = CliRunner().invoke(cli, ["-c", str(bad), "check"])
    assert result.exit_code == 2
    assert "sync.intervall: unknown key; did you mean 'interval'?" in result.output
    assert "sources[0].hostss: unknown key; did you mean 'hosts'?" in result.output
    tool = query(synced, "tool", "run", "proxmox.strat", "--target", "web", "--dry-run")
    assert tool.exit_code == 2 and "did you mean 'proxmox.start'?" in tool.output


def test_hints_print_the_command_as_invoked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / ".venv" / "bin" / "inventory")])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert invoked_as() == ".venv/bin/inventory"
    monkeypatch.setattr(sys, "argv", ["/somewhere/__main__.py"])
    assert invoked_as() == "python -m inventory"


def test_demo_keeps_an_earlier_database_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before any fake starts: without a terminal it needs --force; on one it asks, and no keeps it."""
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "inventory-demo" / "inventory.db"
    earlier.parent.mkdir()
    earlier.write_bytes(b"an earlier demo")
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 2 and "inventory-demo/inventory.db holds an earlier demo: pass --force" in result.output
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    seen = run_on_terminal("demo", env=env, cwd=tmp_path, answers={b"Replace it?": b"n"})
    assert "holds an earlier demo. Replace it?" in seen and "kept inventory-demo/inventory.db" in seen
    assert earlier.read_bytes() == b"an earlier demo"
