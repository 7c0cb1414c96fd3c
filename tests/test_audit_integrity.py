"""Tamper-evidence beyond the chain, both engines: the database refuses inserts that do not extend the head, a
re-chained or truncated log fails `audit verify` (audit key and head file outside the database), and no migration
drops the log."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError

from inventory.audit.keys import secrets_for
from inventory.audit.log import (
    GENESIS_HASH,
    JSON_FIELDS,
    SCALAR_FIELDS,
    AuditRecord,
    append,
    canonical_json,
    compute_hash,
    prepare_fields,
    verify_chain,
)
from inventory.audit.models import AuditEntry
from inventory.cli import cli
from inventory.storage.database import SCHEMA_REVISION, Database, open_database
from inventory.timeutil import utcnow


def _fill(db: Database, count: int = 6) -> None:
    for i in range(count):
        append(
            db,
            AuditRecord(
                event="tool_call",
                actor=f"user{i % 2}",
                outcome="success",
                tool="docker.restart",
                target_name=f"c{i}",
                arguments={"timeout": i},
            ),
        )


def _verify(db: Database) -> Any:
    with db.session() as session:
        result = verify_chain(session, audit_secrets=secrets_for(db))
        here = verify_chain(session, in_python=True, audit_secrets=secrets_for(db))
    assert (here.problem, here.checked) == (result.problem, result.checked)
    return result


def _row(db: Database, seq: int) -> dict[str, Any]:
    with db.engine.connect() as conn:
        row = dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = :seq"), {"seq": seq}).mappings().one())
    # PostgreSQL's driver parses json; the stored text is the canonical form again.
    return {
        k: canonical_json(v) if k in ("arguments", "details") and not isinstance(v, str) else v for k, v in row.items()
    }


def _insert(conn: Any, row: dict[str, Any], verb: str = "INSERT", tail: str = "") -> None:
    columns = ", ".join(row)
    values = ", ".join(
        f"CAST(:{name} AS json)"
        if name in ("arguments", "details") and conn.dialect.name == "postgresql"
        else f":{name}"
        for name in row
    )
    conn.execute(text(f"{verb} INTO audit_log ({columns}) VALUES ({values}) {tail}"), row)


def _disable_triggers(db: Database) -> None:
    """What the owner of the table (or a superuser) can do; the runtime role cannot (tests/test_db_roles.py)."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            for name in ("audit_log_no_update", "audit_log_no_delete", "audit_log_extend_head"):
                conn.execute(text(f"DROP TRIGGER {name}"))


def test_replace_upsert_and_out_of_order_inserts_are_refused(db: Database) -> None:
    _fill(db)
    entry = _row(db, 3)
    forged = {**entry, "actor": "mallory"}
    attempts: list[tuple[dict[str, Any], str, str]] = [
        (
            forged,
            "INSERT OR REPLACE" if db.dialect == "sqlite" else "INSERT",
            "" if db.dialect == "sqlite" else "ON CONFLICT (seq) DO UPDATE SET actor = EXCLUDED.actor",
        ),
        ({**forged, "seq": 8, "entry_hash": "f" * 64}, "INSERT", ""),  # skips entry 7
        ({**forged, "seq": 7, "entry_hash": "e" * 64}, "INSERT", ""),  # does not link to the head
        (
            {**forged, "seq": 7, "prev_hash": _row(db, 6)["entry_hash"], "mac": None, "entry_hash": "d" * 64},
            "INSERT",
            "",
        ),
    ]
    if db.dialect == "sqlite":
        # REPLACE colliding on entry_hash would delete entry 3 without firing the delete trigger.
        head = _row(db, 6)["entry_hash"]
        attempts.append(({**forged, "seq": 7, "prev_hash": head}, "INSERT OR REPLACE", ""))
    for row, verb, tail in attempts:
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            _insert(conn, row, verb, tail)
    assert _row(db, 3) == entry
    assert _verify(db).ok and _verify(db).checked == 6


def test_a_re_chained_log_fails_verification(db: Database, tmp_path: Path) -> None:
    """Someone with DDL rights edits entry 3 and recomputes every hash after it: without the key, the macs tell."""
    _fill(db)
    _disable_triggers(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3"))
    prev = _row(db, 2)["entry_hash"]
    for seq in range(3, 7):
        with db.session() as session:
            entry = session.get(AuditEntry, seq)
            new_hash = compute_hash(prev, {name: getattr(entry, name) for name in (*SCALAR_FIELDS, *JSON_FIELDS)})
        with db.engine.begin() as conn:
            conn.execute(
                text("UPDATE audit_log SET prev_hash = :p, entry_hash = :h WHERE seq = :s"),
                {"p": prev, "h": new_hash, "s": seq},
            )
        prev = new_hash
    with db.session() as session:
        assert verify_chain(session).ok  # the chain alone is whole again
    result = _verify(db)
    assert (result.problem.seq, result.problem.kind) == (3, "forged")
    assert "without the audit key" in result.problem.message
    assert _cli_verify(db, tmp_path) == (1, {"seq": 3, "kind": "forged"})


def _cli_verify(db: Database, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    """``inventory audit verify -o json``: its exit code and the first bad entry it names."""
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}}))
    result = CliRunner().invoke(cli, ["--config", str(config), "audit", "verify", "-o", "json"])
    problem = json.loads(result.stdout)["problem"]
    return result.exit_code, {"seq": problem["seq"], "kind": problem["kind"]}


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (["UPDATE audit_log SET outcome = 'denied' WHERE seq = 4"], (4, "changed")),
        (["DELETE FROM audit_log WHERE seq = 2"], (2, "removed")),
        (
            [
                "UPDATE audit_log SET seq = -1 WHERE seq = 3",
                "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                "UPDATE audit_log SET seq = 4 WHERE seq = -1",
            ],
            (3, "out_of_order"),
        ),
        (["DELETE FROM audit_log WHERE seq >= 5"], (5, "truncated")),
        (["DELETE FROM audit_log"], (1, "truncated")),
    ],
    ids=["edit", "delete", "reorder", "truncate-tail", "truncate-all"],
)
def test_audit_verify_names_the_first_bad_entry(
    db: Database, tmp_path: Path, tamper: list[str], expected: tuple[int, str]
) -> None:
    _fill(db)
    _disable_triggers(db)
    with db.engine.begin() as conn:
        for statement in tamper:
            conn.execute(text(statement))
    seq, kind = expected
    assert _cli_verify(db, tmp_path) == (1, {"seq": seq, "kind": kind})


