"""How list commands show rows: -o wide, --columns, --no-headers, -q, --sort-by, <none>, CSV, times, colour, cutting."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from terminal_support import run_on_terminal

from inventory.cli import cli
from inventory.cli.query import object_fields
from inventory.render import printable, render_table

LAB = """
hosts:
  - {id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10], labels: {role: storage}}
  - {id: pve1, name: pve1, kind: server, status: up}
workloads:
  - {id: web-1, name: "web-1", host: pve1, namespace: prod, status: running}
  - {id: esc, name: "evil\\e[31mred", host: pve1, namespace: prod, status: running}
  - {id: long, name: a-very-long-workload-name-that-cannot-fit-into-a-narrow-terminal-column-at-all, host: pve1}
services:
  - {id: media, name: media, members: [web-1]}
"""


@pytest.fixture
def lab(tmp_path: Path, sqlite_url: str) -> Path:
    (tmp_path / "lab.yaml").write_text(LAB)
    config = tmp_path / "inventory.yaml"
    config.write_text(f"database: {{url: '{sqlite_url}'}}\nsources:\n  - {{type: static, name: lab, path: lab.yaml}}\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "sync", "--once"])
    assert result.exit_code == 0, result.output
    return config


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_empty_cells_are_none_and_columns_count_for_awk(lab: Path) -> None:
    lines = run(lab, "hosts", "list").splitlines()
    assert all(len(line.split()) == len(lines[0].split()) for line in lines)
    pve1 = next(line for line in lines if " pve1 " in line)
    assert "<none>" in pve1  # no hostname, no addresses
    assert not any(line != line.rstrip() for line in lines)  # no trailing padding when piped


def test_wide_columns_and_no_headers_and_ids_only(lab: Path) -> None:
    narrow, wide = run(lab, "hosts", "list").splitlines(), run(lab, "hosts", "list", "-o", "wide").splitlines()
    assert "LABELS" in wide[0] and "LABELS" not in narrow[0]
    assert "role=storage" in "\n".join(wide)
    assert [line.split() for line in run(lab, "hosts", "list", "--no-headers").splitlines()] == [
        line.split() for line in narrow[1:]
    ]
    ids = run(lab, "hosts", "list", "-q").split()  # typed: every command takes host/4, no other type shares it
    assert len(ids) == 2 and all(i.startswith("host/") and i.removeprefix("host/").isdigit() for i in ids)


def test_columns_and_sort_by(lab: Path) -> None:
    out = run(lab, "workloads", "list", "--columns", "name,status", "--sort-by", "name", "--no-headers")
    names = [line.split()[0] for line in out.splitlines()]
    assert names == sorted(names, key=str.casefold)
    assert all(len(line.split()) == 2 for line in out.splitlines())
    reverse_by_status = run(lab, "workloads", "list", "--columns", "name,status", "--sort-by", "status").splitlines()
    assert reverse_by_status[-1].split()[1] == "<none>"  # empty values sort last
    csv_rows = list(csv.reader(io.StringIO(run(lab, "workloads", "list", "-o", "csv", "--columns", "name,namespace"))))
    assert csv_rows[0] == ["name", "namespace"]


def test_unknown_field_is_a_usage_error(lab: Path) -> None:
    for args in (["--sort-by", "colour"], ["--columns", "name,colour"]):
        result = CliRunner().invoke(cli, ["--config", str(lab), "hosts", "list", *args])
        assert result.exit_code == 2
        assert "unknown field 'colour'" in result.output and "hostname" in result.output
        assert "Traceback" not in result.output


def test_csv_header_is_the_same_with_and_without_rows(lab: Path) -> None:
    full = next(csv.reader(io.StringIO(run(lab, "hosts", "list", "-o", "csv"))))
    empty = run(lab, "hosts", "list", "-o", "csv", "--name", "nothing-matches")
    assert next(csv.reader(io.StringIO(empty))) == full == list(object_fields("host"))
    assert empty.count("\n") == 1
    # The declared header is exactly what JSON carries, so that a new field cannot be left out of CSV.
    for object_type, plural in (("host", "hosts"), ("workload", "workloads"), ("service", "services")):
        (row, *_) = json.loads(run(lab, plural, "list", "-o", "json"))
        assert list(row) == list(object_fields(object_type))


def test_one_time_format_with_offset_everywhere(lab: Path) -> None:
    (row, *_) = json.loads(run(lab, "hosts", "list", "-o", "json", "--sort-by", "name"))
    stamp = row["first_seen_at"]
    assert datetime.fromisoformat(stamp).utcoffset() is not None and stamp.endswith("+00:00")
    assert stamp in run(lab, "hosts", "list", "-o", "wide", "--columns", "name,first_seen_at")
    reader = csv.DictReader(io.StringIO(run(lab, "hosts", "list", "-o", "csv", "--sort-by", "name")))
    assert next(reader)["first_seen_at"] == stamp


def test_control_characters_never_reach_the_terminal_raw(lab: Path) -> None:
    out = run(lab, "workloads", "list")
    assert "\x1b" not in out
    assert "evil\\x1b[31mred" in out
    assert printable("a\tb\nc\x07") == "a\\tb\\nc\\x07"


def test_terminal_gets_colour_and_ellipsis_not_wrapped_cells(lab: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm"
    out = run_on_terminal("--config", str(lab), "workloads", "list", env=env, columns=80)
    assert "\x1b[1m" in out  # bold header
    assert "\x1b[32mrunning" in out
    lines = [line for line in out.replace("\r", "").splitlines() if line.strip()]
    assert all(len(line.replace("\x1b[1m", "").replace("\x1b[32m", "").replace("\x1b[0m", "")) <= 80 for line in lines)
    assert "…" in out and "narrow-terminal-column-at-all" not in out
    assert "\x1b[31mred" not in out  # the name's escape is shown, not obeyed

    env["NO_COLOR"] = "1"
    plain = run_on_terminal("--config", str(lab), "workloads", "list", env=env, columns=80)
    assert "\x1b[" not in plain.replace("\\x1b[31m", "")


def test_pipe_is_never_cut() -> None:
    out = io.StringIO()
    render_table([{"name": "x" * 300, "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}], ("name", "at"), out=out)
    assert "x" * 300 in out.getvalue()
    assert "2026-01-02T03:04:05+00:00" in out.getvalue()
