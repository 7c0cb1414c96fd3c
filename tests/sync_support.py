"""Helpers shared by the tests of the sync service: configs over static sources, and the CLI as a real process."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select

from inventory.cli import cli
from inventory.storage.database import Database
from inventory.storage.models import Source, SyncRun

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_inventory(
    path: Path, hosts: int, *, prefix: str = "h", status: str = "running", extra: dict[str, Any] | None = None
) -> Path:
    """A static source file with ``hosts`` hosts, each running one workload."""
    data: dict[str, Any] = {
        "hosts": [{"id": f"{prefix}{i}", "name": f"{prefix}-host-{i}"} for i in range(hosts)],
        "workloads": [
            {"id": f"{prefix}w{i}", "name": f"{prefix}-app-{i}", "host": f"{prefix}{i}", "status": status}
            for i in range(hosts)
        ],
    }
    for key, values in (extra or {}).items():
        data.setdefault(key, []).extend(values)
    # Flow style on one line per document keeps a large file fast to write and to parse.
    path.write_text(yaml.safe_dump(data, default_flow_style=True, width=1 << 20), encoding="utf-8")
    return path


def write_config(
    path: Path,
    database_url: str,
    sources: dict[str, Path],
    *,
    interval: str = "5m",
    jitter: float = 0.0,
    extra: str = "",
    concurrency: int | None = None,
) -> Path:
    """A config whose sources are static files: name -> path."""
    entries = "\n".join(f"  - {{type: static, name: {name}, path: '{file}'}}" for name, file in sources.items())
    parallel = f", concurrency: {concurrency}" if concurrency is not None else ""
    path.write_text(
        f"database: {{url: '{database_url}'}}\nsync: {{interval: {interval}, jitter: {jitter}{parallel}}}\n{extra}\n"
        f"sources:\n{entries}\n",
        encoding="utf-8",
    )
    return path


def child_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_") or k == "INVENTORY_TEST_POSTGRES"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a child stuck past its test's patience shows every thread's stack (SIGABRT)
    env.update(overrides)
    return env


def inventory_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "inventory", *args]


def run_inventory(
    *args: str, timeout: float = 60, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        inventory_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or PROJECT_ROOT,
        env=env or child_env(),
    )


def invoke_inventory(*args: str) -> Result:
    """`inventory ARGS` in this process (click's runner): for tests of what a command says and its exit code,
    where a process of its own would only add its start-up (``run_inventory`` is for tests of the process)."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def start_inventory(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The CLI as a background process; stderr (the log) is read line by line by the test."""
    return subprocess.Popen(
        inventory_command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or PROJECT_ROOT,
        env=env or child_env(),
    )


def stop_and_wait(process: subprocess.Popen[str], timeout: float = 30) -> int:
    """SIGTERM, then the exit code; a process still running after ``timeout`` seconds is made to print every
    thread's stack (SIGABRT, with PYTHONFAULTHANDLER from child_env) and the test fails showing them."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _out, err = process.communicate(timeout=30)
        raise AssertionError(f"still running {timeout:g}s after SIGTERM; its threads:\n{err}") from None


def wait_for_line(
    process: subprocess.Popen[str], needle: str, seen: list[str] | None = None, timeout: float = 60
) -> str:
    """Read the process's stderr until a line contains ``needle``; kill the process after ``timeout`` seconds."""
    seen = [] if seen is None else seen
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        for line in process.stderr:  # type: ignore[union-attr]
            seen.append(line)
            if needle in line:
                return line
    finally:
        watchdog.cancel()
    raise AssertionError(
        f"the process ended (or was killed after {timeout}s) without printing {needle!r}: {''.join(seen)}"
    )


def runs_by_source(db: Database) -> dict[str, list[SyncRun]]:
    with db.session() as session:
        rows = session.execute(
            select(Source.name, SyncRun).join(SyncRun, SyncRun.source_id == Source.id).order_by(SyncRun.id)
        ).all()
    runs: dict[str, list[SyncRun]] = {}
    for name, run in rows:
        runs.setdefault(name, []).append(run)
    return runs


def assert_no_overlap(runs: Sequence[SyncRun]) -> None:
    """Runs of one source, in start order, each finished before the next started."""
    ordered = sorted(runs, key=lambda r: r.started_at)
    for before, after in itertools.pairwise(ordered):
        assert before.finished_at is not None and before.finished_at <= after.started_at, (before.id, after.id)
