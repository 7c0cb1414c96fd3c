"""Several `inventory serve --sync` replicas on one PostgreSQL: the sources spread over them and never sync twice at
once, web sessions and approvals are shared, one audit chain with a head the database keeps, a replica with another
audit key refuses to start, and a replica killed in the middle of a write loses nothing while the other carries on.

The replicas are real processes (two, started once for the module) running as a least-privilege runtime role on a
scratch database; the storage pieces under them (audit head, sessions, orphaned runs) are also tested on SQLite.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import POSTGRES_ADMIN_URL, PROJECT_ROOT, require_postgres
from server_support import TOKEN_ISSUER
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sync_support import child_env, inventory_command, run_inventory, write_inventory
from test_audit import _drop_triggers

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.audit.head import check_audit_key, read_database_head
from inventory.audit.keys import AuditSecrets, attach
from inventory.audit.log import AuditRecord, append, verify_chain
from inventory.audit.models import AuditEntry
from inventory.errors import ConfigError
from inventory.locks import advisory_key
from inventory.storage.database import Database, open_database
from inventory.storage.grants import runtime_grants
from inventory.storage.models import Source, SyncRun, WebSessionRow
from inventory.storage.store import INTERRUPTED_RUN
from inventory.testing.scratch_postgres import ScratchDatabase
from inventory.timeutil import utcnow
from inventory.tokens import create_token, revoke_token

STATIC_SOURCES = ("s1", "s2", "s3")
SESSION_COOKIE = "inventory_session"
# How long a test waits for something the replicas do every second or so; never reached when all is well.
PATIENCE = 25.0


def wait_until(what: str, check: Callable[[], Any], patience: float = PATIENCE) -> Any:
    deadline = time.monotonic() + patience
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {patience:.0f}s for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Replica:
    name: str
    config: Path
    head_file: Path
    log: Path
    url: str
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def synced(self) -> set[str]:
        """The sources this replica's loop logged a successful sync of."""
        return set(re.findall(r"\b(s\d|slow|lab): success", self.log_text()))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Replicas:
    tmp: Path
    owner: Database
    runtime_url: str
    key_file: Path
    cluster: MutableFakeKubernetes
    tokens: dict[str, str]
    a: Replica
    b: Replica

    def config(self, head_file: Path, key_file: Path | None = None) -> dict[str, Any]:
        static = [
            {"type": "static", "name": name, "path": str(self.tmp / f"{name}.yaml"), "interval": 1.5}
            for name in (*STATIC_SOURCES, "slow")
        ]
        kubeconfig = self.tmp / "kubeconfig"
        lab = {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "interval": "1h"}
        return {
            "database": {"url": self.runtime_url},
            "audit": {"key_file": str(key_file or self.key_file), "head_file": str(head_file)},
            "policy": {"path": str(PROJECT_ROOT / "config" / "policy.yaml")},
            "sync": {"interval": "1h", "jitter": 0.3, "concurrency": 4},
            "sources": [*static, lab],
        }

    def start(self, name: str, key_file: Path | None = None) -> Replica:
        folder = self.tmp / name
        folder.mkdir(exist_ok=True)
        config = folder / "inventory.yaml"
        config.write_text(yaml.safe_dump(self.config(folder / "audit.head", key_file)), encoding="utf-8")
        port = free_port()
        log = folder / "serve.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                inventory_command("-c", str(config), "serve", "--port", str(port), "--sync"),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env(),
                cwd=folder,
            )
        return Replica(name, config, folder / "audit.head", log, f"http://127.0.0.1:{port}", process)

    def db_session(self) -> Any:
        return self.owner.session()

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def healthy(replica: Replica) -> bool:
    assert replica.process.poll() is None, replica.log_text()
    try:
        return httpx.get(f"{replica.url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _runtime_role(scratch_url: str) -> tuple[str, str]:
    role = f"inventory_rt_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    admin.dispose()
    owner = create_engine(scratch_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        for statement in runtime_grants(role):
            conn.execute(text(statement))
    owner.dispose()
    return role, make_url(scratch_url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    require_postgres()
    tmp = tmp_path_factory.mktemp("replicas")
    scratch = ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_test")
    role = None
    owner = open_database(scratch.url, migrate=True)
    cluster = MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)).start()
    started: list[Replica] = []
    try:
        role, runtime_url = _runtime_role(scratch.url)
        # The audit key every replica mounts (one secret), made as the README says.
        key_file = tmp / "audit.key"
        key_file.write_bytes(os.urandom(32))
        attach(owner, AuditSecrets(key_file, tmp / "tests.head"))
        for name in STATIC_SOURCES:
            write_inventory(tmp / f"{name}.yaml", 2, prefix=name)
        write_inventory(tmp / "slow.yaml", 3, prefix="slow")
        write_kubeconfig(tmp / "kubeconfig", {"lab": cluster})
        groups = {"operator": ("operators",), "approver": ("approvers",), "viewer": ("viewers",)}
        tokens = {name: create_token(owner, name, groups=g, by=TOKEN_ISSUER) for name, g in groups.items()}
        pair = Replicas(tmp, owner, runtime_url, key_file, cluster, tokens, None, None)  # type: ignore[arg-type]
        pair.a = pair.start("a")
        started.append(pair.a)
        pair.b = pair.start("b")
        started.append(pair.b)
        for replica in (pair.a, pair.b):
            wait_until(f"replica {replica.name} to answer /health", functools.partial(healthy, replica), 60)
        yield pair
    finally:
        for replica in started:
            replica.stop()
        cluster.stop()
        owner.dispose()
        if role is not None:
            with create_engine(scratch.url, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP OWNED BY "{role}"'))
        scratch.drop()
        if role is not None:
            with create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT").connect() as conn:
                conn.execute(text(f'DROP ROLE "{role}"'))


def _runs(pair: Replicas) -> dict[str, list[Any]]:
    with pair.db_session() as session:
        rows = session.execute(
            select(Source.name, SyncRun.status, SyncRun.started_at, SyncRun.finished_at, SyncRun.error)
            .join(Source, Source.id == SyncRun.source_id)
            .order_by(SyncRun.started_at)
        ).all()
    runs: dict[str, list[Any]] = {}
    for row in rows:
        runs.setdefault(row.name, []).append(row)
    return runs


# --- the replicas as processes ---------------------------------------------------------------------


def test_the_sources_spread_over_the_replicas_and_never_sync_twice_at_once(replicas: Replicas) -> None:
    # Each replica syncs some sources; a source another one synced a moment ago is skipped, one it holds is locked.
    wait_until(
        "both replicas to sync sources, each source twice",
        lambda: (
            replicas.a.synced() & set(STATIC_SOURCES)
            and replicas.b.synced() & set(STATIC_SOURCES)
            and all(len(_runs(replicas).get(name, [])) >= 2 for name in STATIC_SOURCES)
        ),
    )
    # A refresh asked of both replicas at once runs under the same locks: each source once at a time.
    with ThreadPoolExecutor(2) as pool:
        asked = list(pool.map(_refresh, (replicas.a, replicas.b), [replicas.header("operator")] * 2))
    outcomes = [
        wait_until("the refreshes to end", functools.partial(_refresh_done, replica, refresh_id, replicas))
        for replica, refresh_id in zip((replicas.a, replicas.b), asked, strict=True)
    ]
    statuses = {row["status"] for outcome in outcomes for row in outcome["sources"]}
    assert statuses <= {"success", "locked"} and "success" in statuses, outcomes
    for name, runs in _runs(replicas).items():
        assert all(run.status != "running" for run in runs), name
        for before, after in itertools.pairwise(runs):
            assert after.started_at >= before.finished_at, f"{name}: two runs overlap: {before} and {after}"


def _refresh(replica: Replica, header: dict[str, str]) -> str:
    answer = httpx.post(
        f"{replica.url}/api/v1/inventory/refresh", json={"sources": list(STATIC_SOURCES)}, headers=header
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _refresh_done(replica: Replica, refresh_id: str, pair: Replicas) -> dict[str, Any] | None:
    row = httpx.get(f"{replica.url}/api/v1/inventory/refresh/{refresh_id}", headers=pair.header("viewer")).json()
    return row if row["status"] == "done" else None


def test_a_web_session_opened_on_one_replica_works_on_the_other_and_ends_on_both(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    token = replicas.tokens["viewer"]
    with httpx.Client(base_url=a.url) as on_a:
        signed_in = on_a.post("/login", data={"token": token})
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        session_id = on_a.cookies[SESSION_COOKIE]
        assert on_a.get("/").status_code == 200
    with replicas.db_session() as session:
        stored = [tuple(row) for row in session.execute(select(WebSessionRow.__table__))]
    assert len(stored) == 1 and not any(token in str(v) or session_id in str(v) for v in stored[0])
    with httpx.Client(base_url=b.url, cookies={SESSION_COOKIE: session_id}) as on_b:
        page = on_b.get("/")
        assert page.status_code == 200 and "viewer" in page.text  # the same principal, on the other replica
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        assert on_b.post("/logout", data={"csrf": csrf.group(1)}).headers["location"] == "/login"
    with httpx.Client(base_url=a.url, cookies={SESSION_COOKIE: session_id}) as on_a:
        assert on_a.get("/").headers["location"] == "/login"  # signed out everywhere
    # A revoked token ends its sessions on every replica at its next request.
    with httpx.Client(base_url=a.url) as on_a:
        on_a.post("/login", data={"token": replicas.tokens["operator"]})
        session_id = on_a.cookies[SESSION_COOKIE]
    revoke_token(replicas.owner, "operator", by=TOKEN_ISSUER)
    replicas.tokens["operator"] = create_token(replicas.owner, "operator", groups=("operators",), by=TOKEN_ISSUER)
    for replica in (b, a):
        with httpx.Client(base_url=replica.url, cookies={SESSION_COOKIE: session_id}) as client:
            assert client.get("/").headers["location"] == "/login", replica.name


def test_an_approval_asked_on_one_replica_is_approved_on_the_other_and_runs_once(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b
    wait_until("the cluster to be synced", lambda: "lab" in a.synced() | b.synced())
    asked = httpx.post(
        f"{a.url}/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-0", "arguments": {"replicas": 0}},
        headers=replicas.header("operator"),
        timeout=30,
    )
    assert asked.status_code == 202, asked.text
    approval_id = asked.json()["approval_id"]
    listed = httpx.get(f"{b.url}/api/v1/approvals", headers=replicas.header("approver"), timeout=30).json()
    assert approval_id in [row["id"] for row in listed]

    def approve(replica: Replica) -> httpx.Response:
        return httpx.post(
            f"{replica.url}/api/v1/approvals/{approval_id}",
            json={"decision": "approve"},
            headers=replicas.header("approver"),
            timeout=30,
        )

    # Approved through both replicas at once: one approval runs the call, the other is refused.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(approve, (b, a)))
    ran = [answer for answer in answers if answer.status_code == 200]
    assert len(ran) == 1 and ran[0].json()["outcome"] == "success", [x.text for x in answers]
    assert [m.body for m in replicas.cluster.mutations] == [{"spec": {"replicas": 0}}]


def test_both_replicas_append_to_one_chain_and_verify_it(replicas: Replicas) -> None:
    # Each replica appended sync summaries (its head file moved), concurrently with the other.
    heads = wait_until(
        "both replicas to append",
        lambda: (
            all(r.head_file.exists() for r in (replicas.a, replicas.b))
            and [AuditSecrets(replicas.key_file, r.head_file).read_head() for r in (replicas.a, replicas.b)]
        ),
    )
    with replicas.db_session() as session:
        database_head = read_database_head(session)
        last = session.execute(select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc())).first()
    assert database_head is not None and last is not None and database_head.seq >= max(h.seq for h in heads)
    # Each replica's head file lags behind the other's appends: no false alarm, through the CLI as on each machine.
    verified = run_inventory("-c", str(replicas.a.config), "audit", "verify", "-o", "json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True, verified.stdout + verified.stderr
    with replicas.db_session() as session:
        result = verify_chain(session, audit_secrets=AuditSecrets(replicas.key_file, replicas.b.head_file))
    assert result.ok and result.last_seq >= database_head.seq, result.problem


def test_a_replica_with_another_audit_key_refuses_to_start(replicas: Replicas) -> None:
    other_key = replicas.tmp / "other.key"
    other_key.write_bytes(os.urandom(32))
    folder = replicas.tmp / "c"
    folder.mkdir()
    config = folder / "inventory.yaml"
    config.write_text(yaml.safe_dump(replicas.config(folder / "audit.head", other_key)), encoding="utf-8")
    with replicas.db_session() as session:
        before = read_database_head(session)
    started = run_inventory("-c", str(config), "serve", "--port", str(free_port()), "--sync", timeout=60)
    assert started.returncode == 2, started.stderr
    assert "this audit key did not sign the log's newest entry" in started.stderr and str(other_key) in started.stderr
    assert "Traceback" not in started.stderr
    with replicas.db_session() as session:
        after = read_database_head(session)
        written = session.execute(select(AuditEntry.mac).where(AuditEntry.seq > (before.seq if before else 0))).all()
    audit_secrets = AuditSecrets(other_key, folder / "audit.head")
    assert after is not None and not any(mac == audit_secrets.mac(after.seq, after.entry_hash) for (mac,) in written)


def test_a_replica_killed_in_the_middle_of_a_write_loses_nothing_and_the_other_carries_on(replicas: Replicas) -> None:
    """Last in this module: it kills one of the two replicas."""
    wait_until("the slow source to be synced", lambda: "slow" in replicas.a.synced() | replicas.b.synced())
    with replicas.db_session() as session:
        before = {row.external_id: row.name for row in session.execute(text("SELECT external_id, name FROM hosts"))}
    assert {"slow0", "slow1", "slow2"} <= set(before)
    # The next sync of "slow" adds a host and renames one. A row lock on the renamed host holds that sync in
    # the middle of its write transaction: its new host and its run are inserted, the update waits.
    write_inventory(replicas.tmp / "slow.yaml", 4, prefix="slow")
    (replicas.tmp / "slow.yaml").write_text(
        (replicas.tmp / "slow.yaml").read_text().replace("slow-host-1", "slow-host-1-renamed"), encoding="utf-8"
    )
    blocker = replicas.owner.engine.connect()
    transaction = blocker.begin()
    blocker.execute(text("SELECT id FROM hosts WHERE external_id = 'slow1' FOR UPDATE"))
    try:
        wait_until(
            "a replica's write of the slow source to wait for the renamed host",
            lambda: _waiting_on_a_row_lock(replicas, "UPDATE hosts"),
        )
        victim_pid = _sync_lock_holder(replicas, "slow")
        victim = next(r for r in (replicas.a, replicas.b) if r.process.pid == victim_pid)
        survivor = replicas.b if victim is replicas.a else replicas.a
        victim.process.kill()  # kill -9: no cleanup of any kind
        victim.process.wait()
    finally:
        transaction.rollback()
        blocker.close()
    # The dead write rolls back whole; its sync lock went with its connection; the survivor syncs the source.
    wait_until(
        "the survivor to sync the slow source",
        lambda: (runs := _runs(replicas)["slow"]) and runs[-1].status == "success" and _renamed(replicas),
    )
    assert healthy(survivor)
    with replicas.db_session() as session:
        hosts = dict(session.execute(text("SELECT external_id, name FROM hosts WHERE removed_at IS NULL")).all())
        created = session.execute(
            text("SELECT count(*) FROM changes WHERE external_id = 'slow3' AND action = 'created'")
        ).scalar_one()
    assert set(before) <= set(hosts) and hosts["slow3"] == "slow-host-3" and created == 1
    assert all(run.status != "running" for runs in _runs(replicas).values() for run in runs)
    with replicas.db_session() as session:
        result = verify_chain(session, audit_secrets=AuditSecrets(replicas.key_file, survivor.head_file))
    assert result.ok, result.problem


def _waiting_on_a_row_lock(pair: Replicas, query: str) -> bool:
    with pair.owner.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE :query"
            ),
            {"query": f"{query}%"},
        ).first()
    return found is not None


def _renamed(pair: Replicas) -> bool:
    with pair.db_session() as session:
        name = session.execute(text("SELECT name FROM hosts WHERE external_id = 'slow1'")).scalar_one()
    return bool(name == "slow-host-1-renamed")


def _sync_lock_holder(pair: Replicas, source: str) -> int:
    """The pid of the process holding the source's sync lock, from its lock connection's application_name."""
    unsigned = advisory_key(source) & 0xFFFFFFFFFFFFFFFF
    with pair.owner.engine.connect() as conn:
        name = conn.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = CAST(:high AS oid) "
                "AND l.objid = CAST(:low AS oid) AND l.objsubid = 1"
            ),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF},
        ).scalar_one()
    return int(name.removeprefix("inventory ").split("@")[0])


