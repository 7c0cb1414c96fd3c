"""The live demo's changes carry their causes: each source followed live (its watch), on both engines."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.demo import DemoLab
from inventory.loop import SyncLoop
from inventory.queries import list_changes
from inventory.storage.database import Database
from inventory.sync import sync_all

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_live_demo_changes_name_who_made_them(db: Database, database_url: str, tmp_path: Path) -> None:
    registry = ConnectorRegistry.discover()
    with DemoLab(tmp_path / "lab") as lab:
        config = load_config(lab.write_config(database_url), registry=registry)
        assert all(outcome.ok for outcome in sync_all(db, config, registry))
        loop = SyncLoop(db, config, registry, jitter=0, coordinate=False)
        assert {live.name for live in loop.live} == {"pve", "k3s", "docker01"} and not loop.schedule
        runner = threading.Thread(target=loop.run, daemon=True)
        runner.start()
        try:
            _wait(
                lambda: all(live.stats.state == "watching" and live.stats.deltas > 0 for live in loop.live),
                30,
                "every source followed",
            )
            with db.session() as session:
                before = max((row["id"] for row in list_changes(session, since=EPOCH)), default=0)

            def stored() -> dict[tuple[str, str, str], str]:
                with db.session() as session:
                    rows = list_changes(session, since=EPOCH, after_id=before, object_type="workload")
                return {(r["source"], r["action"], r["name"]): r["by"] for r in rows}

            # Each step changes every source; the next waits for them to be stored (a Proxmox guest stopped
            # and started again within one poll would be no change at all).
            expected = {
                1: {
                    ("pve", "updated", "nextcloud"),
                    ("k3s", "created", "web-0-7c9b6d5f8-s0001"),
                    ("docker01", "updated", "certbot"),
                },
                2: {("k3s", "updated", "web-0"), ("docker01", "created", "monitoring-grafana-1")},
                3: {("pve", "created", "test-ct-3"), ("k3s", "created", "web-0-7c9b6d5f8-s0003")},
            }
            for step, keys in expected.items():
                lab.churn(step)
                _wait(lambda keys=keys: keys <= stored().keys(), 10, f"the changes of churn step {step} stored")
                if step == 1:
                    first = stored()
            # Step 3 kills certbot, started at step 1: a key stored already, so its newer row is waited for apart.
            certbot = ("docker01", "updated", "certbot")
            _wait(lambda: stored()[certbot] != first[certbot], 10, "certbot's kill at churn step 3 stored")
            found = stored()
        finally:
            loop.request_stop()
            runner.join(30)
    assert not runner.is_alive()
    # Proxmox: the task's user and type; Kubernetes: the field manager (and the owner chain); Docker: the event.
    assert first[("pve", "updated", "nextcloud")] == "root@pam qmstop"
    assert found[("pve", "updated", "nextcloud")] == "root@pam qmstart"  # stopped at step 1, started again at 2
    assert found[("pve", "created", "test-ct-3")] == "alice@pve vzcreate"
    assert found[("k3s", "updated", "web-0")] == "kubectl-client-side-apply Update"
    assert found[("k3s", "created", "web-0-7c9b6d5f8-s0001")] == "kube-controller-manager Update via=Deployment/web-0"
    assert found[("k3s", "removed", "web-0-7c9b6d5f8-9e760")] == "unknown"  # a deletion names no writer
    assert found[("docker01", "removed", "monitoring-grafana-1")].startswith("docker destroy")
    assert found[("docker01", "created", "monitoring-grafana-1")] == "docker create"
    assert first[("docker01", "updated", "certbot")] == "docker start"
    assert found[("docker01", "updated", "certbot")] == "docker kill exitCode=137 signal=9"
    assert not any("(inferred)" in cause for cause in found.values())
