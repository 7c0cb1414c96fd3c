"""Names with ESC / OSC / BEL sequences and bidi overrides never reach a terminal raw, in any output format.

JSON escapes them always (and stays the same JSON); CSV, YAML and the documents of show, impact and audit
show them as visible escapes on a terminal (a real pseudo-terminal here) and carry them as they are into a pipe.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from terminal_support import run_on_terminal

from inventory.cli import cli

# OSC 0 (set the window title) ended by BEL, a colour change, and RIGHT-TO-LEFT OVERRIDE / LEFT-TO-RIGHT ISOLATE.
EVIL = "ev\x1b]0;pwned\x07il\x1b[31m\u202egnp.exe\u2066"
RAW = ("\x1b", "\x07", "\u202e", "\u2066")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp_path = tmp_path_factory.mktemp("lab")
    sqlite_url = f"sqlite:///{tmp_path / 'inventory.db'}"
    document = {
        "hosts": [{"id": "pve1", "name": "pve1", "labels": {"note": EVIL}}],
        "workloads": [{"id": "evil", "name": EVIL, "host": "pve1", "status": "running"}],
    }
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    config = tmp_path / "inventory.yaml"
    # The lab outlives each test's own data directory: its audit key lives beside it, named in the config.
    config.write_text(
        f"database: {{url: '{sqlite_url}'}}\naudit: {{key_file: '{tmp_path / 'audit.key'}'}}\n"
        "sources:\n  - {type: static, name: lab, path: lab.yaml}\n"
    )
    assert CliRunner().invoke(cli, ["--config", str(config), "sync", "--once"]).exit_code == 0
    # An audit entry naming the hostile text: a call of a tool nobody has, recorded as refused.
    CliRunner().invoke(cli, ["--config", str(config), "tool", "run", EVIL, "--target", "pve1", "--no-input"])
    yield config


def piped(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def on_terminal(config: Path, *args: str) -> str:
    """The command in a fresh process whose stdout is a pseudo-terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(NO_COLOR="1", TERM="xterm")  # no colour of our own: any ESC in the output came from the data
    return run_on_terminal("--config", str(config), *args, env=env, columns=200)


def in_process_on_terminal(config: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The command in this process with sys.stdout on a pseudo-terminal: what a terminal receives, without
    the cost of starting a process per command."""
    leader, follower = pty.openpty()
    received: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    terminal = open(follower, "w", encoding="utf-8", closefd=True)  # noqa: SIM115 (closed below, then the reader ends)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", terminal)
    try:
        assert terminal.isatty()
        cli.main(["--config", str(config), *args], standalone_mode=False)
        terminal.flush()
    finally:
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        terminal.close()
        reader.join(timeout=10)
        os.close(leader)
    return b"".join(received).decode()


def test_json_escapes_them_always_and_stays_the_same_json(lab: Path) -> None:
    for args in (("workloads", "list", "-o", "json"), ("workloads", "show", "evil", "-o", "json")):
        text = piped(lab, *args)
        assert not any(char in text for char in RAW), args
        assert "\\u202e" in text and "\\u001b]0;pwned\\u0007" in text
        data = json.loads(text)
        row = data[0] if isinstance(data, list) else data
        assert row["name"] == EVIL  # the same value, escaped only in its spelling


def test_piped_csv_and_yaml_carry_the_data_as_it_is(lab: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(piped(lab, "workloads", "list", "-o", "csv"))))
    assert rows[0]["name"] == EVIL
    assert yaml.safe_load(piped(lab, "workloads", "list", "-o", "yaml"))[0]["name"] == EVIL


def assert_shown_not_obeyed(out: str) -> None:
    assert "Traceback" not in out and "ev" in out, out
    assert not any(char in out for char in RAW), repr(out)
    assert "\\u202e" in out or "\\\\u202e" in out, out


@pytest.mark.parametrize(
    "args",
    [
        ("workloads", "list", "-o", "csv"),
        ("workloads", "list", "-o", "yaml"),
        ("workloads", "list", "-o", "json"),
        ("workloads", "show", "evil"),
        ("hosts", "show", "pve1", "-o", "yaml"),
        ("impact", "workload:evil"),
        ("impact", "workload:evil", "-o", "yaml"),
        ("audit", "list", "-o", "csv"),
        ("audit", "list", "-o", "yaml"),
    ],
    ids=lambda args: " ".join(args),
)
def test_on_a_terminal_every_format_shows_them_as_visible_escapes(
    lab: Path, args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_shown_not_obeyed(in_process_on_terminal(lab, *args, monkeypatch=monkeypatch))


def test_a_real_terminal_process_for_show_and_audit(lab: Path) -> None:
    assert_shown_not_obeyed(on_terminal(lab, "workloads", "show", "evil"))
    listed = json.loads(piped(lab, "audit", "list", "-o", "json"))
    seq = next(entry["seq"] for entry in listed if entry.get("tool") == EVIL)
    out = on_terminal(lab, "audit", "show", str(seq))
    assert not any(char in out for char in RAW), repr(out)
    assert "\\x1b]0;pwned\\x07" in out


def test_an_error_message_is_shown_with_escapes_line_by_line() -> None:
    from inventory.cli import CommandError

    # Messages quote names with repr() already; this is the net under a message that does not.
    assert CommandError(f"no such thing {EVIL}\nsecond line", 2).message == (
        "no such thing ev\\x1b]0;pwned\\x07il\\x1b[31m\\u202egnp.exe\\u2066\nsecond line"
    )
