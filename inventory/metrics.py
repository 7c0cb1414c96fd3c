"""Prometheus metrics of the sync: served on /metrics by the loop, or written as a node_exporter textfile.

Counters and the duration histogram count what this process did; the object
gauges and the last-success timestamp are read from the database after each
sync, so that every process sharing one database reports the same inventory.
Each SyncMetrics owns its registry (no global state: tests and the demo may
make several). Failed syncs are ``inventory_sync_runs_total{status="failed"}``
(and ``"partial"``, ``"forbidden"``); there is no separate error counter to disagree with it.
Counters carry no ``_created`` series: a restart is visible in the counters
themselves, and the extra series double the scrape for nothing.

The server answers ``/metrics`` and a one-line index on ``/``; any other path is a 404.
"""

from __future__ import annotations

import platform
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    write_to_textfile,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inventory import __version__
from inventory.outcome import SourceOutcome, SyncStatus
from inventory.query_params import ACTIONS
from inventory.storage.models import OBJECT_MODELS, Source, SyncRun

disable_created_metrics()

# Where the loop serves metrics unless told otherwise: this machine only (a container passes 0.0.0.0).
DEFAULT_METRICS_HOST = "127.0.0.1"
_INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'

# Syncs take from a fraction of a second (a static file) to minutes (a large cluster).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class SyncMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "inventory_sync_duration_seconds",
            "Time to collect and write one source.",
            ["source"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        # A run in progress is no outcome, nor is a watch session (its full syncs are).
        outcomes = ", ".join(s for s in SyncStatus if s not in (SyncStatus.RUNNING, SyncStatus.WATCHING))
        self.runs = Counter(
            "inventory_sync_runs", f"Syncs by outcome ({outcomes}).", ["source", "status"], registry=self.registry
        )
        self.changes = Counter(
            "inventory_changes", "Objects changed by syncs.", ["source", "action"], registry=self.registry
        )
        self.objects = Gauge(
            "inventory_objects", "Live objects in the inventory.", ["source", "type", "kind"], registry=self.registry
        )
        self.last_success = Gauge(
            "inventory_last_success_timestamp_seconds",
            "Unix time of the end of the last successful sync.",
            ["source"],
            registry=self.registry,
        )
        self.up = Gauge(
            "inventory_source_up",
            "1 when the last sync of the source succeeded, else 0.",
            ["source"],
            registry=self.registry,
        )
        self.last_duration = Gauge(
            "inventory_last_sync_duration_seconds",
            "Seconds the last sync of the source took (collect and write), whatever its outcome.",
            ["source"],
            registry=self.registry,
        )
        self.drift = Gauge(
            "inventory_drift_repaired",
            "Objects the last periodic full sync of a source followed live had to repair: changes its stream "
            "missed (0 when the stream was right).",
            ["source"],
            registry=self.registry,
        )
        self.drift_total = Counter(
            "inventory_drift_repaired_objects",
            "Objects periodic full syncs of sources followed live repaired, all told.",
            ["source"],
            registry=self.registry,
        )
        build = Gauge(
            "inventory_build_info",
            "Always 1; the labels say which inventory and Python run.",
            ["version", "python"],
            registry=self.registry,
        )
        build.labels(__version__, platform.python_version()).set(1)

    def observe(self, outcome: SourceOutcome) -> None:
        source = outcome.source
        self.runs.labels(source, outcome.status).inc()
        if outcome.status == SyncStatus.LOCKED:
            return  # another process did this sync; its own metrics count it
        self.duration.labels(source).observe(outcome.duration)
        self.last_duration.labels(source).set(outcome.duration)
        self.up.labels(source).set(1 if outcome.ok else 0)
        if outcome.result is not None:
            for action in ACTIONS:
                self.changes.labels(source, action).inc(getattr(outcome.result, action))
        if outcome.drift_repaired is not None:
            self.drift.labels(source).set(outcome.drift_repaired)
            self.drift_total.labels(source).inc(outcome.drift_repaired)

    def observe_all(self, outcomes: Iterable[SourceOutcome]) -> None:
        for outcome in outcomes:
            self.observe(outcome)

    def refresh_from_database(self, session: Session) -> None:
        """Object counts by kind and last success per source, as the database holds them now."""
        names = dict(session.execute(select(Source.id, Source.name)).all())
        self.objects.clear()  # a kind that disappeared must not keep its last value
        for object_type, model in OBJECT_MODELS.items():
            stmt = (
                select(model.source_id, model.kind, func.count())
                .where(model.removed_at.is_(None))
                .group_by(model.source_id, model.kind)
            )
            for source_id, kind, count in session.execute(stmt):
                self.objects.labels(names.get(source_id, str(source_id)), object_type, kind).set(count)
        # A watch session's finished_at is its last beat: a source followed live is fresh while it beats.
        last_ok = (
            select(SyncRun.source_id, func.max(SyncRun.finished_at))
            .where(SyncRun.status.in_([SyncStatus.SUCCESS, SyncStatus.WATCHING]))
            .group_by(SyncRun.source_id)
        )
        for source_id, finished_at in session.execute(last_ok):
            if finished_at is not None:
                self.last_success.labels(names.get(source_id, str(source_id))).set(finished_at.timestamp())

    def serve(self, port: int, address: str = DEFAULT_METRICS_HOST) -> ThreadingHTTPServer:
        """Serve /metrics from a daemon thread; returns the server (``shutdown()`` stops it)."""
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/":
                    self._answer(200, _INDEX, "text/html; charset=utf-8")
                else:
                    self._answer(404, b"not found: metrics are at /metrics\n", "text/plain; charset=utf-8")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server_class = type("MetricsServer", (ThreadingHTTPServer,), {"address_family": family})
        server = server_class((address, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server

    def write_textfile(self, path: str | Path) -> None:
        """node_exporter's textfile collector format, written atomically (temp file + rename)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
