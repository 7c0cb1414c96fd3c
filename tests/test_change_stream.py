"""Watching changes from outside: the feed, `inventory changes -w`, the API's event stream, live web rows.

Changes are written the way a sync writes them (reconcile through the SQL store), on SQLite and
PostgreSQL; the stream is read by httpx, the CLI as a subprocess, the page in chromium.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import Tokens, make_tokens
from sync_support import child_env, inventory_command, write_config, write_inventory
from test_server_web import browser, wait_for  # noqa: F401 - the real-browser fixture

from inventory.cause import Cause, CauseKind
from inventory.change_feed import ChangeFeed
from inventory.reconcile import reconcile
from inventory.records import Snapshot, Workload
from inventory.server import create_app
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database
from inventory.storage.models import Change
from inventory.storage.store import SqlStore
from inventory.timeutil import utcnow


def write_pods(db: Database, statuses: dict[str, str], cause: Cause | None = None, source: str = "k3s") -> None:
    """One reconcile of a delta: each pod named with its status (created or updated)."""
    delta = Snapshot.changes()
    for name, status in statuses.items():
        pod = Workload("pod", f"uid-{name}", name, namespace="default", status=status)
        delta.workloads.append(pod)
        if cause is not None:
            delta.attribute("workload", pod, cause)
    with db.write_session() as session:
        store = SqlStore(session)
        source_id = store.source_id(source, "kubernetes", None)
        reconcile(delta, store, source_id=source_id, run_id=store.start_run(source_id))


def test_the_feed_hands_out_each_new_row_once_with_filters(db: Database) -> None:
    write_pods(db, {"old": "Running"})
    feed = ChangeFeed(db)
    assert feed.poll() == []  # what was there when it was made is not new
    write_pods(db, {"web-1": "Running", "web-2": "Pending"})
    write_pods(db, {"db-0": "Running"}, source="other")
    assert [row["name"] for row in feed.poll()] == ["web-1", "web-2", "db-0"]
    assert feed.poll() == []
    only_updates = ChangeFeed(db, {"action": "updated", "source": "k3s"})
    write_pods(db, {"web-1": "Failed", "web-3": "Running"}, Cause(CauseKind.KUBERNETES, actor="kubelet"))
    write_pods(db, {"db-0": "Failed"}, source="other")
    (row,) = only_updates.poll()
    assert (row["name"], row["diff"], row["by"]) == ("web-1", {"status": ["Running", "Failed"]}, "kubelet")


def test_a_row_committed_late_with_an_older_time_is_not_lost(db: Database) -> None:
    """Two writers commit out of order: the later commit's rows carry an earlier id and time."""
    feed = ChangeFeed(db)
    write_pods(db, {"fast": "Running"})
    assert [row["name"] for row in feed.poll()] == ["fast"]
    with db.write_session() as session:
        session.add(
            Change(
                source_id=1,
                sync_run_id=1,
                at=utcnow() - timedelta(minutes=2),
                object_type="workload",
                object_id=999,
                kind="pod",
                external_id="uid-slow",
                name="slow",
                action="created",
            )
        )
    assert [row["name"] for row in feed.poll()] == ["slow"]


def test_a_resumed_feed_starts_after_the_last_id_seen(db: Database) -> None:
    write_pods(db, {"a": "Running", "b": "Running", "c": "Running"})
    feed = ChangeFeed(db)
    write_pods(db, {"d": "Running"})
    rows = feed.poll()
    resumed = ChangeFeed(db, after_id=rows[0]["id"] - 2)  # the client saw up to "b"
    assert [row["name"] for row in resumed.poll()] == ["c", "d"]
    write_pods(db, {"e": "Running"})
    assert [row["name"] for row in resumed.poll()] == ["e"]


@pytest.fixture
def server(db: Database) -> Iterator[tuple[str, Tokens]]:
    tokens = make_tokens(db)
    with BackgroundServer(create_app(db, mcp=False)) as running:
        yield running.url, tokens


def read_events(response: httpx.Response, into: queue.Queue[dict[str, str]]) -> None:
    event: dict[str, str] = {}
    try:
        for line in response.iter_lines():
            if not line:
                if "data" in event:
                    into.put(event)
                event = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                event[key] = value.removeprefix(" ")
    except (httpx.HTTPError, OSError):
        return


@contextmanager
def event_stream(client: httpx.Client, into: queue.Queue[dict[str, str]], **request: Any) -> Iterator[httpx.Response]:
    """The changes stream read into ``into`` on a thread, until the block ends and the client goes away.

    Closing the response alone would not end the connection: the reading thread sits in recv() on its socket,
    which holds the connection open, and the server would stream on to it (and make its shutdown wait out its
    grace period). Shutting the socket down wakes the reader and is a disconnect the server sees."""
    with client.stream("GET", "/api/v1/changes/stream", **request) as response:
        reader = threading.Thread(target=read_events, args=(response, into), daemon=True)
        reader.start()
        try:
            yield response
        finally:
            stream = response.extensions["network_stream"]
            stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            reader.join(10)
    assert not reader.is_alive(), "the stream's reader did not end with it"


