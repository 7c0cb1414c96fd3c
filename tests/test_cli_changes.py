"""`inventory changes`: which object changed (with its namespace) and how (old -> new per field)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_support import static_lab
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


def synced_twice(tmp_path: Path, database_url: str, before: str, after: str) -> Path:
    """A static source synced with ``before``, then with ``after``; the config's path."""
    config = sync_static(tmp_path, database_url, before)
    (tmp_path / "lab.yaml").write_text(after)
    result = CliRunner().invoke(cli, ["--config", str(config), "sync", "--once"])
    assert result.exit_code == 0, result.output
    return config


@pytest.fixture
def changed(tmp_path: Path, migrated_database_url: str) -> Path:
    return synced_twice(tmp_path, migrated_database_url, BEFORE, AFTER)


def test_table_has_namespace_and_old_to_new(changed: Path) -> None:
    result = query(changed, "changes", "--action", "updated")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split() == ["AT", "SOURCE", "ACTION", "OBJECT", "TYPE", "KIND", "NAMESPACE", "NAME", "CHANGED", "BY"]
    assert row.split()[5:7] == ["prod", "db-0"]
    assert "status: running -> stopped" in row
    assert row.split()[-1] == "unknown"  # a poll that nobody explained
    # Piped: every value whole (a terminal cuts them, below).
    assert "labels.tier: back -> backend-tier-with-a-very-long-label-value-here; status: running -> stopped" in row
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
    out = run_on_terminal("--config", str(changed), "changes", "--action", "updated", env=env, columns=120)
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    assert len(lines) == 2 and all(len(line) <= 120 for line in lines)
    # The cell is cut, the BY column after it is whole.
    assert "labels.tier: back" in lines[1] and "…" in lines[1] and lines[1].endswith("unknown")


MEMBERS_BEFORE = """
workloads:
  - {id: uid-aaaa-1111, name: web-0-aaaa, namespace: prod}
  - {id: uid-bbbb-2222, name: web-0-bbbb, namespace: prod}
services:
  - {id: web, name: web, namespace: prod, members: [uid-aaaa-1111, uid-bbbb-2222]}
"""
MEMBERS_AFTER = """
workloads:
  - {id: uid-bbbb-2222, name: web-0-bbbb, namespace: prod}
  - {id: uid-cccc-3333, name: web-0-cccc, namespace: prod}
services:
  - {id: web, name: web, namespace: prod, members: [uid-bbbb-2222, uid-cccc-3333]}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def members_moved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with static_lab(request, tmp_path_factory.mktemp("lab"), MEMBERS_BEFORE, then=MEMBERS_AFTER) as config:
        yield config


def test_members_that_joined_and_left_are_named(members_moved: Path) -> None:
    for output in ("table", "wide"):
        out = query(members_moved, "changes", "--type", "service", "--action", "updated", "-o", output).stdout
        # The pod that left is removed, and still named; piped output is whole.
        assert "members: +web-0-cccc -web-0-aaaa" in out
        assert "uid-" not in out
    (row,) = json.loads(
        query(members_moved, "changes", "--type", "service", "--action", "updated", "-o", "json").stdout
    )
    assert row["members_joined"] == ["web-0-cccc"] and row["members_left"] == ["web-0-aaaa"]
    assert len(row["diff"]["members"]) == 2  # the references stay for tools
    shown = json.loads(query(members_moved, "services", "show", "prod/web", "-o", "json").stdout)
    updated = next(c for c in shown["changes"] if c["action"] == "updated")
    assert updated["members_joined"] == ["web-0-cccc"] and updated["members_left"] == ["web-0-aaaa"]


def test_members_on_a_terminal_are_not_cut_with_wide(members_moved: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["NO_COLOR"] = "1"
    args = ("--config", str(members_moved), "changes", "--type", "service", "--action", "updated")
    wide = run_on_terminal(*args, "-o", "wide", env=env, columns=60)
    assert "members: +web-0-cccc -web-0-aaaa" in wide  # wider than the terminal, and whole
    narrow = run_on_terminal(*args, env=env, columns=60)
    assert "members: +web-0-cccc -web-0-aaaa" not in narrow and "…" in narrow
