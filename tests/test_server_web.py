"""The web UI in a real browser (Debian's chromium through chromedriver): sign in, search, a host page, approve."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import IN_CI
from server_support import Tokens, kubernetes_lab, make_tokens

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from inventory import queries
from inventory.server import create_app
from inventory.server.run import BackgroundServer
from inventory.server.web import SESSION_COOKIE
from inventory.storage.database import Database

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        reason = (
            f"no browser for the web UI test: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def cluster() -> Iterator[MutableFakeKubernetes]:
    with MutableFakeKubernetes(ClusterSpec(name="lab", nodes=2, pods=12, replicas_per_deployment=2)) as api:
        yield api


@pytest.fixture
def site(db: Database, tmp_path: Path, cluster: MutableFakeKubernetes) -> Iterator[tuple[str, Tokens]]:
    runner, _config = kubernetes_lab(db, tmp_path, cluster)
    tokens = make_tokens(db)
    with BackgroundServer(create_app(db, runner=runner)) as server:
        yield server.url, tokens


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(
        options=options, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, by: str, value: str) -> Any:
    """The element once the page that has it has loaded (a click's navigation finishes on its own time)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 15).until(expected_conditions.presence_of_element_located((by, value)))


def ask_to_scale_web_0_to_zero(url: str, tokens: Tokens) -> dict[str, Any]:
    """The operator's DESTRUCTIVE call, which waits for an approver."""
    pending: dict[str, Any] = httpx.post(
        f"{url}/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-0", "arguments": {"replicas": 0}},
        headers=tokens.header("operator"),
    ).json()
    assert pending["outcome"] == "pending"
    return pending


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_in_search_open_a_host_and_approve(
    site: tuple[str, Tokens], browser: Any, db: Database, cluster: MutableFakeKubernetes, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = site
    pending = ask_to_scale_web_0_to_zero(url, tokens)
    with db.session() as session:
        host = queries.list_hosts(session)[0]

    browser.set_window_size(390, 844)  # a phone
    browser.get(f"{url}/hosts/{host['id']}")
    assert browser.current_url == f"{url}/login"  # no session: sign in first
    browser.find_element(By.ID, "token").send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "That token is not valid here." in wait_for(browser, By.CSS_SELECTOR, "p.error").text

    browser.find_element(By.ID, "token").send_keys(tokens.by_name["approver"])
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, By.ID, "q")
    cookie = browser.get_cookie(SESSION_COOKIE)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert tokens.by_name["approver"] not in cookie["value"]

    browser.find_element(By.ID, "q").send_keys(host["name"])
    browser.find_element(By.CSS_SELECTOR, "form.search button").click()
    browser.save_screenshot(str(tmp_path / "search-phone.png"))
    wait_for(browser, By.LINK_TEXT, host["name"]).click()
    wait_for(browser, By.ID, "workloads")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(host["name"])
    workloads = browser.find_elements(By.CSS_SELECTOR, "#workloads tbody tr")
    assert len(workloads) == host["workloads"] and host["workloads"] > 0
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, f"the host page scrolls sideways on a phone ({width}px)"
    browser.save_screenshot(str(tmp_path / "host-phone.png"))

    browser.set_window_size(1280, 900)
    browser.get(f"{url}/approvals")
    row = browser.find_element(By.ID, f"approval-{pending['approval_id']}")
    assert "kubernetes.scale_deployment" in row.text and "operator" in row.text
    explained = browser.find_element(By.ID, f"explained-{pending['approval_id']}").text
    assert "Why it needs approval" in explained and "What it would take" in explained and "Target now" in explained
    browser.save_screenshot(str(tmp_path / "approvals-desktop.png"))
    # Scaling to zero is DESTRUCTIVE: one click is not enough, the tick is asked first (and checked by the server).
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert not browser.find_elements(By.ID, "notice") and cluster.mutations == []
    row = browser.find_element(By.ID, f"approval-{pending['approval_id']}")
    row.find_element(By.NAME, "reason").send_keys("maintenance window")
    row.find_element(By.NAME, "confirm").click()
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert wait_for(browser, By.ID, "notice").text == f"approval {pending['approval_id']}: success"
    assert [m.body for m in cluster.mutations] == [{"spec": {"replicas": 0}}]

    browser.get(f"{url}/audit")
    assert browser.find_element(By.ID, "verify").text.startswith("Chain intact:")
    browser.save_screenshot(str(tmp_path / "audit-desktop.png"))
    assert all(
        (tmp_path / name).stat().st_size > 5000
        for name in ("search-phone.png", "host-phone.png", "approvals-desktop.png")
    )


