"""A private Docker engine for one test module, the static busybox image loaded: started once, stopped after.

Without the engine's packages a laptop skips the module with the reason; under CI=true the module fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from inventory.testing.docker_engine import DockerEngine, EngineUnavailable, make_busybox_image, start_engine

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
