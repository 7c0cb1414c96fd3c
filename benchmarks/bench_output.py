"""Writing a big list: ``workloads list -o json|yaml|csv|wide`` of 15,000 pods, as the CLI renders it.

    .venv/bin/python benchmarks/bench_output.py [--rows 15000] [--repeat 3]

Rows have the keys and value shapes a workload row has (labels and a few attributes, times as the
store returns them). Each format is rendered into a file (not a terminal) by ``render.render_rows``;
YAML is also written by PyYAML's pure-Python emitter, the one ``-o yaml`` used before, in the same run,
to print the ratio of the two. CPU seconds, median of ``--repeat``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inventory import render
from inventory.schema import SCHEMA


def workload_rows(count: int) -> list[dict[str, Any]]:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    rows = []
    for i in range(count):
        deployment = f"web-{i // 5:04d}"
        rows.append(
            {
                "id": i + 1,
                "source": "prod-cluster",
                "kind": "pod",
                "external_id": f"6f1c2b1e-{i:04x}-4c3b-9a55-{i:012x}",
                "name": f"{deployment}-7d9f8c6b5-{i % 5}x{i % 7}q",
                "status": "running",
                "namespace": f"team-{i % 40}",
                "host_id": i % 500 + 1,
                "host": f"node-{i % 500:03d}",
                "parent_id": 20_000 + i // 5,
                "labels": {"app": deployment, "pod-template-hash": "7d9f8c6b5", "tier": "frontend"},
                "attributes": {
                    "images": [f"registry.example.com/team/{deployment}:1.4.{i % 9}"],
                    "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                    "restarts": i % 3,
                    "qos_class": "Burstable",
                },
                "first_seen_at": start + timedelta(seconds=i),
                "changed_at": start + timedelta(hours=1, seconds=i),
                "removed_at": None,
                "details_stale_since": None,
            }
        )
    return rows


def cpu(action: Any, repeat: int) -> float:
    taken = []
    for _ in range(repeat):
        started = time.process_time()
        action()
        taken.append(time.process_time() - started)
    return statistics.median(taken)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=15_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = workload_rows(args.rows)
    fields = SCHEMA["workload"].output_keys
    columns = ["name", "namespace", "status", "host"]

    def rendered(fmt: str) -> None:
        render.render_rows(rows, fmt, columns, fields=fields, out=io.StringIO(), resource="workload")

    def pure_python_yaml() -> None:
        plain = render._plain(list(rows))
        io.StringIO().write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))

    print(f"{args.rows:,} workload rows rendered into a file (not a terminal), CPU seconds, median of {args.repeat}")
    figures = {fmt: cpu(lambda fmt=fmt: rendered(fmt), args.repeat) for fmt in ("json", "yaml", "csv", "wide")}
    figures["yaml, pure-Python emitter (before)"] = cpu(pure_python_yaml, args.repeat)
    for label, seconds in figures.items():
        print(f"  -o {label:<36} {seconds:7.3f} s")
    before, after = figures["yaml, pure-Python emitter (before)"], figures["yaml"]
    emitter = "libyaml" if getattr(yaml, "__with_libyaml__", False) else "none (PyYAML built without libyaml)"
    print(f"-o yaml: {after / before:.2f}x the pure-Python emitter's time (C emitter: {emitter})")


if __name__ == "__main__":
    main()
