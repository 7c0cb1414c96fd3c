"""`inventory serve` under load: a 500-node / 15,000-pod cluster synced into PostgreSQL, then read over HTTP.

    .venv/bin/python benchmarks/bench_server.py [--nodes 500] [--pods 15000] [--postgres URL] [--seconds 10]

The fake Kubernetes API server fills a scratch PostgreSQL database through the real
connector; it is stopped before the server starts. `inventory serve` runs as its own process
(one uvicorn worker, access log on, as deployed); the clients run here. Printed:

- p50 / p99 of `GET /api/v1/inventory/hosts/{id}` (one object with its links and changes),
  sequential, one keep-alive connection (goal: p50 under 10 ms);
- p50 / p99 of a 1,000-row page of `GET /api/v1/inventory/workloads?limit=1000`, walking
  every page by keyset cursor (goal: p50 under 100 ms), and the first full page's p50 against the
  last full page's (goal: within 1.2x: a cursor is a position, not a count of rows to skip);
- p95 of `GET /hosts/{id}` and of 1,000-row pages with 20 concurrent clients (goal: under 500 ms),
  and their requests per second;
- p50 / p95 of the first byte of each web list page (home, hosts, workloads, services, changes, and
  a filtered, sorted workloads page), signed in as a browser is (goal: under 150 ms), and of the
  whole page;
- the ratio of each HTTP p50 to the same SQL run directly: the statements the server's library
  runs for that request (captured from SQLAlchemy), replayed on one psycopg connection;
- what the page's `total` costs: the count(*) over the filter, alone;
- the server's RSS after the load, and its peak.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_kubernetes import start_fake  # noqa: E402

from connectors.kubernetes.connector import KubernetesConfig, KubernetesConnector  # noqa: E402
from inventory.audit.keys import AuditSecrets, attach  # noqa: E402
from inventory.principals import os_user_name  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.sync import sync_source  # noqa: E402
from inventory.testing.scratch_postgres import DEFAULT_ADMIN_URL, ScratchDatabase  # noqa: E402

GOAL_ONE_MS = 10.0
GOAL_PAGE_MS = 100.0
GOAL_LAST_PAGE_RATIO = 1.2
GOAL_CONCURRENT_P95_MS = 500.0
GOAL_WEB_FIRST_BYTE_MS = 150.0
WEB_PAGES = (
    "/",
    "/hosts",
    "/workloads",
    "/services",
    "/changes",
    "/workloads?status=running&sort=-name",
)
PAGE = 1000


def fill(url: str, nodes: int, pods: int, tmp: Path) -> None:
    kubeconfig = tmp / "kubeconfig"
    fake = start_fake(nodes, pods, kubeconfig)
    try:
        db = open_database(url, migrate=True)
        # The sync's audit entries are signed with the key the server's config names (start_server).
        attach(db, AuditSecrets(tmp / "audit.key"))
        started = time.perf_counter()
        outcome = sync_source(
            db, KubernetesConnector(KubernetesConfig(name="bench", kubeconfig=kubeconfig, qps=10_000, burst=10_000))
        )
        db.dispose()
        if not outcome.ok:
            raise SystemExit(f"sync failed: {outcome.describe()}")
        print(f"synced {outcome.objects} objects in {time.perf_counter() - started:.1f} s")
    finally:
        fake.terminate()
        fake.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(url: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`inventory serve` as its own process, and a viewer's token made by `inventory tokens create`."""
    config = tmp / "inventory.yaml"
    audit = {"key_file": str(tmp / "audit.key")}
    config.write_text(yaml.safe_dump({"database": {"url": url}, "sources": [], "audit": audit}))
    # Only admins of the policy in force create tokens: this OS user applies one naming itself (the first apply is
    # the audit key's owner's).
    policy = tmp / "policy.yaml"
    policy.write_text(yaml.safe_dump({"version": 1, "principals": {"users": {os_user_name(): ["admins"]}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_")}
    inventory = [sys.executable, "-m", "inventory", "-c", str(config)]
    applied = subprocess.run([*inventory, "policy", "apply", str(policy)], cwd=tmp, env=env, capture_output=True)
    if applied.returncode != 0:
        raise SystemExit(f"inventory policy apply failed: {applied.stderr.decode()}")
    created = subprocess.run(
        [*inventory, "tokens", "create", "bench", "--group", "viewers"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
    )
    if created.returncode != 0:
        raise SystemExit(f"inventory tokens create failed: {created.stderr}")
    token = created.stdout.splitlines()[-1]
    port = free_port()
    command = [*inventory, "serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base, token
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("inventory serve did not become healthy")


def timed(client: httpx.Client, path: str, **params: str | int) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def web_first_bytes(base: str, token: str, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per web page: the time to its first byte (the response's head) and to its last, signed in as a browser."""
    with httpx.Client(base_url=base, timeout=30) as browser:
        signed_in = browser.post("/login", data={"token": token}, follow_redirects=False)
        if signed_in.status_code != 303:
            raise SystemExit(f"web sign-in failed: {signed_in.status_code}")
        timings: dict[str, tuple[list[float], list[float]]] = {}
        for path in WEB_PAGES:
            first: list[float] = []
            whole: list[float] = []
            for attempt in range(repeats + 3):
                started = time.perf_counter()
                with browser.stream("GET", path) as response:
                    head = time.perf_counter()
                    body = response.read()
                    done = time.perf_counter()
                if response.status_code != 200 or b"</html>" not in body:
                    raise SystemExit(f"web page {path} answered {response.status_code}")
                if attempt >= 3:  # the first few warm the templates and the connection
                    first.append((head - started) * 1000)
                    whole.append((done - started) * 1000)
            timings[path] = (first, whole)
    return timings


def captured_sql(url: str, call: Callable[[Any], Any]) -> list[tuple[str, Any]]:
    """The statements (with their parameters) the library runs for one call, as the server's process runs them."""
    from sqlalchemy import event

    db = open_database(url)
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    with db.session() as session:
        call(session)
    db.dispose()
    return statements


def direct_ms(url: str, statements: list[tuple[str, Any]], repeats: int) -> float:
    """p50 of running ``statements`` one after the other on one plain psycopg connection, fetching every row."""
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    samples = []
    with psycopg.connect(plain, autocommit=True) as conn:
        for _ in range(repeats + 3):
            started = time.perf_counter()
            for statement, parameters in statements:
                conn.execute(statement, parameters).fetchall()
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[3:])


def rss_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15_000)
    parser.add_argument("--postgres", default=os.environ.get("INVENTORY_TEST_POSTGRES", DEFAULT_ADMIN_URL))
    parser.add_argument("--one-object-requests", type=int, default=1000)
    parser.add_argument("--page-walks", type=int, default=4, help="how many times every 1,000-row page is read")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the concurrent run")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--web-requests", type=int, default=30, help="how many times each web page is read")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine slows every figure below

    with tempfile.TemporaryDirectory() as tmp_name, ScratchDatabase(args.postgres) as scratch:
        tmp = Path(tmp_name)
        fill(scratch.url, args.nodes, args.pods, tmp)
        server, base, token = start_server(scratch.url, tmp)
        try:
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
                hosts = []
                cursor = None
                while True:
                    page = client.get(
                        "/api/v1/inventory/hosts", params={"limit": PAGE, **({"cursor": cursor} if cursor else {})}
                    ).json()
                    hosts += [h["id"] for h in page["items"]]
                    cursor = page["next_cursor"]
                    if not cursor:
                        break
                rng = random.Random(7)
                for host_id in rng.sample(hosts, min(50, len(hosts))):  # warm-up
                    timed(client, f"/api/v1/inventory/hosts/{host_id}")
                one = [
                    timed(client, f"/api/v1/inventory/hosts/{rng.choice(hosts)}")[0]
                    for _ in range(args.one_object_requests)
                ]

                pages: list[float] = []
                by_index: dict[int, list[float]] = {}
                rows = 0
                last_cursor: str | None = None
                for _ in range(args.page_walks):
                    cursor = None
                    index = 0
                    while True:
                        params: dict[str, str | int] = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
                        elapsed, response = timed(client, "/api/v1/inventory/workloads", **params)
                        body = response.json()
                        if len(body["items"]) == PAGE:  # the last, shorter page is not a 1,000-row page
                            pages.append(elapsed)
                            by_index.setdefault(index, []).append(elapsed)
                            if body["next_cursor"]:
                                last_cursor = cursor  # the cursor of the last full page (None: the first)
                        rows += len(body["items"])
                        total = body["total"]
                        cursor = body["next_cursor"]
                        index += 1
                        if not cursor:
                            break
                workloads = rows // args.page_walks
                full = sorted(by_index)
                first_p50 = statistics.median(by_index[full[0]])
                last_p50 = statistics.median(by_index[full[-1]])

            web = web_first_bytes(base, token, args.web_requests)

            # The same SQL run directly: what the library runs for one object and for the first page.
            from inventory import listing, queries

            page_values = listing.validate("workloads", {"limit": PAGE})
            host_id = str(hosts[0])
            one_sql = captured_sql(scratch.url, lambda s: queries.show_object(s, "host", host_id))
            page_sql = captured_sql(scratch.url, lambda s: listing.run_list(s, "workloads", page_values))
            count_sql = captured_sql(
                scratch.url, lambda s: queries.count_objects(s, "workload", queries.ObjectFilter())
            )
            last_values = listing.validate("workloads", {"limit": PAGE, "cursor": last_cursor})
            last_sql = captured_sql(scratch.url, lambda s: listing.run_list(s, "workloads", last_values))
            direct_one = direct_ms(scratch.url, one_sql, 200)
            direct_page = direct_ms(scratch.url, page_sql, 20)
            direct_last = direct_ms(scratch.url, last_sql, 20)
            direct_count = direct_ms(scratch.url, count_sql, 20)

            one_latencies: list[list[float]] = [[] for _ in range(args.clients)]
            page_latencies: list[list[float]] = [[] for _ in range(args.clients)]
            stop_at = time.perf_counter() + args.seconds

            def load(index: int) -> None:
                # One client in four reads 1,000-row pages, the others single objects (a dashboard and scripts).
                local = random.Random(index)
                with httpx.Client(base_url=base, headers=headers, timeout=30) as mine:
                    while time.perf_counter() < stop_at:
                        started = time.perf_counter()
                        if index % 4 == 0:
                            mine.get("/api/v1/inventory/workloads", params={"limit": PAGE}).raise_for_status()
                            page_latencies[index].append((time.perf_counter() - started) * 1000)
                        else:
                            mine.get(f"/api/v1/inventory/hosts/{local.choice(hosts)}").raise_for_status()
                            one_latencies[index].append((time.perf_counter() - started) * 1000)

            threads = [threading.Thread(target=load, args=(i,)) for i in range(args.clients)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed_s = time.perf_counter() - started
            concurrent_one = [x for samples in one_latencies for x in samples]
            concurrent_pages = [x for samples in page_latencies for x in samples]
            rate = (len(concurrent_one) + len(concurrent_pages)) / elapsed_s
            memory = rss_kb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    one_p50, one_p99 = percentiles(one)
    page_p50, page_p99 = percentiles(pages)
    all_concurrent = concurrent_one + concurrent_pages
    print(f"dataset: {len(hosts)} hosts, {workloads} workloads, total says {total} (PostgreSQL, one uvicorn worker)")
    print(
        f"GET /hosts/{{id}}              p50 {one_p50:7.2f} ms  p99 {one_p99:7.2f} ms  over {len(one)} requests"
        f"  (goal p50 <= {GOAL_ONE_MS:g} ms: {verdict(one_p50 <= GOAL_ONE_MS)})"
    )
    print(
        f"1,000-row workloads page      p50 {page_p50:7.2f} ms  p99 {page_p99:7.2f} ms  over {len(pages)} pages"
        f"  (goal p50 <= {GOAL_PAGE_MS:g} ms: {verdict(page_p50 <= GOAL_PAGE_MS)})"
    )
    ratio = last_p50 / first_p50
    print(
        f"first / last full page        p50 {first_p50:7.2f} ms / {last_p50:7.2f} ms  ratio {ratio:.2f}"
        f"  (goal last <= {GOAL_LAST_PAGE_RATIO:g}x first: {verdict(ratio <= GOAL_LAST_PAGE_RATIO)})"
    )
    worst = p95(all_concurrent)
    print(
        f"{args.clients} concurrent clients         p95 {worst:7.2f} ms"
        f"  (GET /hosts/{{id}} p95 {p95(concurrent_one):.2f} ms,"
        f" pages p95 {p95(concurrent_pages):.2f} ms)  {rate:.0f} requests/s over {args.seconds:g} s"
        f"  (goal p95 <= {GOAL_CONCURRENT_P95_MS:g} ms: {verdict(worst <= GOAL_CONCURRENT_P95_MS)})"
    )
    for path, (first, whole) in web.items():
        web_p50 = statistics.median(first)
        print(
            f"web {path:36s} first byte p50 {web_p50:7.2f} ms  p95 {p95(first):7.2f} ms;"
            f" whole page p50 {statistics.median(whole):7.2f} ms"
            f"  (goal first byte <= {GOAL_WEB_FIRST_BYTE_MS:g} ms: {verdict(web_p50 <= GOAL_WEB_FIRST_BYTE_MS)})"
        )
    print(
        f"same SQL run directly         one object {direct_one:6.2f} ms ({len(one_sql)} statements): HTTP is"
        f" {one_p50 / direct_one:.1f}x;  first page {direct_page:6.2f} ms ({len(page_sql)} statements): HTTP is"
        f" {first_p50 / direct_page:.1f}x;  last page {direct_last:6.2f} ms"
    )
    print(f"the page's total             count(*) over the filter alone: {direct_count:.2f} ms (in each page's time)")
    print(f"server RSS after the load     {memory['VmRSS'] / 1024:7.0f} MB  (peak {memory['VmHWM'] / 1024:.0f} MB)")
    print(
        f"clients and server share this machine's {os.cpu_count()} cores;"
        f" load average at the start {load_before:.1f}, at the end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
