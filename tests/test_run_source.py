"""Running a source (inventory.sync.SourceRunner): the one path of `sync --once`, the loop and the server."""

from __future__ import annotations

import threading
import time

from connectors.static.connector import StaticConnector
from inventory.audit.log import AuditFilter, list_entries
from inventory.config import build_config
from inventory.connector import Connector, ConnectorRegistry, SourceConfig
from inventory.locks import source_lock
from inventory.outcome import SourceOutcome, SyncStatus
from inventory.records import Host, Snapshot
from inventory.storage.database import Database
from inventory.sync import Collected, SourceRunner, select_sources


def test_every_outcome_reaches_the_observers_and_every_stored_run_the_audit_log(db: Database) -> None:
    raw = {
        "sources": [
            {"type": "static", "name": "lab", "hosts": [{"id": "nas1", "name": "nas"}]},
            {"type": "static", "name": "broken", "path": "/nonexistent/machines.yaml"},
            {"type": "static", "name": "busy", "hosts": [{"id": "sw1", "name": "switch"}]},
        ]
    }
    registry = ConnectorRegistry.of(StaticConnector)
    config = build_config(raw, registry=registry)
    heard: list[SourceOutcome] = []
    phases: list[tuple[str, str]] = []
    runner = SourceRunner(db, registry, progress=lambda s, p: phases.append((s, p)), observers=[heard.append])
    with source_lock(db, "busy"):  # another process is syncing it
        outcomes = runner.run_all([*select_sources(config), SourceConfig(type="retired", name="gone")])

    assert heard == outcomes
    assert [(o.source, o.status) for o in outcomes] == [
        ("lab", SyncStatus.SUCCESS),
        ("broken", SyncStatus.FAILED),
        ("busy", SyncStatus.LOCKED),
        ("gone", SyncStatus.FAILED),
    ]
    assert outcomes[3].error == "source 'gone': unknown source type 'retired' (available: static)"
    assert phases == [("lab", "collecting"), ("lab", "writing 1 objects"), ("broken", "collecting")]
    # The audit log summarises the runs sync_runs holds: neither the lock nor the missing connector made one.
    with db.session() as session:
        logged = list_entries(session, AuditFilter(event="sync"))
    assert [(e["source"], e["outcome"], e["details"]["run_id"]) for e in logged] == [
        ("lab", "success", outcomes[0].run_id),
        ("broken", "failed", outcomes[1].run_id),
    ]


class _MeetingConnector(Connector):
    """Answers only once every source of the test is collecting at the same time."""

    type_name = "meeting"

    def __init__(self, config: SourceConfig, meeting: threading.Barrier) -> None:
        super().__init__(config)
        self.meeting = meeting

    def collect(self) -> Snapshot:
        self.meeting.wait(timeout=20)
        return Snapshot(hosts=[Host("node", "n1", f"{self.source_name}-node")])


class _WatchedRunner(SourceRunner):
    """Counts the writes in progress at once (the database side is real; only the count is added)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, ConnectorRegistry.of(_MeetingConnector))
        self._guard = threading.Lock()
        self.writing = 0
        self.most_writing = 0

    def write(self, collected: Collected) -> SourceOutcome:
        with self._guard:
            self.writing += 1
            self.most_writing = max(self.most_writing, self.writing)
        try:
            time.sleep(0.2)  # long enough that two unserialised writes would overlap
            return super().write(collected)
        finally:
            with self._guard:
                self.writing -= 1


def test_sources_may_collect_at_once_from_threads_while_writes_stay_one_at_a_time(db: Database) -> None:
    names = ("a", "b", "c")
    meeting = threading.Barrier(len(names))
    runner = _WatchedRunner(db)
    outcomes: dict[str, SourceOutcome] = {}

    def run(name: str) -> None:
        outcomes[name] = runner.run_connector(_MeetingConnector(SourceConfig(type="meeting", name=name), meeting))

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Each collect waited for the others: had collecting been serialised, the barrier would have broken.
    assert {name: (o.status, o.objects) for name, o in outcomes.items()} == dict.fromkeys(
        names, (SyncStatus.SUCCESS, 1)
    )
    assert runner.most_writing == 1
