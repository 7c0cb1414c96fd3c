"""Errors summarised: one line per kind of resource and reason, a bounded last_error, each failure printed once."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select
from sync_support import child_env, run_inventory, write_config

from connectors.proxmox.config import ProxmoxConfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.server import FakeProxmox, build_cluster
from inventory.outcome import ERROR_LIMIT, bounded, summarize_problems
from inventory.storage.database import Database
from inventory.storage.models import SyncRun
from inventory.sync import sync_source


def test_many_failures_of_one_kind_and_reason_are_one_line_with_a_count_and_examples() -> None:
    problems = [f"container web-{i} inspect: engine unreachable" for i in range(59)]
    problems += ["container db-1 inspect: HTTP 500", "images: timed out"]

    lines = summarize_problems(problems)

    assert lines == [
        "59 container failed (engine unreachable): container web-0 inspect, container web-1 inspect, "
        "container web-2 inspect, ...",
        "container db-1 inspect: HTTP 500",
        "images: timed out",
    ]


def test_a_long_text_is_cut_saying_how_much_was_left_out() -> None:
    assert bounded("x" * 10) == "x" * 10
    cut = bounded("y" * 5000)
    assert cut.startswith("y" * ERROR_LIMIT) and cut.endswith("(3976 more characters)")


def test_a_cluster_whose_guest_configs_all_fail_stores_a_short_error(db: Database) -> None:
    with FakeProxmox(build_cluster(nodes=2, guests=73)) as pve:
        pve.faults.fail(r"/(qemu|lxc)/\d+/config$", 500, "Internal Server Error")
        config = ProxmoxConfig(
            name="pve",
            url=pve.url,
            token_id=pve.token_id,
            token_secret=SecretStr(pve.token_secret),
            ca_file=pve.ca_file,
            retries=0,
        )

        outcome = sync_source(db, ProxmoxConnector(config))

    assert outcome.status == "partial" and outcome.error is not None
    assert len(outcome.error) <= ERROR_LIMIT + 40
    assert "lxc failed (GET /api2/json/nodes/{node}/lxc/{vmid}/config: HTTP 500 Internal Server Error)" in outcome.error
    with db.session() as session:
        assert session.scalars(select(SyncRun.error)).one() == outcome.error


def test_sync_once_prints_each_failure_once(tmp_path: Path) -> None:
    missing = tmp_path / "rack.yaml"
    config = write_config(tmp_path / "inventory.yaml", f"sqlite:///{tmp_path / 'db.sqlite'}", {"rack": missing})

    result = run_inventory("--config", str(config), "sync", "--once", env=child_env())

    assert result.returncode == 1, result.stderr
    assert result.stderr.count("cannot read: No such file or directory") == 1, result.stderr
    assert "FAILED source 'rack'" in result.stderr
