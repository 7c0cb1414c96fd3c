"""The audit log: the database refuses changes, the chain finds any edit, removal or move, writers share one chain."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from inventory.audit.log import (
    AuditFilter,
    AuditRecord,
    VerifyResult,
    append,
    export_jsonl,
    list_entries,
    read_checkpoint,
    verify_chain,
)
from inventory.cli import cli
from inventory.principals import os_user_name
from inventory.storage.database import Database

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CANARY = "canary-Zq81-do-not-leak"


def _fill(db: Database, count: int = 5) -> None:
    for i in range(count):
        append(
            db,
            AuditRecord(
                event="tool_call",
                actor=f"user{i % 2}",
                outcome="success",
                tool="docker.restart",
                target=f"workload:src/container/c{i}",
                target_name=f"c{i}",
                arguments={"timeout": i},
                tool_class="SAFE_MUTATE",
                decision="allow",
                matched_rule="default:SAFE_MUTATE",
            ),
        )


def _verify(db: Database) -> VerifyResult:
    """Verify, and check that re-hashing in Python finds exactly what the database's own walk finds."""
    with db.session() as session:
        result = verify_chain(session)
        here = verify_chain(session, in_python=True)
    assert (here.problem, here.checked, here.last_seq, here.last_hash) == (
        result.problem,
        result.checked,
        result.last_seq,
        result.last_hash,
    )
    return result


