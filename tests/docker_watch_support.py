"""A Docker watch on a thread, for the tests: what it yielded, when, and the workloads it all adds up to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.docker.connector import DockerConnector
from connectors.docker.records import CONTAINER_KIND
from inventory.cause import describe
from inventory.records import Snapshot, Workload


@dataclass
class Watcher:
    """``watch`` on a thread: every snapshot it yields with when it came, and the workloads they add up to."""

    connector: DockerConnector
    stop: threading.Event = field(default_factory=threading.Event)
    received: list[tuple[float, Snapshot]] = field(default_factory=list)
    workloads: dict[str, Workload] = field(default_factory=dict)
    error: BaseException | None = None
    returned_at: float | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.wait_for(lambda s: not s.delta)  # the first list
        return self

    def _run(self) -> None:
        try:
            for snapshot in self.connector.watch(self.stop):
                with self._changed:
                    self.apply(snapshot)
                    self.received.append((time.monotonic(), snapshot))
                    self._changed.notify_all()
        except BaseException as exc:
            self.error = exc
        finally:
            self.returned_at = time.monotonic()
            with self._changed:
                self._changed.notify_all()

    def apply(self, snapshot: Snapshot) -> None:
        if not snapshot.delta:
            self.workloads = {}
        for workload in snapshot.workloads:
            self.workloads[workload.external_id] = workload
        for object_type, _kind, external_id in snapshot.deleted:
            if object_type == "workload":
                self.workloads.pop(external_id, None)

    def wait_for(
        self, predicate: Callable[[Snapshot], bool], seconds: float = 10.0, after: int = 0
    ) -> tuple[float, Snapshot]:
        """The first snapshot from the ``after``-th on that matches, and when it came."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while True:
                for at, snapshot in self.received[after:]:
                    if predicate(snapshot):
                        return at, snapshot
                if self.error is not None:
                    raise AssertionError(f"watch ended: {self.error!r}") from self.error
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no such snapshot in {seconds} s: {[describe_snapshot(s) for _, s in self.received[after:]]}"
                    )
                self._changed.wait(left)

    @property
    def lists(self) -> int:
        """How many full reads (not deltas) it yielded: 1 unless it had to relist."""
        with self._changed:
            return sum(1 for _, s in self.received if not s.delta)

    def ended(self, seconds: float = 10.0) -> BaseException | None:
        """Wait for the watch to end by itself; what it raised."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.returned_at is not None, seconds), "the watch goes on"
        return self.error

    def mark(self) -> int:
        with self._changed:
            return len(self.received)

    def close(self) -> float:
        """Stop the watch; how long it took to return."""
        asked = time.monotonic()
        self.stop.set()
        assert self._thread is not None
        self._thread.join(10)
        assert self.returned_at is not None, "watch did not return"
        return self.returned_at - asked


def describe_snapshot(snapshot: Snapshot) -> str:
    records = [f"{w.name}:{w.status}" for w in snapshot.workloads]
    causes = [describe(c.to_json()) for c in snapshot.causes.values()]
    return f"{'delta' if snapshot.delta else 'list'} {records} deleted={len(snapshot.deleted)} {causes}"


def record_of(snapshot: Snapshot, container_id: str) -> Workload | None:
    return next((w for w in snapshot.workloads if w.external_id == container_id), None)


def cause_of(snapshot: Snapshot, container_id: str) -> dict[str, Any]:
    return snapshot.causes[("workload", CONTAINER_KIND, container_id)].to_json()
