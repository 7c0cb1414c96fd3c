"""A private Docker engine for one test module, the static busybox image loaded: started once, stopped after.

Without the engine's packages a laptop skips the module with the reason; under CI=true the module fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from inventory.testing.docker_engine import (
    BUSYBOX_IMAGE,
    DockerEngine,
    EngineUnavailable,
    make_busybox_image,
    start_engine,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def busybox_engine() -> Iterator[DockerEngine]:
    """The body of a module-scoped ``engine`` fixture (``yield from busybox_engine()``)."""
    try:
        started = start_engine()
    except EngineUnavailable as exc:
        if IN_CI:
            pytest.fail(f"CI needs a private Docker engine: {exc}")
        pytest.skip(str(exc))
    try:
        make_busybox_image(started.client())
        yield started
    finally:
        started.stop()


@contextmanager
def engine_client(engine: DockerEngine) -> Iterator[Any]:
    """A client of the module's engine, which is left as it was found when the block ends: every container
    removed, and the networks (a user-defined bridge is a real interface on this machine) and volumes pruned."""
    client = engine.client()
    try:
        yield client
    finally:
        for container in client.containers(all=True):
            client.remove_container(container["Id"], force=True)
        client.prune_networks()
        client.prune_volumes()
        client.close()


def run_busybox(
    client: Any, name: str, command: str = "sleep 600", *, policy: str | None = None, start: bool = True, **options: Any
) -> str:
    """A busybox container on no network (started unless ``start`` is False; ``policy``: its restart policy); its id.

    SIGKILL stops it: busybox as PID 1 ignores SIGTERM, and a stop would wait out its timeout.
    """
    host_config = client.create_host_config(network_mode="none", restart_policy={"Name": policy} if policy else None)
    container = client.create_container(
        BUSYBOX_IMAGE, command, name=name, stop_signal="SIGKILL", host_config=host_config, **options
    )
    if start:
        client.start(container["Id"])
    return str(container["Id"])
