"""Write-ahead audit, both engines: the intent is committed before a call runs, a killed call reads as outcome unknown,
and a call whose principal is refused (bad name, not allowed to act for it) never runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.mutations import MutableFakeKubernetes
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import write_kubeconfig
from inventory.audit.log import AuditFilter, list_entries
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.storage.database import Database
from inventory.sync import sync_source

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESTART = ["tool", "run", "kubernetes.restart_deployment", "--target", "web-0", "--no-input", "-o", "json"]


class KillingCluster(MutableFakeKubernetes):
    """Applies a write, then SIGKILLs the client that sent it before answering: a process killed mid-call."""

    victim: int | None = None

    def route(self, method: str, raw_path: str, headers: Any) -> tuple[int, bytes, float]:
        answer = super().route(method, raw_path, headers)
        if method == "PATCH" and self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
        return answer


@pytest.fixture
def cluster() -> Iterator[KillingCluster]:
    with KillingCluster(ClusterSpec(name="lab", nodes=1, pods=4, replicas_per_deployment=1)) as api:
        yield cast(KillingCluster, api)


@pytest.fixture
def config_file(cluster: KillingCluster, db: Database, tmp_path: Path) -> Path:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    raw = {
        "database": {"url": db.url},
        "sources": [{"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab"}],
        # A rollout restart changes nothing the inventory keeps: its re-read (test_reread_after_call) waits this long.
        "policy": {"observe": 1},
    }
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = build_config(raw, path=path, registry=ConnectorRegistry.of(KubernetesConnector))
    assert sync_source(db, KubernetesConnector(config.source("lab"))).status == "success"
    return path


def cli(config_file: Path, *args: str | bytes) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "inventory", "--config", str(config_file), *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def tool_entries(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        return list_entries(session, AuditFilter(event="tool_call"))


def test_a_call_killed_mid_flight_left_its_intent_and_reads_as_outcome_unknown(
    db: Database, config_file: Path, cluster: KillingCluster
) -> None:
    process = cli(config_file, *RESTART)
    cluster.victim = process.pid
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert len(cluster.mutations) == 1  # the deployment was restarted
    (intent,) = tool_entries(db)
    assert (intent["tool"], intent["target_name"], intent["decision"], intent["outcome"]) == (
        "kubernetes.restart_deployment",
        "web-0",
        "allow",
        "unknown",
    )
    listed = cli(config_file, "audit", "list", "--event", "tool_call", "-o", "json")
    out, _ = listed.communicate(timeout=60)
    assert [e["outcome"] for e in json.loads(out)] == ["unknown"]


def test_an_executed_call_links_its_outcome_to_its_intent(
    db: Database, config_file: Path, cluster: KillingCluster
) -> None:
    process = cli(config_file, *RESTART)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    intent, done, observed = tool_entries(db)
    assert (intent["outcome"], done["outcome"], observed["outcome"]) == ("started", "success", "observed")
    assert done["details"]["intent_seq"] == intent["seq"] and json.loads(out)["audit_seq"] == done["seq"]
    assert observed["details"]["intent_seq"] == intent["seq"] and observed["details"]["outcome_seq"] == done["seq"]


def test_if_the_intent_cannot_be_written_nothing_runs(
    db: Database, config_file: Path, cluster: KillingCluster, tmp_path: Path
) -> None:
    """The audit key cannot be created (its directory is a file): the call is refused before it reaches the source."""
    raw = yaml.safe_load(config_file.read_text())
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = build_config(
        {**raw, "audit": {"key_file": str(blocker / "audit.key")}},
        path=config_file,
        registry=ConnectorRegistry.of(KubernetesConnector),
    )
    from inventory.audit.keys import AuditSecrets, attach

    attach(db, AuditSecrets(blocker / "audit.key"))
    runner = ToolRunner(db, builtin_policy(), ToolRegistry.discover(), source_config=config.source)
    with pytest.raises(Exception, match="audit key"):
        runner.run("kubernetes.restart_deployment", "web-0", {}, "alice")
    assert cluster.mutations == [] and tool_entries(db) == []


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        (b"ag\xffent", b"is not valid text"),  # an undecodable byte on the command line
        (b"a" * 201, b"at most 64 are allowed"),  # longer than the column the old code wrote it to
        (b"agent\x1b[2J", b"only printable characters"),
        (b"agent 1", b"only printable characters"),
    ],
    ids=["undecodable", "too-long", "escape", "space"],
)
def test_a_bad_actor_name_is_refused_before_anything_runs(
    db: Database, config_file: Path, cluster: KillingCluster, actor: bytes, message: bytes
) -> None:
    process = cli(config_file, *RESTART, "--actor", actor)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err.decode(errors="replace")
    assert message in err and b"Traceback" not in err
    assert cluster.mutations == [] and tool_entries(db) == []


def test_an_actor_the_config_does_not_allow_is_refused(
    db: Database, config_file: Path, cluster: KillingCluster
) -> None:
    process = cli(config_file, *RESTART, "--actor", "alice")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and b"may not act for alice" in err
    assert cluster.mutations == [] and tool_entries(db) == []
