"""Following the changes table as rows are committed: `changes -w`, the API's event stream, live web pages.

Change ids are handed out before rows are written, and concurrent writers (two sources syncing
at once, a replica) commit in any order: a reader that only asked for ids above the highest it
had seen would miss a row committed late with a lower id. So each poll asks which ids exist in
a recent window of change time (``LATE_COMMIT_WINDOW``, cheap on the index of ``changes.at``),
and reads whole only the rows it has not handed out yet. Polling works the same on SQLite and
PostgreSQL, across processes and replicas.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from inventory.queries import list_changes
from inventory.storage.database import Database
from inventory.storage.models import Change
from inventory.timeutil import utcnow

# How long after its change time a change row may still become visible (a long reconcile's commit).
LATE_COMMIT_WINDOW = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IDS_PER_QUERY = 1000
# How often the table is asked: what "within a second" costs.
POLL_SECONDS = 0.5


class ChangeFeed:
    """Changes matching ``filters`` (as ``queries.list_changes`` takes them), each handed out once.

    Resuming after ``after_id`` (a stream's Last-Event-ID), the first poll returns every row above
    it. Otherwise the feed starts from what is visible when it is made: those rows are not new.
    """

    def __init__(self, db: Database, filters: Mapping[str, Any] | None = None, *, after_id: int | None = None) -> None:
        self.db = db
        self.filters = {key: value for key, value in (filters or {}).items() if value is not None}
        self._after_id = after_id
        # Ids handed out (or known not to be new), with their change time, forgotten once older than the window.
        self._seen: dict[int, datetime] = {}
        if after_id is None:
            with db.session() as session:
                self._seen.update(self._present(session, utcnow()))

    def mark_seen(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows the caller showed already (a list printed before following)."""
        self._seen.update((row["id"], row["at"]) for row in rows)

    @staticmethod
    def _present(session: Any, now: datetime) -> dict[int, datetime]:
        return dict(session.execute(select(Change.id, Change.at).where(Change.at >= now - LATE_COMMIT_WINDOW)).all())

    def poll(self) -> list[dict[str, Any]]:
        """The rows stored since the last poll (oldest first), each exactly once."""
        now = utcnow()
        with self.db.session() as session:
            if self._after_id is not None:
                # A resumed stream: every row above the id it saw last, whatever its time.
                rows = list_changes(session, since=_EPOCH, after_id=self._after_id, **self.filters)
                floor, self._after_id = self._after_id, None
                # What the window holds at or below the resumed id was seen by the client before.
                self._seen.update((i, at) for i, at in self._present(session, now).items() if i <= floor)
            else:
                fresh = {i: at for i, at in self._present(session, now).items() if i not in self._seen}
                ids = sorted(fresh)
                rows = [
                    row
                    for first in range(0, len(ids), _IDS_PER_QUERY)
                    for row in list_changes(
                        session, since=_EPOCH, ids=ids[first : first + _IDS_PER_QUERY], **self.filters
                    )
                ]
                # Rows the filters leave out count as seen too: they are never asked for again.
                self._seen.update(fresh)
        self.mark_seen(rows)
        cutoff = now - LATE_COMMIT_WINDOW
        self._seen = {change_id: at for change_id, at in self._seen.items() if at >= cutoff}
        return sorted(rows, key=lambda row: row["id"])

    def follow(self, stop: threading.Event, poll_seconds: float = POLL_SECONDS) -> Iterator[dict[str, Any]]:
        """Every new row as it is stored, until ``stop`` is set."""
        while not stop.is_set():
            started = time.monotonic()
            yield from self.poll()
            stop.wait(max(0.0, poll_seconds - (time.monotonic() - started)))


__all__ = ["LATE_COMMIT_WINDOW", "POLL_SECONDS", "ChangeFeed"]
