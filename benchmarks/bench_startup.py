"""Start-up cost: the CPU time (user + sys) of one-shot commands, beside ``python -c pass``.

    .venv/bin/python benchmarks/bench_startup.py [--runs 15] [--python PATH]

Each command runs ``--runs`` times as a child process, after one unmeasured run, the commands taken in
turn; its CPU is the child's own rusage (``os.wait4``), so other processes on the machine add little
(a busy machine still slows every figure somewhat: the load average is printed, and the minimum is the
figure closest to a quiet machine). Medians, minimums and the ratio to ``python -c pass`` are printed
for:

- ``python -c pass``: the interpreter's own start;
- the library floor: importing only what a sync cannot do without (SQLAlchemy Core and its SQLite
  dialect, pydantic with one model built, yaml, click), and exiting as the CLI does; and the same
  with SQLAlchemy's ORM (what the queries, e.g. ``hosts list``, start from; the sync writes Core tables);
- ``import inventory.cli``, ``inventory --help`` and ``inventory hosts list``;
- ``inventory sync --once`` of a static config into a SQLite database created beforehand, the
  command issue 20 asks to bring to <= 0.35 s;

then the 15 largest cumulative import times of one ``python -X importtime`` run of that sync.

``--python`` names the interpreter whose installed ``inventory`` is measured (default: this one),
e.g. another checkout's ``.venv/bin/python``; given twice or more, every interpreter's commands are
measured in the same rounds, taken in turn, so that two branches are compared under the same load.
Children run in a scratch directory with a private bytecode cache (``PYTHONPYCACHEPREFIX``): compiled
once by the unmeasured run, as an installed package is, whatever ``PYTHONDONTWRITEBYTECODE`` says,
and nothing is written beside the measured checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

GOAL_SECONDS = 0.35

CONFIG = """\
database:
  url: sqlite:///inventory.db
sources:
  - type: static
    name: homelab
    hosts:
      - {id: nas1, name: nas, kind: nas, hostname: nas.lan, addresses: [192.168.1.10], labels: {rack: closet}}
      - {id: sw1, name: core-switch, kind: switch, addresses: [192.168.1.2], attributes: {model: USW-24}}
      - {id: pve1, name: pve1, kind: server, hostname: pve1.lan, attributes: {cpu: "Ryzen 7 5700G"}}
    workloads:
      - {id: plex, name: plex, kind: app, host: nas1, status: running, labels: {tier: media}}
      - {id: backup, name: restic-backup, kind: job, host: nas1}
    services:
      - {id: plex, name: Plex, members: [plex], slo: 99.5, url: "https://plex.lan"}
"""


# What a sync cannot do without: SQLAlchemy Core (the sync engine writes Core tables) with its SQLite dialect,
# pydantic with one model built (its schema machinery loads at the first), yaml, click; and the exit the CLI
# takes (the GC frozen). With the ORM: what the queries (``hosts list``) start from.
def floor(sqlalchemy: str) -> str:
    return (
        f"import gc, click, pydantic, sqlalchemy.dialects.sqlite, {sqlalchemy}, yaml\n"
        "class Model(pydantic.BaseModel):\n"
        "    name: str\n"
        "Model(name='floor')\n"
        "gc.freeze()\n"
    )


def child_env(pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def cpu_seconds(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """User + sys CPU of one run of ``argv``, from the child's rusage; a failing command stops the benchmark."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _pid, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            sys.exit(f"{' '.join(argv)} exited {process.returncode}:\n{errors.read().decode(errors='replace')}")
    return usage.ru_utime + usage.ru_stime


def measure(commands: list[list[str]], runs: int, cwd: Path, env: dict[str, str]) -> list[list[float]]:
    """``runs`` CPU figures per command, taken in turn (one run of each, then again), so that a change in the
    machine's load reaches every command alike."""
    for argv in commands:
        cpu_seconds(argv, cwd, env)  # unmeasured: compiles the bytecode cache
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for argv, taken in zip(commands, samples, strict=True):
            taken.append(cpu_seconds(argv, cwd, env))
    return samples


def top_imports(argv: list[str], cwd: Path, env: dict[str, str], count: int = 15) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, module) of the ``count`` largest cumulative import times of one run."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (.*)$", line)
        if match:
            rows.append((int(match.group(2)), int(match.group(1)), match.group(3).rstrip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter whose installed inventory is measured (repeat it to compare several in the same rounds)",
    )
    args = parser.parse_args()
    pythons = args.python or [sys.executable]

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as scratch:
        work = Path(scratch)
        (work / "inventory.yaml").write_text(CONFIG, encoding="utf-8")
        env = child_env(work / "pycache")
        config = ["-c", str(work / "inventory.yaml")]
        per_python = []
        for python in pythons:
            inventory = [python, "-m", "inventory"]
            sync = [*inventory, *config, "sync", "--once"]
            cpu_seconds(sync, work, env)  # creates and migrates the database (the first); not measured
            per_python.append(
                [
                    ("python -c pass", [python, "-c", "pass"]),
                    ("library floor (SQLAlchemy Core, pydantic, yaml, click)", [python, "-c", floor("sqlalchemy")]),
                    ("library floor with sqlalchemy.orm", [python, "-c", floor("sqlalchemy.orm")]),
                    ("import inventory.cli", [python, "-c", "import inventory.cli"]),
                    ("inventory --help", [*inventory, "--help"]),
                    ("inventory hosts list", [*inventory, *config, "hosts", "list"]),
                    ("inventory sync --once (static, SQLite)", sync),
                ]
            )
        commands = [command for group in per_python for command in group]
        load_before = os.getloadavg()[0]
        samples = iter(measure([argv for _, argv in commands], args.runs, work, env))
        results = [[(label, next(samples)) for label, _ in group] for group in per_python]
        load_after = os.getloadavg()[0]
        imports = [top_imports(group[-1][1], work, env) for group in per_python]

    print(f"CPU per run (user + sys), {args.runs} runs each; load average {load_before:.2f} -> {load_after:.2f}")
    syncs = []
    for python, found, top in zip(pythons, results, imports, strict=True):
        print(f"\ninterpreter: {python}")
        baseline = statistics.median(found[0][1])
        width = max(len(label) for label, _ in found)
        print(f"  {'command':<{width}}  median      min   x python -c pass")
        for label, taken in found:
            median = statistics.median(taken)
            print(f"  {label:<{width}}  {median:6.3f} s  {min(taken):6.3f} s  {median / baseline:6.1f}")
        sync_median, sync_best = statistics.median(found[-1][1]), min(found[-1][1])
        syncs.append((python, sync_median, sync_best))
        verdict = "met" if sync_median <= GOAL_SECONDS else "not met"
        goal = f"goal: sync --once <= {GOAL_SECONDS:.2f} s of CPU"
        print(f"{goal}: median {sync_median:.3f} s ({verdict}), best run {sync_best:.3f} s")
        print("largest cumulative import times of one sync --once (python -X importtime):")
        print(f"  {'cumulative':>10}  {'self':>8}  module")
        for cumulative, own, module in top:
            print(f"  {cumulative / 1000:7.1f} ms  {own / 1000:5.1f} ms  {module}")
    if len(syncs) > 1:
        first = syncs[0]
        print(f"\nsync --once against {first[0]} (median, best run), measured in the same rounds:")
        for python, median, best in syncs[1:]:
            print(f"  {python}: {median - first[1]:+.3f} s ({median / first[1]:.2f}x), {best - first[2]:+.3f} s")


if __name__ == "__main__":
    main()