# --- what the replicas share, on both engines ----------------------------------------------------------


def _keyed(db: Database, folder: Path, key: bytes | None = None, head: str = "audit.head") -> AuditSecrets:
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "audit.key"
    if key is not None:
        key_file.write_bytes(key)
    audit_secrets = AuditSecrets(key_file, folder / head)
    attach(db, audit_secrets)
    return audit_secrets


def _append(db: Database, count: int) -> None:
    for i in range(count):
        append(
            db, AuditRecord(event="tool_call", actor="alice", outcome="success", tool="docker.restart", target=f"c{i}")
        )


def _verify(db: Database, audit_secrets: AuditSecrets) -> Any:
    with db.session() as session:
        return verify_chain(session, audit_secrets=audit_secrets)


def test_the_database_keeps_the_audit_head_and_moves_it_only_forward(db: Database, tmp_path: Path) -> None:
    audit_secrets = _keyed(db, tmp_path, os.urandom(32))
    with db.session() as session:
        empty = read_database_head(session)
    assert empty is not None and empty.seq == 0
    _append(db, 3)
    with db.session() as session:
        head = read_database_head(session)
        last = session.get(AuditEntry, 3)
    assert head is not None and last is not None
    assert (head.seq, head.entry_hash, head.mac) == (3, last.entry_hash, audit_secrets.mac(3, last.entry_hash))
    for statement in ("UPDATE audit_head SET seq = 1", "DELETE FROM audit_head"):
        with pytest.raises(DBAPIError, match="only moves forward"), db.engine.begin() as conn:
            conn.execute(text(statement))
    insert = "INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, 'x')"
    if db.dialect == "sqlite":
        insert = insert.replace("INSERT", "INSERT OR REPLACE")  # would delete the row without a DELETE trigger
    with pytest.raises(DBAPIError), db.engine.begin() as conn:
        conn.execute(text(insert))
    assert _verify(db, audit_secrets).ok


