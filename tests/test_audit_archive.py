"""Archiving the audit log, both engines: old entries move to a file behind a keyed checkpoint, only that prefix can
be deleted, and `audit verify` checks the database alone (from the checkpoint) or archives and database as one chain;
an edited or missing archive and a forged checkpoint fail, naming the entry."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from inventory.audit.archive import archive, verify_with_archives
from inventory.audit.keys import secrets_for
from inventory.audit.log import AuditRecord, append, checkpoint_mac, export_line, verify_chain
from inventory.audit.models import AuditCheckpoint, AuditEntry
from inventory.cli import cli
from inventory.errors import UsageError
from inventory.storage.database import Database
from inventory.storage.grants import runtime_grants


def _fill(db: Database, count: int) -> None:
    for i in range(count):
        append(db, AuditRecord(event="tool_call", actor="alice", outcome="success", tool="t", arguments={"i": i}))


def _at(db: Database, seq: int) -> Any:
    with db.session() as session:
        return session.execute(select(AuditEntry.at).where(AuditEntry.seq == seq)).scalar_one()


def _seqs(db: Database) -> list[int]:
    with db.session() as session:
        return list(session.execute(select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars())


def _archive_before(db: Database, seq: int, path: Path, batch_size: int = 5000) -> Any:
    """Archive the entries before ``seq``."""
    return archive(db, _at(db, seq), path, actor="operator", batch_size=batch_size)


def _verify(db: Database, *archives: Path) -> Any:
    with db.session() as session:
        if archives:
            return verify_with_archives(session, archives, secrets_for(db))
        return verify_chain(session, audit_secrets=secrets_for(db))


def _cli(db: Database, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}}))
    return CliRunner().invoke(cli, ["--config", str(config), "audit", *args])


def test_archive_moves_a_prefix_and_verify_checks_both_ways(db: Database, tmp_path: Path) -> None:
    _fill(db, 12)
    first = tmp_path / "first.jsonl"
    done = _archive_before(db, 6, first, batch_size=2)  # entries 1..5, deleted in three batches
    assert (done.first_seq, done.last_seq, done.entries, done.deleted) == (1, 5, 5, 5)
    assert [json.loads(line)["seq"] for line in first.read_text().splitlines()] == [1, 2, 3, 4, 5]
    line = json.loads(first.read_text().splitlines()[0])
    assert {"seq", "prev_hash", "entry_hash", "mac", "at", "arguments"} <= set(line)
    assert _seqs(db) == list(range(6, 14))  # 13: the archive entry itself

    # A second archive continues the chain; the newest entry always stays.
    second = tmp_path / "second.jsonl"
    later = archive(db, _at(db, 13) + timedelta(days=1), second, actor="operator")
    assert (later.first_seq, later.last_seq) == (6, 12)
    assert _seqs(db) == [13, 14]
    _fill(db, 2)

    alone = _verify(db)
    assert alone.ok and (alone.start_seq, alone.checked, alone.last_seq) == (12, 4, 16)
    both = _verify(db, second, first)  # any order
    assert both.ok and (both.archived, both.checked, both.last_seq) == (12, 4, 16)

    text_out = _cli(db, tmp_path, "verify")
    assert text_out.exit_code == 0 and "starting at the checkpoint after entry 12" in text_out.output
    with_archives = _cli(db, tmp_path, "verify", "--archive", str(first), "--archive", str(second))
    assert with_archives.exit_code == 0, with_archives.output
    assert "12 archived entries and 4 in the database, one chain from entry 1" in with_archives.output
    logged = _cli(db, tmp_path, "list", "--event", "archive", "-o", "json")
    assert [row["target"] for row in json.loads(logged.stdout)] == ["audit:1..5", "audit:6..12"]


def test_an_edited_or_missing_archive_fails_naming_the_entry(db: Database, tmp_path: Path) -> None:
    _fill(db, 8)
    first, second = tmp_path / "a1.jsonl", tmp_path / "a2.jsonl"
    _archive_before(db, 4, first)
    _archive_before(db, 8, second)  # entries 4..7

    missing = _verify(db, second)
    assert not missing.ok and missing.problem.seq == 1 and "entries 1..3 missing" in missing.problem.message
    only_first = _verify(db, first)
    assert not only_first.ok and "entries 4..7 are archived but not checked" in only_first.problem.message
    assert "a2.jsonl" in only_first.problem.message  # the checkpoint names the archive not given

    lines = second.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["actor"] = "mallory"
    second.write_text("\n".join([lines[0], json.dumps(edited, sort_keys=True), *lines[2:]]) + "\n")
    result = _verify(db, first, second)
    assert (result.problem.seq, result.problem.kind) == (5, "changed")
    assert "entry 5 in" in result.problem.message and "a2.jsonl" in result.problem.message
    cli = _cli(db, tmp_path, "verify", "--archive", str(first), "--archive", str(second), "-o", "json")
    assert cli.exit_code == 1 and json.loads(cli.stdout)["problem"]["seq"] == 5

    # Same entries, other bytes (re-serialized): the chain holds, the recorded file hash does not.
    second.write_text("\n".join(json.dumps(json.loads(x), separators=(",", ":")) for x in lines) + "\n")
    reformatted = _verify(db, first, second)
    assert reformatted.problem.kind == "checkpoint" and "its sha256 differs" in reformatted.problem.message


def test_deletes_above_the_checkpoint_and_forged_checkpoints_are_refused(db: Database, tmp_path: Path) -> None:
    _fill(db, 6)
    _archive_before(db, 3, tmp_path / "a.jsonl")  # 1..2 archived
    with db.session() as session:
        head_hash = session.execute(select(AuditEntry.entry_hash).where(AuditEntry.seq == 4)).scalar_one()
    for statement in (
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'x'",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    assert _seqs(db) == [3, 4, 5, 6, 7]

    row = {"first_seq": 3, "archived_at": "2026-01-01 00:00:00", "by": "mallory", "name": "x", "sha": "0" * 64}
    insert = (
        "INSERT INTO audit_checkpoints (first_seq, last_seq, entry_hash, archived_at, archived_by, archive_name, "
        "archive_sha256, mac) VALUES (:first_seq, :last_seq, :entry_hash, :archived_at, :by, :name, :sha, :mac)"
    )
    refused = [
        {"last_seq": 4, "entry_hash": "f" * 64},  # no such entry
        {"last_seq": 7, "entry_hash": "f" * 64},  # the newest entry
        {"last_seq": 4, "entry_hash": head_hash, "first_seq": 1},  # does not follow the last checkpoint
    ]
    for values in refused:
        with pytest.raises(DBAPIError, match="audit_checkpoints"), db.engine.begin() as conn:
            conn.execute(text(insert), {**row, "mac": "0" * 64, **values})
    with pytest.raises(DBAPIError, match="never changed"), db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))

    # A checkpoint the database accepts (it names entry 4) but written without the key: verify names it, and
    # the entries it let go are gone from the database only.
    with db.engine.begin() as conn:
        conn.execute(text(insert), {**row, "last_seq": 4, "entry_hash": head_hash, "mac": "0" * 64})
        conn.execute(text("DELETE FROM audit_log WHERE seq <= 4"))
    forged = _verify(db)
    assert (forged.problem.seq, forged.problem.kind) == (4, "checkpoint")
    assert (
        "the checkpoint after entry 4" in forged.problem.message and "without the audit key" in forged.problem.message
    )
    cli = _cli(db, tmp_path, "verify")
    assert cli.exit_code == 1 and "checkpoint after entry 4" in cli.stderr


def test_archive_refuses_a_broken_log_and_keeps_the_newest_entry(db: Database, tmp_path: Path) -> None:
    _fill(db, 1)
    nothing = archive(db, _at(db, 1) + timedelta(days=1), tmp_path / "a.jsonl", actor="op")  # only the newest
    assert nothing.entries == 0 and not (tmp_path / "a.jsonl").exists() and _seqs(db) == [1]
    out = _cli(db, tmp_path, "archive", "--before", "2000-01-01")
    assert out.exit_code == 0 and "nothing to archive" in out.output

    _fill(db, 3)
    with db.engine.begin() as conn:  # an edit by someone with DDL rights
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2"))
    with pytest.raises(UsageError, match="entry 2 was changed"):
        _archive_before(db, 4, tmp_path / "b.jsonl")
    assert not (tmp_path / "b.jsonl").exists() and _seqs(db) == [1, 2, 3, 4]
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(AuditCheckpoint)).scalar_one() == 0


def test_the_runtime_role_only_reads_checkpoints() -> None:
    grants = runtime_grants("inventory")
    assert any(g.startswith("GRANT SELECT ON") and "audit_checkpoints" in g for g in grants)
    assert not any("audit_checkpoints" in g for g in grants if "INSERT" in g or "DELETE" in g)


def test_an_interrupted_archive_verifies_and_the_next_run_finishes_it(db: Database, tmp_path: Path) -> None:
    """The file and the checkpoint were written, the process died before deleting: entries 1..3 linger."""
    _fill(db, 5)
    path = tmp_path / "a.jsonl"
    with db.session() as session:
        entries = session.execute(select(AuditEntry).where(AuditEntry.seq <= 3).order_by(AuditEntry.seq)).scalars()
        path.write_text("".join(export_line(entry) for entry in entries))
        last_hash = session.execute(select(AuditEntry.entry_hash).where(AuditEntry.seq == 3)).scalar_one()
    checkpoint = AuditCheckpoint(
        first_seq=1,
        last_seq=3,
        entry_hash=last_hash,
        archived_at=_at(db, 5),
        archived_by="operator",
        archive_name=path.name,
        archive_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    checkpoint.mac = checkpoint_mac(secrets_for(db), checkpoint)
    with db.write_session() as session:
        session.add(checkpoint)

    for in_python in (False, True):
        with db.session() as session:
            alone = verify_chain(session, in_python=in_python, audit_secrets=secrets_for(db))
        assert alone.ok and (alone.start_seq, alone.checked) == (3, 2)
    assert _verify(db, path).ok and _verify(db, path).archived == 3
    out = _cli(db, tmp_path, "archive", "--before", "2000-01-01")
    assert out.exit_code == 0 and "3 archived entries left by an earlier run deleted" in out.output
    assert _seqs(db) == [4, 5]
    assert _verify(db, path).ok
