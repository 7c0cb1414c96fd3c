"""`POST /api/v1/inventory/refresh`: sync sources in the background, under the same locks as `inventory sync`.

A refresh is one background thread running the chosen sources one after another; its id
answers `GET /api/v1/inventory/refresh/{id}` with each source's outcome and sync run id.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from inventory.config import Config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError, NotFound, UsageError
from inventory.storage.database import Database
from inventory.timeutil import utcnow

log = logging.getLogger(__name__)

KEPT_REFRESHES = 200


@dataclass
class Refresh:
    id: str
    requested_by: str
    sources: list[str]
    requested_at: Any = field(default_factory=utcnow)
    status: str = "running"  # running | done
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    finished_at: Any = None

    def as_row(self) -> dict[str, Any]:
        done = {o["source"]: o for o in self.outcomes}
        return {
            "id": self.id,
            "status": self.status,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "finished_at": self.finished_at,
            "sources": [
                done.get(name, {"source": name, "status": "waiting" if self.status == "running" else "skipped"})
                for name in self.sources
            ],
        }


class Refresher:
    def __init__(self, db: Database, config: Config, registry: ConnectorRegistry) -> None:
        self.db = db
        self.config = config
        self.registry = registry
        self._refreshes: OrderedDict[str, Refresh] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Told every finished refresh's outcomes (the server's metrics).
        self.observers: list[Callable[[list[Any]], None]] = []

    def start(self, names: Sequence[str] | None, requested_by: str) -> Refresh:
        from inventory.sync import select_sources

        try:
            selected = [s.name for s in select_sources(self.config, names)]
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if not selected:
            raise UsageError("no enabled sources to refresh")
        refresh = Refresh(uuid.uuid4().hex[:12], requested_by, selected)
        with self._lock:
            self._refreshes[refresh.id] = refresh
            while len(self._refreshes) > KEPT_REFRESHES:
                self._refreshes.popitem(last=False)
        threading.Thread(target=self._run, args=(refresh,), name=f"refresh-{refresh.id}", daemon=True).start()
        return refresh

    def get(self, refresh_id: str) -> Refresh:
        with self._lock:
            found = self._refreshes.get(refresh_id)
        if found is None:
            raise NotFound(f"no refresh {refresh_id!r}")
        return found

    def stop(self) -> None:
        self._stop.set()

    def _run(self, refresh: Refresh) -> None:
        log.info("refresh %s of %s requested by %s", refresh.id, ", ".join(refresh.sources), refresh.requested_by)
        try:
            outcomes = self._sync(refresh.sources)
            for outcome in outcomes:
                refresh.outcomes.append(
                    {
                        "source": outcome.source,
                        "status": outcome.status,
                        "run_id": outcome.run_id,
                        "error": outcome.error,
                        "summary": outcome.describe(),
                    }
                )
            for observe in self.observers:
                observe(outcomes)
        except Exception:  # never let a refresh thread die silently; the refresh shows what finished
            log.exception("refresh %s failed", refresh.id)
        refresh.finished_at = utcnow()
        refresh.status = "done"

    def _sync(self, names: list[str]) -> list[Any]:
        """The one place the server runs sources: the sync module's public entry, under its per-source locks."""
        from inventory.sync import sync_all

        return sync_all(self.db, self.config, self.registry, names=names, stop=self._stop)