def test_a_log_upgraded_in_use_starts_with_its_head(database_url: str, tmp_path: Path) -> None:
    from inventory.storage import migrate

    db = Database(database_url)
    try:
        migrate.upgrade(db, "0005_machines")
        audit_secrets = _keyed(db, tmp_path, os.urandom(32))
        _append(db, 3)
        migrate.upgrade(db)
        with db.session() as session:
            head = read_database_head(session)
            last = session.get(AuditEntry, 3)
        assert head is not None and last is not None
        assert (head.seq, head.entry_hash, head.mac) == (3, last.entry_hash, last.mac)
        _append(db, 1)
        assert _verify(db, audit_secrets).ok
    finally:
        db.dispose()


def test_a_head_file_behind_the_database_is_fine_and_a_cut_tail_is_found_without_one(
    db: Database, tmp_path: Path
) -> None:
    key = os.urandom(32)
    mine = _keyed(db, tmp_path / "a", key)
    _append(db, 3)
    other = _keyed(db, tmp_path / "b", key)  # another machine: the same key, its own head file
    _append(db, 3)
    head = mine.read_head()
    assert head is not None and head.seq == 3 and _verify(db, mine).ok and _verify(db, other).ok
    # The newest entries cut off by someone who can disable the log's own triggers; the head file of a new
    # machine knows nothing, the database's head does.
    _drop_triggers(db)  # those refusing UPDATE and DELETE on audit_log; the head's stay
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 5"))
    fresh = _keyed(db, tmp_path / "c", key)
    result = _verify(db, fresh)
    assert result.problem is not None and (result.problem.seq, result.problem.kind) == (5, "truncated")
    assert "the head the database recorded" in result.problem.message
    # Nor can anyone append to the cut log: the head would have to move back.
    with pytest.raises(DBAPIError, match="does not extend the audit head"):
        _append(db, 1)


