"""The demo homelab (Proxmox VMs that are Kubernetes nodes, an LXC running Docker) synced into a database.

Shared by the tests of the views that span sources (exports, impact, logical services).
The fakes serve the real APIs on loopback and the real connectors read them; once
synced, the lab is stopped: these features read the database only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import POSTGRES_ADMIN_URL, require_postgres

from inventory.audit.keys import AuditSecrets, attach
from inventory.config import load_config
from inventory.connector import ConnectorRegistry
from inventory.storage.database import Database, open_database
from inventory.sync import sync_all
from inventory.testing.scratch_postgres import ScratchDatabase


@dataclass
class SyncedLab:
    config_path: Path
    database_url: str
    db: Database


@contextmanager
def synced_lab(directory: Path, database_url: str, *, extra_config: dict | None = None) -> Iterator[SyncedLab]:
    from inventory.demo import DemoLab

    registry = ConnectorRegistry.discover()
    db = open_database(database_url, migrate=True)
    try:
        with DemoLab(directory) as lab:
            config_path = lab.write_config(database_url)
            if extra_config:
                config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
                config.update(extra_config)
                config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
            outcomes = sync_all(db, load_config(config_path, registry=registry), registry)
            assert all(o.ok for o in outcomes), [o.describe() for o in outcomes]
        yield SyncedLab(config_path, database_url, db)
    finally:
        db.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncedLab]:
    """The demo lab synced once per test module, into SQLite and into a scratch PostgreSQL database."""
    directory = tmp_path_factory.mktemp("lab")
    if request.param == "sqlite":
        with synced_lab(directory, f"sqlite:///{directory / 'inventory.db'}") as synced:
            yield synced
        return
    require_postgres()
    with (
        ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_test") as scratch,
        synced_lab(directory, scratch.url) as synced,
    ):
        yield synced


@contextmanager
def static_lab(
    request: pytest.FixtureRequest, directory: Path, inventory: str, then: str | None = None
) -> Iterator[Path]:
    """A static source of ``inventory`` synced once into SQLite or a scratch PostgreSQL database (``request.param``),
    and once more as ``then`` if given; the config's path. For modules whose tests only read: one lab per engine,
    not one per test."""
    config = directory / "inventory.yaml"

    def synced(database_url: str) -> Path:
        # The lab's own audit key (not the per-test data dir's): every test of the module appends under it.
        config.write_text(
            f"database: {{url: '{database_url}'}}\naudit: {{key_file: '{directory / 'audit.key'}'}}\n"
            "sources:\n  - {type: static, name: lab, path: lab.yaml}\n"
        )
        registry = ConnectorRegistry.discover()
        db = open_database(database_url, migrate=True)
        attach(db, AuditSecrets(directory / "audit.key"))
        try:
            for text in (inventory, then) if then is not None else (inventory,):
                (directory / "lab.yaml").write_text(text)
                outcomes = sync_all(db, load_config(config, registry=registry), registry)
                assert all(o.ok for o in outcomes), [o.describe() for o in outcomes]
        finally:
            db.dispose()
        return config

    if request.param == "sqlite":
        yield synced(f"sqlite:///{directory / 'inventory.db'}")
        return
    require_postgres()
    with ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_test") as scratch:
        yield synced(scratch.url)
