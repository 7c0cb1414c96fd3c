"""Prometheus metrics of the sync: served on /metrics by the loop, or written as a node_exporter textfile.

Counters and the duration histogram count what this process did; the object
gauges and the last-success timestamp are read from the database after each
sync, so that every process sharing one database reports the same inventory.
Each SyncMetrics owns its registry (no global state: tests and the demo may
make several).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inventory.schema import OBJECT_MODELS
from inventory.storage.models import Source, SyncRun

if TYPE_CHECKING:
    from inventory.sync import SourceOutcome

# Syncs take from a fraction of a second (a static file) to minutes (a large cluster).
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class SyncMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.duration = Histogram(
            "inventory_sync_duration_seconds", "Time to collect and write one source.", ["source"], buckets=DURATION_BUCKETS, registry=self.registry
        )
        self.runs = Counter("inventory_sync_runs", "Syncs by outcome (success, partial, failed, locked).", ["source", "status"], registry=self.registry)
        self.errors = Counter("inventory_sync_errors", "Syncs that failed or left the snapshot incomplete.", ["source"], registry=self.registry)
        self.changes = Counter("inventory_changes", "Objects changed by syncs.", ["source", "action"], registry=self.registry)
        self.objects = Gauge("inventory_objects", "Live objects in the inventory.", ["source", "type", "kind"], registry=self.registry)
        self.last_success = Gauge(
            "inventory_last_success_timestamp_seconds", "Unix time of the end of the last successful sync.", ["source"], registry=self.registry
        )
        self.up = Gauge("inventory_source_up", "1 when the last sync of the source succeeded, else 0.", ["source"], registry=self.registry)
        self.last_duration = Gauge("inventory_last_sync_duration_seconds", "Duration of the last sync.", ["source"], registry=self.registry)

    def observe(self, outcome: SourceOutcome) -> None:
        source = outcome.source
        self.runs.labels(source, outcome.status).inc()
        if outcome.status == "locked":
            return  # another process did this sync; its own metrics count it
        self.duration.labels(source).observe(outcome.duration)
        self.last_duration.labels(source).set(outcome.duration)
        self.up.labels(source).set(1 if outcome.ok else 0)
        # Touch the error child so that the series exists at 0 before the first error.
        errors = self.errors.labels(source)
        if outcome.status in ("failed", "partial"):
            errors.inc()
        if outcome.result is not None:
            for action in ("created", "updated", "removed", "revived"):
                self.changes.labels(source, action).inc(getattr(outcome.result, action))

    def observe_all(self, outcomes: Iterable[SourceOutcome]) -> None:
        for outcome in outcomes:
            self.observe(outcome)

    def refresh_from_database(self, session: Session) -> None:
        """Object counts by kind and last success per source, as the database holds them now."""
        names = {source_id: name for source_id, name in session.execute(select(Source.id, Source.name))}
        self.objects.clear()  # a kind that disappeared must not keep its last value
        for object_type, model in OBJECT_MODELS.items():
            stmt = select(model.source_id, model.kind, func.count()).where(model.removed_at.is_(None)).group_by(model.source_id, model.kind)
            for source_id, kind, count in session.execute(stmt):
                self.objects.labels(names.get(source_id, str(source_id)), object_type, kind).set(count)
        last_ok = select(SyncRun.source_id, func.max(SyncRun.finished_at)).where(SyncRun.status == "success").group_by(SyncRun.source_id)
        for source_id, finished_at in session.execute(last_ok):
            if finished_at is not None:
                self.last_success.labels(names.get(source_id, str(source_id))).set(finished_at.timestamp())

    def serve(self, port: int, address: str = "0.0.0.0") -> Any:
        """Serve /metrics from a daemon thread; returns the server (``shutdown()`` stops it)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server

    def write_textfile(self, path: str | Path) -> None:
        """node_exporter's textfile collector format, written atomically (temp file + rename)."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
