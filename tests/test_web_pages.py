"""The operator's pages in a real browser: home, lists with filters and columns, a host's picture and impact,
approvals explained, errors styled (the database away included). Screenshots at desktop and phone width."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import Tokens
from test_server_web import (  # noqa: F401 - the real browser and lab fixtures
    ask_to_scale_web_0_to_zero,
    browser,
    cluster,
    site,
    wait_for,
)

from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from inventory import queries
from inventory.server import create_app
from inventory.server.run import BackgroundServer
from inventory.storage.database import Database

# Where to keep the screenshots for people (docs/screenshots is made this way); by default only tmp_path.
SCREENSHOTS = os.environ.get("INVENTORY_SCREENSHOTS")
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def sign_in(browser: Any, url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/login")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(browser, By.ID, "health")


def shoot(browser: Any, tmp_path: Path, name: str) -> None:
    """Each page at both widths; a page never scrolls sideways on a phone (tables fold into cards)."""
    for width_name, (width, height) in WIDTHS.items():
        browser.set_window_size(width, height)
        scroll = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} scrolls sideways at {width}px ({scroll}px)"
        # The whole page (up to a few screens) in one picture.
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, min(max(height, full + 120), 3 * height))
        browser.save_screenshot(str(tmp_path / f"{name}-{width_name}.png"))
    browser.set_window_size(*WIDTHS["desktop"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_home_lists_host_and_approvals_pages(
    site: tuple[str, Tokens], browser: Any, db: Database, cluster: MutableFakeKubernetes, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    url, tokens = site
    pending = ask_to_scale_web_0_to_zero(url, tokens)
    sign_in(browser, url, tokens.by_name["approver"])
    health = browser.find_element(By.ID, "health").text
    assert "lab" in health and "success" in health and "workloads" in health
    assert "Changed today" in browser.find_element(By.ID, "today").text
    assert browser.find_elements(By.CSS_SELECTOR, "#today tbody tr")  # the first sync's creations, newest first
    assert f"#{pending['approval_id']} kubernetes.scale_deployment" in browser.find_element(By.ID, "pending").text
    assert browser.find_element(By.ID, "down").text.startswith("Down")
    shoot(browser, tmp_path, "home")

    # A list with filters, a chosen column and paging (the lab has 12 pods: pages of 100 hold them all).
    browser.get(f"{url}/workloads?kind=pod&label=app%3Dweb-0&col=name&col=status&col=labels")
    headings = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#list thead th")]
    assert headings == ["Name", "Status", "Labels"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#list tbody tr")
    with db.session() as session:
        expected = queries.list_workloads(
            session, queries.ObjectFilter(kind="pod", labels=queries.parse_labels(["app=web-0"]))
        )
    assert len(rows) == len(expected) > 0 and all("app=web-0" in row.text for row in rows)
    assert not browser.find_elements(By.CSS_SELECTOR, "a[rel=next]")
    shoot(browser, tmp_path, "workloads")
    # Sorting by a heading (the declared sortable fields, as the API's sort=): ascending, then descending.
    browser.get(f"{url}/workloads?kind=pod")
    browser.find_element(By.LINK_TEXT, "Name").click()
    names = [row.find_element(By.CSS_SELECTOR, "td").text for row in wait_rows(browser)]
    assert names == sorted(names) and len(names) > 2
    browser.find_element(By.LINK_TEXT, "Name").click()
    wait_for(browser, By.CSS_SELECTOR, "th[aria-sort=descending]")
    assert [row.find_element(By.CSS_SELECTOR, "td").text for row in wait_rows(browser)] == sorted(names, reverse=True)
    browser.get(f"{url}/hosts")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#list tbody tr")) == 2
    browser.get(f"{url}/services?name=web-*")
    assert browser.find_elements(By.CSS_SELECTOR, "#list tbody tr")
    bad = httpx.get(f"{url}/workloads", params={"col": "password"}, cookies=browser_cookies(browser))
    assert bad.status_code == 400 and "o column &#39;password&#39;" in bad.text

    # A host: its attributes, the machine picture (each node a link), what goes with it.
    with db.session() as session:
        host = queries.list_hosts(session)[0]
    browser.get(f"{url}/hosts/{host['id']}")
    assert browser.find_element(By.ID, "attributes").text
    graph = browser.find_element(By.CSS_SELECTOR, "#machine-graph svg")
    links = graph.find_elements(By.CSS_SELECTOR, "a")
    assert len(links) == 1 + host["workloads"] + len(set(_services_of(db, host["id"])))
    assert "workloads" in browser.find_element(By.ID, "impact").text
    shoot(browser, tmp_path, "host")

    # A workload and a service: attributes, what goes with the workload, members; the sources page.
    with db.session() as session:
        pod = queries.list_workloads(session, queries.ObjectFilter(kind="pod", name="web-0-*"))[0]
        service = queries.list_services(session, queries.ObjectFilter(name="web-0"))[0]
    browser.get(f"{url}/workloads/{pod['id']}")
    assert browser.find_element(By.ID, "attributes").text and browser.find_element(By.ID, "impact").text
    shoot(browser, tmp_path, "workload")
    browser.get(f"{url}/services/{service['id']}")
    assert "Members" in browser.find_element(By.TAG_NAME, "main").text
    shoot(browser, tmp_path, "service")
    browser.get(f"{url}/sources")
    assert "lab" in browser.find_element(By.TAG_NAME, "main").text
    shoot(browser, tmp_path, "sources")

    browser.get(f"{url}/changes")
    assert "newest first" in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, tmp_path, "changes")
    browser.get(f"{url}/approvals")
    assert browser.find_element(By.ID, f"explained-{pending['approval_id']}").text
    shoot(browser, tmp_path, "approvals")
    browser.get(f"{url}/audit")
    assert browser.find_element(By.ID, "verify").text.startswith("Chain intact:")
    shoot(browser, tmp_path, "audit")

    browser.get(f"{url}/no-such-page")
    assert browser.find_element(By.CSS_SELECTOR, "#error h1").text == "Not found"
    shoot(browser, tmp_path, "not-found")
    if SCREENSHOTS:
        for shot in tmp_path.glob("*.png"):
            (Path(SCREENSHOTS) / shot.name).write_bytes(shot.read_bytes())


def wait_rows(browser: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    wait_for(browser, By.CSS_SELECTOR, "th[aria-sort]")
    return list(browser.find_elements(By.CSS_SELECTOR, "#list tbody tr"))


def browser_cookies(browser: Any) -> dict[str, str]:
    return {cookie["name"]: cookie["value"] for cookie in browser.get_cookies()}


def _services_of(db: Database, host_id: int) -> list[int]:
    from sqlalchemy import select

    from inventory.storage.models import ServiceMember, ServiceRow, WorkloadRow

    with db.session() as session:
        return list(
            session.execute(
                select(ServiceMember.service_id)
                .join(WorkloadRow, WorkloadRow.id == ServiceMember.workload_id)
                .join(ServiceRow, ServiceRow.id == ServiceMember.service_id)
                .where(
                    WorkloadRow.host_id == host_id, WorkloadRow.removed_at.is_(None), ServiceRow.removed_at.is_(None)
                )
            ).scalars()
        )


def test_the_database_away_gets_a_styled_page_and_a_json_503(tmp_path: Path) -> None:
    """Sign-in and the API with a PostgreSQL that does not answer: a page that says so, never a bare 500."""
    away = Database("postgresql+psycopg://postgres@127.0.0.1:9/inventory?connect_timeout=2")
    with BackgroundServer(create_app(away, mcp=False)) as server:
        signing_in = httpx.post(f"{server.url}/login", data={"token": "inv_whatever"}, timeout=20)
        assert signing_in.status_code == 503 and "text/html" in signing_in.headers["content-type"]
        assert "not reachable" in signing_in.text and "Traceback" not in signing_in.text
        api = httpx.get(f"{server.url}/api/v1/sources", headers={"Authorization": "Bearer inv_x"}, timeout=20)
        assert api.status_code == 503 and api.json()["error"]["type"] == "DatabaseUnavailable"