def next_events(into: queue.Queue[dict[str, str]], count: int, timeout: float = 5) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, str]] = []
    while len(found) < count:
        found.append(into.get(timeout=max(0.01, deadline - time.monotonic())))
    return found


def test_the_api_streams_changes_and_resumes_with_last_event_id(server: tuple[str, Tokens], db: Database) -> None:
    url, tokens = server
    events: queue.Queue[dict[str, str]] = queue.Queue()
    with httpx.Client(base_url=url, headers=tokens.header("viewer"), timeout=10) as client:
        with event_stream(client, events, params={"type": "workload"}) as response:
            # The answer's head comes after the server opened the stream's feed: what is written now is new.
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            started = time.monotonic()
            write_pods(db, {"web-1": "Running"}, Cause(CauseKind.DOCKER_EVENT, action="start"))
            (first,) = next_events(events, 1)
            assert time.monotonic() - started < 2.5  # visible within the feed's poll, not the next sync
            row = json.loads(first["data"])
            assert (first["event"], first["id"]) == ("change", str(row["id"]))
            assert (row["name"], row["action"], row["by"]) == ("web-1", "created", "docker start")
            assert row["cause"] == {"kind": "docker_event", "action": "start"}
        write_pods(db, {"web-2": "Running", "web-3": "Running"})
        # A client that was away resumes after the last event it saw: nothing lost, nothing twice.
        with event_stream(client, events, headers={"Last-Event-ID": first["id"]}):
            assert [json.loads(e["data"])["name"] for e in next_events(events, 2)] == ["web-2", "web-3"]
        bad = client.get("/api/v1/changes/stream", headers={"Last-Event-ID": "yesterday"})
        assert bad.status_code == 400 and "Last-Event-ID" in bad.text
    assert httpx.get(f"{url}/api/v1/changes/stream").status_code == 401


# Following the stored changes is storage (both engines); the table's layout is not (one engine).
@pytest.mark.parametrize(
    ("database_url", "output"),
    [("sqlite", "json"), ("postgresql", "json"), ("sqlite", "table")],
    indirect=["database_url"],
)
def test_changes_watch_prints_each_change_as_it_is_stored(
    tmp_path: Path, database_url: str, db: Database, output: str
) -> None:
    lab = write_inventory(tmp_path / "lab.yaml", 2)
    config = write_config(tmp_path / "inventory.yaml", database_url, {"lab": lab})
    assert (
        subprocess.run([*inventory_command("--config", str(config), "sync", "--once")], env=child_env()).returncode == 0
    )
    write_pods(db, {"listed": "Pending"})
    write_pods(db, {"listed": "Running"})  # an update stored before the watcher starts
    watcher = subprocess.Popen(
        inventory_command("--config", str(config), "changes", "-w", "--action", "updated", "-o", output),
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in watcher.stdout or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()
    try:
        # The watcher lists the stored update first, and only after making its feed: from then on it follows.
        listed = [lines.get(timeout=20) for _ in range(1 if output == "json" else 2)]
        write_inventory(lab, 2, status="stopped")
        sync = subprocess.run(inventory_command("--config", str(config), "sync", "--once"), env=child_env())
        assert sync.returncode == 0
        got = [lines.get(timeout=10) for _ in range(2)]
    finally:
        watcher.terminate()
        watcher.wait(10)
    if output == "json":
        assert json.loads(listed[0])["name"] == "listed"
        rows = [json.loads(line) for line in got]
        assert sorted(row["name"] for row in rows) == ["h-app-0", "h-app-1"]
        assert all(row["diff"] == {"status": ["running", "stopped"]} and row["by"] == "unknown" for row in rows)
    else:
        assert listed[0].split()[:3] == ["AT", "SOURCE", "ACTION"] and listed[0].split()[-1] == "BY"
        assert "listed" in listed[1].split() and "status: Pending -> Running" in listed[1]
        assert all("status: running -> stopped" in line for line in got)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_changes_page_adds_rows_live_in_a_browser(server: tuple[str, Tokens], db: Database, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, tokens = server
    write_pods(db, {"before": "Running"})
    browser.get(f"{url}/login")
    browser.find_element(By.ID, "token").send_keys(tokens.by_name["viewer"])
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, By.ID, "q")
    browser.get(f"{url}/changes")
    table = wait_for(browser, By.CSS_SELECTOR, "table[data-live-changes]")
    assert "before" in table.text
    # No wait for the stream to open: the page's stream resumes after the newest row it shows.
    write_pods(db, {"after-<b>": "Running"}, Cause(CauseKind.PROXMOX_TASK, actor="root@pam", action="qmstart"))
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.CSS_SELECTOR, "table").get_attribute("data-live-rows"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    # Newest first: the new row on top, its name escaped (text, not markup), its cause in the BY column.
    assert "after-<b>" in rows[0].text and "root@pam qmstart" in rows[0].text
    assert len(rows) == 2 and not browser.find_elements(By.CSS_SELECTOR, "table tbody b")
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert logs == []  # the content security policy let the script and its stream through