def test_forms_need_the_csrf_token_and_pages_need_a_session(
    site: tuple[str, Tokens], cluster: MutableFakeKubernetes
) -> None:
    url, tokens = site
    pending = httpx.post(
        f"{url}/api/v1/tools/kubernetes.scale_deployment/calls",
        json={"target": "web-0", "arguments": {"replicas": 0}},
        headers=tokens.header("operator"),
    ).json()
    with httpx.Client(base_url=url) as client:
        assert client.get("/approvals").headers["location"] == "/login"
        # A bearer token is not a web session: pages still want the cookie.
        assert client.get("/approvals", headers=tokens.header("approver")).status_code == 303
        signed_in = client.post("/login", data={"token": tokens.by_name["approver"]})
        assert (
            signed_in.status_code == 303
            and "HttpOnly" in signed_in.headers["set-cookie"]
            and "SameSite=strict" in signed_in.headers["set-cookie"]
        )
        forged = client.post(f"/approvals/{pending['approval_id']}", data={"decision": "approve", "csrf": "guess"})
        assert forged.status_code == 400 and "CSRF token mismatch" in forged.text
        assert client.get("/audit").status_code == 200
    assert cluster.mutations == []
    with httpx.Client(base_url=url) as viewer:
        viewer.post("/login", data={"token": tokens.by_name["viewer"]})
        assert viewer.get("/audit").status_code == 403
        page = viewer.get("/approvals")
        assert (
            page.status_code == 200 and "button" not in page.text.split("<table")[1]
        )  # no approve buttons for a viewer


def test_a_revoked_token_ends_its_session_and_names_are_escaped(db: Database, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from server_support import TOKEN_ISSUER, lab_config, synced

    from inventory.tokens import create_token, revoke_token

    lab = tmp_path / "lab.yaml"
    lab.write_text('hosts: [{id: x, name: "<script>alert(1)</script>"}]\n', encoding="utf-8")
    synced(db, lab_config(tmp_path, db.url, lab=lab))
    token = create_token(db, "eve", groups=("viewers",), by=TOKEN_ISSUER)
    with TestClient(create_app(db, mcp=False)) as client:
        assert client.post("/login", data={"token": token}, follow_redirects=False).status_code == 303
        page = client.get("/", params={"q": "script"})
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>" not in page.text
        # Scripts only from the app's own files (static/live.js): an injected inline script never runs.
        policy = page.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe" not in policy
        revoke_token(db, "eve", by=TOKEN_ISSUER)
        gone = client.get("/", follow_redirects=False)
        assert gone.status_code == 303 and gone.headers["location"] == "/login"


def test_changes_sources_and_workload_pages(db: Database, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from server_support import lab_config, make_tokens, synced, write_lab

    synced(db, lab_config(tmp_path, db.url, lab=write_lab(tmp_path / "lab.yaml")))
    tokens = make_tokens(db)
    with TestClient(create_app(db, mcp=False)) as client:
        client.post("/login", data={"token": tokens.by_name["viewer"]})
        changes = client.get("/changes", params={"source": "lab", "type": "host", "action": "created"}).text
        assert changes.count('data-label="Action">created<') == 5 and "workload app-" not in changes
        sources = client.get("/sources").text
        assert ">lab<" in sources and "5 hosts, 15 workloads, 1 services" in sources
        with db.session() as session:
            workload = queries.list_workloads(session, queries.ObjectFilter(name="app-2-1"))[0]
        page = client.get(f"/workloads/{workload['id']}").text
        assert f'<a href="/hosts/{workload["host_id"]}">node-2</a>' in page
        assert client.get("/workloads/nope").status_code == 404
