"""Prometheus metrics: what a sync records, the node_exporter textfile of `sync --once`, /metrics of the loop."""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import time
from pathlib import Path

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sync_support import (
    run_inventory,
    start_inventory,
    stop_and_wait,
    wait_for_line,
    write_config,
    write_inventory,
)

from inventory import __version__
from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.metrics import SyncMetrics
from inventory.storage.database import open_database
from inventory.sync import sync_all


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, keyed by name and sorted labels (the parser must accept it all)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_sync_is_counted_and_the_inventory_gauged(tmp_path: Path, sqlite_url: str) -> None:
    files = {"lab": write_inventory(tmp_path / "lab.yaml", 3), "broken": tmp_path / "missing.yaml"}
    config_path = write_config(tmp_path / "inventory.yaml", sqlite_url, files)
    registry = ConnectorRegistry.discover()
    config = load_config(config_path, registry=registry)
    db = open_database(sqlite_url, migrate=True)
    try:
        metrics = SyncMetrics()
        before = time.time()
        metrics.observe_all(sync_all(db, config, registry))
        with db.session() as session:
            metrics.refresh_from_database(session)
    finally:
        db.dispose()
    found = samples(generate_latest(metrics.registry).decode())
    assert found[("inventory_objects", (("kind", "machine"), ("source", "lab"), ("type", "host")))] == 3
    assert found[("inventory_objects", (("kind", "app"), ("source", "lab"), ("type", "workload")))] == 3
    assert found[("inventory_changes_total", (("action", "created"), ("source", "lab")))] == 6
    assert found[("inventory_sync_runs_total", (("source", "lab"), ("status", "success")))] == 1
    assert found[("inventory_sync_runs_total", (("source", "broken"), ("status", "failed")))] == 1
    # Failures are runs_total{status="failed"}: no second counter, no _created series, one build_info.
    assert not any(name.startswith("inventory_sync_errors") or name.endswith("_created") for name, _ in found)
    assert found[("inventory_build_info", (("python", platform.python_version()), ("version", __version__)))] == 1
    assert found[("inventory_source_up", (("source", "lab"),))] == 1
    assert found[("inventory_source_up", (("source", "broken"),))] == 0
    assert found[("inventory_sync_duration_seconds_count", (("source", "lab"),))] == 1
    assert before - 1 <= found[("inventory_last_success_timestamp_seconds", (("source", "lab"),))] <= time.time() + 1
    # A source that never succeeded has no last-success sample (absent, not a misleading 0).
    assert ("inventory_last_success_timestamp_seconds", (("source", "broken"),)) not in found


def test_sync_once_writes_a_textfile_node_exporter_can_read(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, {"lab": write_inventory(tmp_path / "lab.yaml", 2)})
    textfile = tmp_path / "textfile" / "inventory.prom"
    result = run_inventory("-c", str(config), "sync", "--once", "--metrics-textfile", str(textfile))
    assert result.returncode == 0, result.stderr
    found = samples(textfile.read_text())
    assert found[("inventory_objects", (("kind", "machine"), ("source", "lab"), ("type", "host")))] == 2
    assert found[("inventory_sync_runs_total", (("source", "lab"), ("status", "success")))] == 1
    # Written atomically: no temporary file is left beside it for node_exporter to read half-written.
    assert [p.name for p in textfile.parent.iterdir()] == ["inventory.prom"]


def test_the_loop_serves_metrics(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(
        tmp_path / "inventory.yaml", sqlite_url, {"lab": write_inventory(tmp_path / "lab.yaml", 2)}, interval="1h"
    )
    # --log-format json as a log shipper would read it: one JSON object per line.
    # The default address is this machine only.
    process = start_inventory("--log-format", "json", "-c", str(config), "sync", "--metrics-port", "0")
    try:
        line = wait_for_line(process, "serving metrics on")
        url = re.search(r"http://[^\s\"]+/metrics", line).group(0)  # type: ignore[union-attr]
        synced = json.loads(wait_for_line(process, "lab: success"))
        assert (synced["level"], synced["logger"], synced["source"], synced["status"]) == (
            "info",
            "inventory.loop",
            "lab",
            "success",
        )
        assert (synced["objects"], synced["objects_created"], synced["objects_unchanged"]) == (4, 4, 0)
        assert isinstance(synced["duration_seconds"], float)
        assert url.startswith("http://127.0.0.1:")
        response = httpx.get(url, timeout=5)
        assert response.status_code == 200
        assert httpx.get(url.removesuffix("/metrics") + "/anything", timeout=5).status_code == 404
        assert "/metrics" in httpx.get(url.removesuffix("metrics"), timeout=5).text
        found = samples(response.text)
        assert found[("inventory_objects", (("kind", "app"), ("source", "lab"), ("type", "workload")))] == 2
        assert found[("inventory_source_up", (("source", "lab"),))] == 1
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0


def test_a_failure_log_line_carries_source_status_and_backoff_as_fields(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "inventory.yaml", sqlite_url, {"broken": tmp_path / "missing.yaml"}, interval="1h")
    process = start_inventory("--log-format", "json", "-c", str(config), "sync")
    try:
        line = json.loads(wait_for_line(process, "failed (1 in a row)"))
    finally:
        stop_and_wait(process)
    assert (line["source"], line["status"], line["failures"]) == ("broken", "failed", 1)
    assert line["retry_in_seconds"] > 0 and "duration_seconds" in line


def test_metrics_server_binds_where_told(sqlite_url: str) -> None:
    metrics = SyncMetrics()
    server = metrics.serve(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()
