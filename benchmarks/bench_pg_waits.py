"""What bounding every wait for PostgreSQL costs: statements through the project's engine
(``storage/pg_waits.BoundedConnection``) against a plain psycopg engine, in one run.

    .venv/bin/python benchmarks/bench_pg_waits.py [--postgres URL] [--statements 5000] [--rounds 5]

Printed: the median time per round trip (``SELECT 1``) and per 1,000-row ``executemany`` insert on
each engine, and their ratio; then how long after a server falls silent (behind a loopback proxy
that stops forwarding, as a hung server or pooler does) a statement fails, for a few
``answer_timeout`` values. The plain engine would wait for ever there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, create_engine, text

from inventory.storage.database import Database

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def round_trips(engine: Engine, statements: int) -> float:
    """Seconds per ``SELECT 1``."""
    with engine.connect() as connection:
        started = time.perf_counter()
        for _ in range(statements):
            connection.execute(text("SELECT 1"))
        return (time.perf_counter() - started) / statements


def inserts(engine: Engine, rows: int = 1000) -> float:
    """Seconds for one executemany of ``rows`` rows into a temporary table."""
    with engine.begin() as connection:
        connection.execute(text("CREATE TEMPORARY TABLE bench_rows (id int, name text) ON COMMIT DROP"))
        started = time.perf_counter()
        connection.execute(
            text("INSERT INTO bench_rows VALUES (:id, :name)"), [{"id": i, "name": f"row-{i}"} for i in range(rows)]
        )
        return time.perf_counter() - started


def silence_detected_after(url: str, answer_timeout: float) -> float:
    """Seconds from a server falling silent to the statement waiting on it failing."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from inventory.testing.silent_proxy import SilentProxy

    target = make_url(url)
    with SilentProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        through = target.set(host="127.0.0.1", port=proxy.port).update_query_dict(
            {"answer_timeout": str(answer_timeout)}
        )
        db = Database(through.render_as_string(hide_password=False))
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                proxy.go_silent()
                started = time.perf_counter()
                try:
                    connection.execute(text("SELECT 2"))
                except OperationalError:
                    return time.perf_counter() - started
                raise SystemExit("the silent server answered")
        finally:
            db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_URL)
    parser.add_argument("--statements", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    engines = {"plain psycopg": create_engine(args.postgres), "bounded (ours)": Database(args.postgres).engine}
    trips: dict[str, list[float]] = {name: [] for name in engines}
    batches: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):  # interleaved, so that a noisy moment hits both alike
        for name, engine in engines.items():
            trips[name].append(round_trips(engine, args.statements))
            batches[name].append(inserts(engine))
    print(f"PostgreSQL {args.postgres.split('@')[-1]}, medians of {args.rounds} rounds")
    for name in engines:
        trip, batch = statistics.median(trips[name]), statistics.median(batches[name])
        print(f"  {name:15} SELECT 1: {trip * 1e6:7.1f} us   1,000-row insert: {batch * 1e3:7.2f} ms")
    plain, ours = (statistics.median(trips[name]) for name in engines)
    plain_batch, ours_batch = (statistics.median(batches[name]) for name in engines)
    print(f"  ratio (ours / plain): round trip {ours / plain:.2f}x, insert {ours_batch / plain_batch:.2f}x")
    print("a server that falls silent mid-session (the plain engine waits for ever):")
    for answer_timeout in (1.0, 2.0, 5.0):
        detected = silence_detected_after(args.postgres, answer_timeout)
        print(f"  answer_timeout {answer_timeout:g}s: the statement failed after {detected:.2f} s")


if __name__ == "__main__":
    main()