def _drop_triggers(db: Database) -> None:
    """What an attacker with DDL rights does first: only then can rows change, and the chain must tell."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("DROP TRIGGER audit_log_no_update_delete ON audit_log"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
            conn.execute(text("DROP TRIGGER audit_log_no_delete"))


REFUSED = [
    "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
    "DELETE FROM audit_log WHERE seq = 3",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
]


def test_database_refuses_to_change_the_audit_log(db: Database) -> None:
    _fill(db)
    # SQLite has no TRUNCATE; its DELETE without WHERE is refused by the delete trigger.
    statements = REFUSED if db.dialect == "postgresql" else REFUSED[:3]
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    with db.session() as session:
        assert [r["actor"] for r in list_entries(session)] == ["user0", "user1", "user0", "user1", "user0"]
    assert _verify(db).ok


def test_verify_finds_an_edited_entry(db: Database) -> None:
    _fill(db)
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET outcome = 'failed' WHERE seq = 3"))
    result = _verify(db)
    assert not result.ok and result.problem is not None
    assert (result.problem.seq, result.problem.kind) == (3, "changed")
    assert result.checked == 2


def test_verify_finds_a_deleted_entry(db: Database) -> None:
    _fill(db)
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    result = _verify(db)
    assert result.problem is not None and (result.problem.seq, result.problem.kind) == (2, "removed")


def test_verify_finds_a_deleted_entry_even_when_the_rest_is_renumbered(db: Database) -> None:
    _fill(db)
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
        for seq in (3, 4, 5):
            conn.execute(text("UPDATE audit_log SET seq = :new WHERE seq = :old"), {"new": seq - 1, "old": seq})
    result = _verify(db)
    assert result.problem is not None and (result.problem.seq, result.problem.kind) == (2, "out_of_order")


def test_verify_finds_reordered_entries(db: Database) -> None:
    _fill(db)
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 3"))
        conn.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 4"))
        conn.execute(text("UPDATE audit_log SET seq = 4 WHERE seq = -1"))
    result = _verify(db)
    assert result.problem is not None and (result.problem.seq, result.problem.kind) == (3, "out_of_order")


def test_awkward_values_hash_the_same_in_python_and_in_postgresql(db: Database) -> None:
    """PostgreSQL verifies with a payload it builds itself; it must equal the one hashed at append time."""
    awkward = 'q"uote \\ back/slash\nnew line\ttab\x01\x1f é 漢字 😀 '
    append(
        db,
        AuditRecord(
            event="tool_call",
            actor=awkward,
            outcome="failed",
            tool="kubernetes.scale_deployment",
            target_name=awkward,
            arguments={
                "replicas": 0,
                "ratio": 0.1 + 0.2,
                "big": 2**62,
                "nested": {"z": [awkward, None, True], "a": -0.0},
            },
            approval_id=2**40,
            error=awkward,
            duration_ms=0.0004,
            details={"": awkward},
        ),
    )
    append(db, AuditRecord(event="sync", actor="system:sync", outcome="success", duration_ms=5.0))
    result = _verify(db)  # PostgreSQL's own payload and hash equal Python's
    assert result.ok and result.checked == 2, result.problem
    with db.session() as session:
        first = list_entries(session)[0]
    assert first["actor"] == awkward and first["arguments"]["nested"]["z"][0] == awkward and first["duration_us"] == 0


def test_checkpoint_catches_removal_of_the_newest_entries(db: Database, tmp_path: Path) -> None:
    _fill(db)
    checkpoint = tmp_path / "audit.jsonl"
    with db.session() as session, checkpoint.open("w") as out:
        assert export_jsonl(session, out) == 5
    lines = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5] and lines[1]["prev_hash"] == lines[0]["entry_hash"]
    mark = read_checkpoint(checkpoint)
    with db.session() as session:
        assert verify_chain(session, mark).ok
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 4"))
    with db.session() as session:
        assert verify_chain(session).ok  # the truncated chain alone looks whole...
        result = verify_chain(session, mark)  # ...but not against the exported checkpoint
    assert result.problem is not None and result.problem.kind == "removed" and "newest" in result.problem.message


def test_secrets_in_arguments_reach_no_entry_and_no_log_line(db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    append(
        db,
        AuditRecord(
            event="tool_call",
            actor="alice",
            outcome="failed",
            tool="docker.restart",
            target=f"https://admin:{CANARY}@engine.example/containers/1",
            arguments={
                "password": CANARY,
                "nested": {"deep": [{"Authorization": f"Bearer {CANARY}"}, {"api_key": CANARY}]},
                "url": f"postgresql://user:{CANARY}@db/x",
                "note": f"Bearer {CANARY}",
                "private_key": CANARY,
            },
            error=f"login failed with token={CANARY}",
            details={"secret": CANARY},
        ),
    )
    with db.session() as session, db.engine.connect() as conn:
        stored = json.dumps(list_entries(session), default=str)
        raw = json.dumps([list(r) for r in conn.execute(text("SELECT * FROM audit_log"))], default=str)
    assert CANARY not in stored and CANARY not in raw
    assert CANARY not in caplog.text
    assert "***" in stored


def test_list_filters(db: Database) -> None:
    _fill(db, 6)
    with db.session() as session:
        assert len(list_entries(session, AuditFilter(actor="user1"))) == 3
        assert [e["seq"] for e in list_entries(session, AuditFilter(target="c4"))] == [5]
        assert list_entries(session, AuditFilter(tool_class="safe_mutate", limit=2, newest_first=True))[-1]["seq"] == 6
        assert list_entries(session, AuditFilter(outcome="denied")) == []


_WRITER = """
import sys
from inventory.audit.log import AuditRecord, append
from inventory.storage.database import Database
db = Database(sys.argv[1])
for i in range(int(sys.argv[3])):
    record = AuditRecord(event="tool_call", actor=sys.argv[2], outcome="success",
                         tool="docker.stop", arguments={"i": i})
    append(db, record)