def test_the_key_is_created_once_private_and_the_head_follows_the_log(db: Database) -> None:
    _fill(db, 3)
    audit_secrets = secrets_for(db)
    assert stat.S_IMODE(audit_secrets.key_file.stat().st_mode) == 0o600
    head = audit_secrets.read_head()
    assert head is not None and (head.seq, head.entry_hash) == (3, _row(db, 3)["entry_hash"])
    assert _row(db, 1)["prev_hash"] == GENESIS_HASH and _row(db, 1)["mac"] == audit_secrets.mac(
        1, _row(db, 1)["entry_hash"]
    )


def test_no_downgrade_drops_the_audit_log(db: Database, tmp_path: Path) -> None:
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": db.url}}))
    _fill(db, 3)
    runner = CliRunner()
    for revision in ("0001_initial", "0002_audit", "base"):
        result = runner.invoke(cli, ["--config", str(config), "db", "downgrade", revision])
        assert result.exit_code == 2 and "audit log holds 3 entries" in result.output, result.output
        assert "Traceback" not in result.output
    assert db.current_revision() == SCHEMA_REVISION
    verified = runner.invoke(cli, ["--config", str(config), "audit", "verify"])
    assert verified.exit_code == 0 and "ok: 3 entries" in verified.output


def test_a_temp_table_named_audit_log_cannot_stand_in_for_the_log(migrated_postgres_url: str) -> None:
    """PostgreSQL looks in pg_temp first: the chain trigger must read the real log, whatever the caller made.
    (SQLite has no schemas or search_path: a TEMP table cannot shadow a trigger's table there.)"""
    db = open_database(migrated_postgres_url, migrate=True)
    try:
        _temp_table_attack(db)
    finally:
        db.dispose()


def _temp_table_attack(db: Database) -> None:
    _fill(db, 2)
    fake_head = "f" * 64
    fields = prepare_fields(AuditRecord(event="tool_call", actor="mallory", outcome="success"), utcnow())
    forged = {
        **fields,
        "seq": 3,
        "prev_hash": fake_head,
        "entry_hash": compute_hash(fake_head, fields),
        "mac": "0" * 64,
    }
    with db.engine.connect() as conn:
        # A head of the caller's choosing, in a table the trigger would find first by an unqualified name.
        conn.execute(text("CREATE TEMP TABLE audit_log AS SELECT * FROM public.audit_log"))
        conn.execute(text("UPDATE pg_temp.audit_log SET entry_hash = :fake WHERE seq = 2"), {"fake": fake_head})
        # Into the real log (an unqualified name would now mean the TEMP table): its trigger must refuse.
        real_log = conn.execution_options(schema_translate_map={None: "public"})
        with pytest.raises(DBAPIError, match="must extend the head"):
            real_log.execute(insert(AuditEntry).values(**forged))
        conn.rollback()
    with db.session() as session:
        assert session.execute(select(func.max(AuditEntry.seq))).scalar_one() == 2


def _disable_head_triggers(db: Database) -> None:
    """What the owner of the database (or any writer of a SQLite file) can do to the head it keeps."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        else:
            for name in ("audit_head_forward_only", "audit_head_no_delete"):
                conn.execute(text(f"DROP TRIGGER {name}"))


def test_stripped_macs_and_a_missing_or_rolled_back_head_never_verify(db: Database) -> None:
    _fill(db, 4)
    audit_secrets = secrets_for(db)
    assert _verify(db).ok
    _disable_triggers(db)
    _disable_head_triggers(db)

    # Every mac stripped (the hashes do not change): it would pass for a log written before the key existed.
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET mac = NULL"))
        conn.execute(text("UPDATE audit_head SET mac = NULL"))
    stripped = _verify(db)
    assert stripped.problem is not None and stripped.problem.kind == "forged"
    assert "entry 4, the head, carries no valid mac" in stripped.problem.message

    # ... and the head file deleted too: the tail cannot be checked, which is never ok.
    audit_secrets.head_file.unlink()
    unchecked = _verify(db)
    assert unchecked.problem is not None and unchecked.problem.kind == "unchecked"

    # The tail cut and every head rolled back to the entry before it, the file's written without the key.
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 4"))
        conn.execute(
            text(
                "UPDATE audit_head SET seq = a.seq, entry_hash = a.entry_hash, mac = a.mac "
                "FROM (SELECT seq, entry_hash, mac FROM audit_log WHERE seq = 3) AS a"
            )
        )
        third = conn.execute(text("SELECT entry_hash FROM audit_log WHERE seq = 3")).scalar_one()
    audit_secrets.head_file.write_text(json.dumps({"seq": 3, "entry_hash": third}))
    rolled_back = _verify(db)
    assert rolled_back.problem is not None and rolled_back.problem.kind == "forged"
    assert "is not signed with the audit key" in rolled_back.problem.message