def test_another_key_neither_starts_nor_appends(db: Database, tmp_path: Path) -> None:
    _keyed(db, tmp_path / "a", os.urandom(32))
    _append(db, 2)
    assert check_audit_key(db) is not None
    wrong = _keyed(db, tmp_path / "b", os.urandom(32))
    with pytest.raises(ConfigError, match="did not sign the log's newest entry 2") as refused:
        check_audit_key(db)
    assert str(wrong.key_file) in str(refused.value)
    with pytest.raises(ConfigError, match="same audit key"):
        _append(db, 1)
    _keyed(db, tmp_path / "missing")  # no key file at all: refused too, and none is created
    with pytest.raises(ConfigError, match="there is no audit key here"):
        check_audit_key(db)
    assert not (tmp_path / "missing" / "audit.key").exists()
    with db.session() as session:
        assert session.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc())).scalars().first() == 2


def test_the_start_check_brings_this_machines_head_file_up_to_the_database(db: Database, tmp_path: Path) -> None:
    key = os.urandom(32)
    _keyed(db, tmp_path / "a", key)
    _append(db, 4)
    other = _keyed(db, tmp_path / "b", key)
    assert other.read_head() is None
    check_audit_key(db)
    head = other.read_head()
    assert head is not None and head.seq == 4