db.dispose()
"""


def test_concurrent_appends_from_several_processes_keep_one_chain(db: Database) -> None:
    writers, each = 4, 25
    processes = [
        subprocess.Popen([sys.executable, "-c", _WRITER, db.url, f"w{n}", str(each)], cwd=PROJECT_ROOT)
        for n in range(writers)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0] * writers
    result = _verify(db)
    assert result.ok, result.problem
    assert result.checked == result.last_seq == writers * each
    with db.session() as session:
        actors = [e["actor"] for e in list_entries(session)]
    assert {a: actors.count(a) for a in set(actors)} == {f"w{n}": each for n in range(writers)}


def test_cli_audit_list_verify_export(db: Database, tmp_path: Path) -> None:
    _fill(db, 4)
    runner = CliRunner()
    base = ["--database-url", db.url]
    listed = runner.invoke(
        cli, [*base, "audit", "list", "--actor", "user0", "--since", "1d", "-o", "json"], catch_exceptions=False
    )
    assert listed.exit_code == 0, listed.output
    assert [e["seq"] for e in json.loads(listed.output)] == [1, 3]
    shown = runner.invoke(cli, [*base, "audit", "show", "2", "-o", "json"], catch_exceptions=False)
    assert json.loads(shown.output)["target_name"] == "c1"
    export = tmp_path / "export.jsonl"
    assert runner.invoke(cli, [*base, "audit", "export", "--format", "jsonl", "--file", str(export)]).exit_code == 0
    verified = runner.invoke(cli, [*base, "audit", "verify", "--checkpoint", str(export)], catch_exceptions=False)
    assert verified.exit_code == 0 and "4 entries" in verified.output
    _drop_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE seq = 2"))
    broken = runner.invoke(cli, [*base, "audit", "verify", "-o", "json"])
    assert broken.exit_code == 1
    assert json.loads(broken.output)["problem"] == {
        "seq": 2,
        "kind": "changed",
        "message": "entry 2 was changed: its content no longer matches its hash",
    }


def test_each_sync_run_appends_one_summary_entry_per_source(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.static.connector import StaticConnector
    from inventory.config import build_config
    from inventory.connector import ConnectorRegistry
    from inventory.sync import sync_all

    monkeypatch.setenv("INVENTORY_ACTOR", "scheduler")  # ignored: the actor of a sync is the OS user running it
    raw = {
        "sources": [
            {
                "type": "static",
                "name": "lab",
                "hosts": [{"id": "nas1", "name": "nas"}],
                "workloads": [{"id": "plex", "name": "plex", "host": "nas1"}],
            },
            {"type": "static", "name": "broken", "path": "/nonexistent/machines.yaml"},
        ]
    }
    config = build_config(raw, registry=ConnectorRegistry.of(StaticConnector))
    outcomes = sync_all(db, config, ConnectorRegistry.of(StaticConnector))
    assert [o.status for o in outcomes] == ["success", "failed"]
    with db.session() as session:
        logged = list_entries(session, AuditFilter(event="sync"))
    me = os_user_name()
    # Sources collect concurrently: the summaries come in the order the runs ended.
    assert sorted((e["source"], e["outcome"], e["actor"]) for e in logged) == [
        ("broken", "failed", me),
        ("lab", "success", me),
    ]
    lab = next(e for e in logged if e["source"] == "lab")
    assert lab["details"]["created"] == 2 and lab["details"]["run_id"] == outcomes[0].run_id
    assert "broken" in next(e for e in logged if e["source"] == "broken")["error"]
    assert _verify(db).ok


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (["DELETE FROM audit_log WHERE seq = 20"], (20, "removed")),
        (["DELETE FROM audit_log WHERE seq = 21"], (21, "removed")),
        (["DELETE FROM audit_log WHERE seq = 1"], (1, "removed")),
        (["UPDATE audit_log SET outcome = 'denied' WHERE seq = 21"], (21, "changed")),
        (
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 20",
                "UPDATE audit_log SET seq = 20 WHERE seq = 21",
                "UPDATE audit_log SET seq = 21 WHERE seq = -1",
            ],
            (20, "out_of_order"),
        ),
        ([], None),
    ],
)
def test_verify_in_parallel_slices_finds_problems_at_slice_edges(
    db: Database, monkeypatch: pytest.MonkeyPatch, tamper: list[str], expected: tuple[int, str] | None
) -> None:
    import inventory.audit.log as audit_log

    monkeypatch.setattr(audit_log, "_PARALLEL_FROM", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # two slices: 1..20 and 21..40
    _fill(db, 40)
    _drop_triggers(db)
    with db.engine.begin() as conn:
        for statement in tamper:
            conn.execute(text(statement))
    result = _verify(db)
    assert (None if result.problem is None else (result.problem.seq, result.problem.kind)) == expected
