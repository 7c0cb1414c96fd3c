"""Audit log at scale on PostgreSQL: chained appends from concurrent writers, and verification.

    .venv/bin/python benchmarks/bench_audit.py [--entries 10000] [--writers 4] [--verify 100000] [--postgres URL]

Printed, all measured in this run, on a new throw-away database:

- chained appends: ``--entries`` audit entries appended by ``--writers`` processes at
  once, each entry its own transaction (advisory lock, read the last hash, insert);
  entries per second, and whether the chain is intact afterwards;
- plain inserts: the same rows by the same number of processes, one INSERT per commit
  on a plain psycopg connection, into a table of the same shape without lock or
  chain (the floor of "one row per commit"); rows per second; and the ratio
  chained / plain (goal: at least 0.5);
- verification: ``--verify`` entries walked and re-hashed by ``verify_chain``, by
  the database itself (what ``inventory audit verify`` does on PostgreSQL) and
  re-hashed in Python (``--in-python``, as an export is checked off the box);
  entries per second (goal: at least 100,000/s).

Plain and chained rounds alternate (``--rounds``) and medians are compared, so that
both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inventory.audit.log import (  # noqa: E402
    GENESIS_HASH,
    JSON_FIELDS,
    SCALAR_FIELDS,
    AuditRecord,
    append,
    compute_hash,
    prepare_fields,
    verify_chain,
)
from inventory.audit.models import AuditEntry  # noqa: E402
from inventory.storage.database import Database, open_database  # noqa: E402
from inventory.testing.scratch_postgres import ScratchDatabase, libpq_conninfo  # noqa: E402
from inventory.timeutil import utcnow  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def record(writer: int, index: int) -> AuditRecord:
    """A realistic tool-call entry: nested arguments, a secret to redact, details."""
    return AuditRecord(
        event="tool_call",
        actor=f"agent-{writer}",
        outcome="success",
        tool="kubernetes.scale_deployment",
        target=f"workload:prod-cluster/deployment/{uuid.UUID(int=writer * 1_000_000 + index + 1)}",
        target_name=f"web-{index % 50}",
        source="prod-cluster",
        arguments={
            "replicas": index % 7,
            "reason": "load test",
            "token": "not-a-real-token",
            "labels": {"app": "web", "tier": "frontend"},
        },
        tool_class="SAFE_MUTATE",
        decision="allow",
        matched_rule="default:SAFE_MUTATE",
        duration_ms=12.5,
        policy_hash="0" * 64,
        details={"summary": "scaled", "replicas_before": 3},
    )


def chained_writer(url: str, writer: int, count: int, ready: Any, go: Any) -> None:
    db = Database(url)
    append(db, record(writer, -1))  # connect and warm up before the clock starts
    ready.release()
    go.wait()
    for index in range(count):
        append(db, record(writer, index))
    db.dispose()


def plain_writer(url: str, writer: int, count: int, ready: Any, go: Any) -> None:
    """The floor: the same rows, one INSERT per commit (autocommit), no lock, no chain."""
    import psycopg

    statement = (
        "INSERT INTO plain_audit (seq, prev_hash, entry_hash, "
        + ", ".join((*SCALAR_FIELDS, *JSON_FIELDS))
        + ") VALUES (nextval('plain_audit_seq'), %(prev_hash)s, %(entry_hash)s, "
        + ", ".join(f"%({name})s" for name in SCALAR_FIELDS)
        + ", %(arguments)s::json, %(details)s::json)"
    )

    def row(index: int) -> dict[str, Any]:
        fields = prepare_fields(record(writer, index), utcnow())
        return {**fields, "prev_hash": GENESIS_HASH, "entry_hash": uuid.uuid4().hex * 2}

    with psycopg.connect(libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(statement, row(-1))
        ready.release()
        go.wait()
        for index in range(count):
            conn.execute(statement, row(index))


def run_writers(target: Callable[..., None], url: str, writers: int, total: int) -> float:
    """Start the writers, wait until all are connected, then time them from one start signal."""
    context = multiprocessing.get_context("spawn")
    ready, go = context.Semaphore(0), context.Event()
    share = [total // writers + (1 if n < total % writers else 0) for n in range(writers)]
    processes = [context.Process(target=target, args=(url, n, share[n], ready, go)) for n in range(writers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    started = time.perf_counter()
    go.set()
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise SystemExit(f"a writer failed (exit {process.exitcode})")
    return time.perf_counter() - started


def fill_chain(db: Database, count: int) -> None:
    """Append ``count`` chained entries fast (batched, one writer) to have something to verify."""
    with db.session() as session:
        last = session.execute(text("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
    batch: list[dict[str, Any]] = []
    with db.engine.begin() as conn:
        for index in range(count):
            fields = prepare_fields(record(9, index), utcnow())
            entry_hash = compute_hash(prev, fields)
            seq += 1
            batch.append({"seq": seq, "prev_hash": prev, "entry_hash": entry_hash, **fields})
            prev = entry_hash
            if len(batch) == 5000:
                conn.execute(insert(AuditEntry), batch)
                batch = []
        if batch:
            conn.execute(insert(AuditEntry), batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="Alternating plain/chained rounds; medians are compared.")
    parser.add_argument("--verify", type=int, default=100_000)
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help="An admin URL; a new database is created and dropped."
    )
    options = parser.parse_args()

    scratch = ScratchDatabase(options.postgres, prefix="inventory_bench_audit")
    url = scratch.url
    try:
        db = open_database(url, migrate=True)
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE plain_audit (LIKE audit_log INCLUDING ALL)"))
            conn.execute(text("CREATE SEQUENCE plain_audit_seq"))

        print(
            f"PostgreSQL {db.engine.connect().execute(text('SHOW server_version')).scalar()}, {options.writers} "
            "writers, one entry per transaction"
        )
        # Rounds alternate plain and chained so that both see the same load on a shared machine.
        plain_rates, chained_rates = [], []
        for round_number in range(1, options.rounds + 1):
            plain_seconds = run_writers(plain_writer, url, options.writers, options.entries)
            plain_rates.append(options.entries / plain_seconds)
            chained_seconds = run_writers(chained_writer, url, options.writers, options.entries)
            chained_rates.append(options.entries / chained_seconds)
            print(
                f"round {round_number}: plain {plain_rates[-1]:>8,.0f} rows/s, chained {chained_rates[-1]:>8,.0f} "
                f"entries/s, ratio {chained_rates[-1] / plain_rates[-1]:.2f}"
            )
        with db.session() as session:
            result = verify_chain(session)
        expected = options.rounds * (options.entries + options.writers)
        intact = result.ok and result.checked == expected
        plain_rate, chained_rate = statistics.median(plain_rates), statistics.median(chained_rates)
        print(f"plain inserts (median of {options.rounds}):   {plain_rate:>9,.0f} rows/s")
        print(
            f"chained appends (median of {options.rounds}): {chained_rate:>9,.0f} entries/s; chain intact: {intact} "
            f"({result.checked} entries)"
        )
        print(f"ratio chained / plain: {chained_rate / plain_rate:.2f} (goal >= 0.50)")

        extra = max(0, options.verify - result.checked)
        fill_chain(db, extra)
        for mode, in_python in (("in the database", False), ("re-hashed in Python", True)):
            with db.session() as session:
                started = time.perf_counter()
                result = verify_chain(session, in_python=in_python)
                seconds = time.perf_counter() - started
            print(
                f"verify {mode}: {result.checked:>7} entries in {seconds:5.2f} s = {result.checked / seconds:>9,.0f} "
                f"entries/s; ok: {result.ok}"
            )
        print("(goal: verify at least 100,000 entries/s; `inventory audit verify` walks in the database on PostgreSQL)")
        db.dispose()
    finally:
        scratch.drop()


if __name__ == "__main__":
    main()