def test_a_run_left_running_is_failed_by_the_next_sync_of_its_source(db: Database, tmp_path: Path) -> None:
    from server_support import lab_config, synced

    config = lab_config(tmp_path, db.url, lab=write_inventory(tmp_path / "lab.yaml", 1))
    synced(db, config)
    with db.write_session() as session:
        source_id = session.execute(select(Source.id).where(Source.name == "lab")).scalar_one()
        # What a process that committed its run before finishing it leaves when it is killed.
        session.add(SyncRun(source_id=source_id, started_at=utcnow() - timedelta(minutes=5), status="running"))
    synced(db, config)
    with db.session() as session:
        runs = session.execute(select(SyncRun.status, SyncRun.error, SyncRun.finished_at).order_by(SyncRun.id)).all()
    assert [run.status for run in runs] == ["success", "failed", "success"]
    assert runs[1].error == INTERRUPTED_RUN and runs[1].finished_at is not None


def test_web_sessions_keep_neither_token_nor_id_and_idle_ones_end(db: Database, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from inventory.server import create_app

    _keyed(db, tmp_path, os.urandom(32))
    token = create_token(db, "eve", groups=("viewers",), by=TOKEN_ISSUER)
    with TestClient(create_app(db, mcp=False)) as browser, TestClient(create_app(db, mcp=False)) as other:
        browser.post("/login", data={"token": token})
        session_id = browser.cookies[SESSION_COOKIE]
        with db.session() as session:
            (row,) = session.execute(select(WebSessionRow)).scalars()
        assert session_id not in (row.id_hash, row.token_ref) and token not in (row.id_hash, row.token_ref)
        other.cookies.set(SESSION_COOKIE, session_id)
        assert other.get("/", follow_redirects=False).status_code == 200  # another app over the same database
        with db.write_session() as session:
            session.execute(update(WebSessionRow).values(last_seen_at=utcnow() - timedelta(hours=13)))
        assert other.get("/", follow_redirects=False).headers["location"] == "/login"
        with db.session() as session:
            assert session.execute(select(WebSessionRow)).first() is None
        # A session nobody comes back to is pruned when another one opens.
        idle = browser.post("/login", data={"token": token}, follow_redirects=False).cookies[SESSION_COOKIE]
        with db.write_session() as session:
            session.execute(update(WebSessionRow).values(last_seen_at=utcnow() - timedelta(hours=13)))
        fresh = other.post("/login", data={"token": token}, follow_redirects=False).cookies[SESSION_COOKIE]
        with db.session() as session:
            kept = session.execute(select(WebSessionRow.id_hash)).scalars().all()
        assert kept == [hashlib.sha256(fresh.encode()).hexdigest()] and idle != fresh
