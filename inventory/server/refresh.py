"""`POST /api/v1/inventory/refresh`: sync sources in the background, under the same locks as `inventory sync`.

A refresh is one background thread running the chosen sources one after another through the
server's one ``inventory.sync.SourceRunner``; its id answers `GET /api/v1/inventory/refresh/{id}`
with each source's outcome and sync run id as it finishes.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inventory.config import Config
from inventory.connector import ConnectorRegistry, SourceConfig
from inventory.errors import ConfigError, NotFound, UsageError
from inventory.storage.database import Database
from inventory.sync import Observer, SourceRunner, select_sources
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
    """Runs refreshes through one ``SourceRunner`` (as `inventory sync` and the loop do), so that the sources
    of two overlapping refreshes still write one at a time, each under its per-source lock.

    ``observers`` (the server's metrics, the notifier) are told each source's outcome as it finishes.
    """

    def __init__(
        self, db: Database, config: Config, registry: ConnectorRegistry, *, observers: Sequence[Observer] = ()
    ) -> None:
        self.db = db
        self.config = config
        self._refreshes: OrderedDict[str, Refresh] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The config's sync.deadline too: a refresh of a hung source gives up when `inventory sync` would.
        self.runner = SourceRunner.for_config(db, config, registry, stop=self._stop, observers=observers)

    def observe(self, observer: Observer) -> None:
        self.runner.observers.append(observer)

    def start(self, names: Sequence[str] | None, requested_by: str) -> Refresh:
        try:
            selected = select_sources(self.config, names)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        if not selected:
            raise UsageError("no enabled sources to refresh")
        refresh = Refresh(uuid.uuid4().hex[:12], requested_by, [s.name for s in selected])
        with self._lock:
            self._refreshes[refresh.id] = refresh
            while len(self._refreshes) > KEPT_REFRESHES:
                self._refreshes.popitem(last=False)
        thread = threading.Thread(target=self._run, args=(refresh, selected), name=f"refresh-{refresh.id}", daemon=True)
        thread.start()
        return refresh

    def get(self, refresh_id: str) -> Refresh:
        with self._lock:
            found = self._refreshes.get(refresh_id)
        if found is None:
            raise NotFound(f"no refresh {refresh_id!r}")
        return found

    def stop(self) -> None:
        self._stop.set()

    def _run(self, refresh: Refresh, sources: list[SourceConfig]) -> None:
        log.info("refresh %s of %s requested by %s", refresh.id, ", ".join(refresh.sources), refresh.requested_by)
        try:
            for source in sources:
                if self._stop.is_set():
                    break
                outcome = self.runner.run(source)  # never raises for the source's failure
                refresh.outcomes.append(
                    {
                        "source": outcome.source,
                        "status": outcome.status,
                        "run_id": outcome.run_id,
                        "error": outcome.error,
                        "summary": outcome.describe(),
                    }
                )
        except Exception:  # never let a refresh thread die silently; the refresh shows what finished
            log.exception("refresh %s failed", refresh.id)
        refresh.finished_at = utcnow()
        refresh.status = "done"
