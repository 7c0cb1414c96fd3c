"""SDKs are imported once, under one lock, before collection threads start: no import race between sources.

Kubernetes and Docker (and Proxmox, through requests) share modules: imported by two threads at
once, Python's per-module import locks detected a deadlock (``_DeadlockError ... kubernetes.client``)
or handed a thread a half-initialised ``requests.utils``, and a source failed at random. Only a
fresh process shows it (a test process has the SDKs imported long before), so the test runs real
``inventory sync --once`` processes against a Kubernetes, a Proxmox VE and a Docker fake at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from conftest import copy_sqlite_template

from connectors.docker.connector import DockerConnector
from connectors.docker.fake import FakeDocker, generate_containers
from connectors.kubernetes.connector import KubernetesConnector
from connectors.kubernetes.fake.objects import ClusterSpec
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.connector import ProxmoxConnector
from connectors.proxmox.fake.server import FakeProxmox, build_cluster
from inventory.config import build_config
from inventory.connector import Connector, ConnectorRegistry
from inventory.storage.database import Database
from inventory.sync import SourceRunner

PROCESSES = 20
AT_ONCE = 4


@pytest.fixture(scope="module")
def three_sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, object]]]:
    workdir = tmp_path_factory.mktemp("three-sources")
    with ExitStack() as stack:
        kube = stack.enter_context(FakeKubernetes(ClusterSpec(name="k", nodes=2, pods=10)))
        pve = stack.enter_context(FakeProxmox(build_cluster(nodes=2, guests=4, name="p")))
        engine = stack.enter_context(FakeDocker(generate_containers(6, seed="d")))
        yield [
            {"type": "kubernetes", "name": "kube", "kubeconfig": str(write_kubeconfig(workdir / "kube.yaml", {"k": kube}))},
            {
                "type": "proxmox", "name": "pve", "url": pve.url, "token_id": pve.token_id,
                "token_secret": pve.token_secret, "ca_file": str(pve.ca_file),
            },
            {"type": "docker", "name": "docker", "url": engine.url},
        ]  # fmt: skip


def test_three_sdks_in_twenty_fresh_processes_never_race(
    three_sources: list[dict[str, object]], tmp_path: Path, sqlite_template: Path
) -> None:
    def one_run(index: int) -> tuple[int, str]:
        # Each process starts on a copy of the session's migrated database: the race is in the collections'
        # imports, and migrating twenty new databases only made the runs longer (and the CPU busier).
        copy_sqlite_template(sqlite_template, tmp_path / f"run{index}.db")
        config = tmp_path / f"run{index}.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "database": {"url": f"sqlite:///{tmp_path / f'run{index}.db'}"},
                    "sync": {"concurrency": 3},
                    "sources": three_sources,
                }
            )
        )
        done = subprocess.run(
            [sys.executable, "-m", "inventory", "-c", str(config), "sync", "--once"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        return done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        results = list(pool.map(one_run, range(PROCESSES)))

    failures = [f"run {i}: exit {code}\n{output}" for i, (code, output) in enumerate(results) if code != 0]
    assert not failures, "\n\n".join(failures[:3])
    for _code, output in results:
        assert "partially initialized" not in output and "Deadlock" not in output


def test_the_runner_imports_every_configured_sdk_before_a_collection_thread_starts(
    db: Database, three_sources: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ConnectorRegistry.of(KubernetesConnector, ProxmoxConnector, DockerConnector)
    config = build_config({"sync": {"concurrency": 3}, "sources": three_sources}, registry=registry)
    loaded_in: dict[str, str] = {}
    for connector in (KubernetesConnector, ProxmoxConnector, DockerConnector):

        def load(cls: type[Connector] = connector) -> None:
            loaded_in.setdefault(cls.type_name, threading.current_thread().name)

        monkeypatch.setattr(connector, "load_sdk", classmethod(lambda cls, _load=load: _load(cls)))

    outcomes = SourceRunner.for_config(db, config, registry).run_all(config.sources)

    assert [o.status for o in outcomes] == ["success"] * 3, [o.error for o in outcomes]
    assert loaded_in == dict.fromkeys(("kubernetes", "proxmox", "docker"), threading.current_thread().name)
