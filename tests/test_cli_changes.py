"""`inventory changes`: which object changed (with its namespace) and how (old -> new per field)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from terminal_support import run_on_terminal
from test_cli_query import query, sync_static

from inventory.cli import cli

BEFORE = """
workloads:
  - {id: a, name: db-0, namespace: prod, status: running, labels: {tier: back}}
  - {id: b, name: db-0, namespace: test, status: running}
"""
AFTER = """
workloads:
  - {id: a, name: db-0, namespace: prod, status: stopped, labels: {tier: backend-tier-with-a-very-long-label-value-here}}
  - {id: b, name: db-0, namespace: test, status: running}
"""


@pytest.fixture
def changed(tmp_path: Path, database_url: str) -> Path:
    config = sync_static(tmp_path, database_url, BEFORE)
    (tmp_path / "lab.yaml").write_text(AFTER)
    result = CliRunner().invoke(cli, ["--config", str(config), "sync", "--once"])
    assert result.exit_code == 0, result.output
    return config


def test_table_has_namespace_and_old_to_new(changed: Path) -> None:
    result = query(changed, "changes", "--action", "updated")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["AT", "SOURCE", "ACTION", "OBJECT", "TYPE", "KIND", "NAMESPACE", "NAME", "CHANGED"]
    assert row.split()[5:7] == ["prod", "db-0"]
    assert "status: running -> stopped" in row
    assert (
        "labels.tier: back -> backend-tier-with-a-very-long-label-val…; status: running -> stopped" in row
    )  # each value kept compact
    created = query(changed, "changes", "--action", "created").stdout.splitlines()[1:]
    assert sorted(line.split()[5] for line in created) == ["prod", "test"]


def test_json_keeps_the_diff(changed: Path) -> None:
    (row,) = json.loads(query(changed, "changes", "--action", "updated", "-o", "json").stdout)
    assert row["namespace"] == "prod"
    assert row["diff"]["status"] == ["running", "stopped"]
    assert "changed" not in row
    csv_header = query(changed, "changes", "-o", "csv").stdout.splitlines()[0]
    assert "namespace" in csv_header.split(",") and "changed" not in csv_header.split(",")


def test_terminal_cuts_the_changed_cell(changed: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["NO_COLOR"] = "1"
    out = run_on_terminal("--config", str(changed), "changes", "--action", "updated", env=env, columns=100)
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines)
    assert "labels.tier: back" in lines[1] and lines[1].endswith("…")
