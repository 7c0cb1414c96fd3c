"""The connector registry: entry points, and a connector that fails to import disables only itself."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from inventory.connector import ENTRY_POINT_GROUP, ConnectorRegistry, _Entry
from inventory.errors import ConnectorUnavailable


def registry_with(**targets: str) -> ConnectorRegistry:
    return ConnectorRegistry({name: _Entry(name, EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)) for name, value in targets.items()})


def test_built_in_connectors_are_registered_through_entry_points() -> None:
    registry = ConnectorRegistry.discover()
    assert {"static", "kubernetes", "proxmox", "docker"} <= set(registry.names())
    assert registry.get("static").__module__ == "connectors.static.connector"


def test_broken_connector_is_disabled_and_others_still_load(caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_with(broken="connectors.does_not_exist:Nope", static="connectors.static.connector:StaticConnector", odd="json:dumps")
    with pytest.raises(ConnectorUnavailable, match="connector 'broken' is unavailable: ModuleNotFoundError"):
        registry.get("broken")
    assert "connector 'broken' is disabled" in caplog.text
    with pytest.raises(ConnectorUnavailable, match="is not a Connector subclass"):
        registry.get("odd")
    assert registry.get("static").type_name == "static"
    status = {row["type"]: row["status"] for row in registry.status()}
    assert status == {"broken": "disabled", "odd": "disabled", "static": "ok"}
    with pytest.raises(ConnectorUnavailable, match=r"unknown source type 'nope' \(available: broken, odd, static\)"):
        registry.get("nope")


def test_cli_starts_without_importing_any_sdk() -> None:
    code = (
        "import sys; from inventory.cli import cli; "
        "from inventory.config import build_config; build_config({'sources': [{'type': 'static', 'name': 'x'}]}); "
        "heavy = [m for m in ('kubernetes', 'proxmoxer', 'docker', 'alembic', 'rich', 'httpx') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sync_once_of_a_static_source_loads_no_sdk_and_no_loop_machinery(tmp_path: Path) -> None:
    config = tmp_path / "inventory.yaml"
    config.write_text("sources:\n  - {type: static, name: lab, hosts: [{id: nas, name: nas}]}\n")
    args = ["-c", str(config), "--database-url", f"sqlite:///{tmp_path / 'inventory.db'}", "sync", "--once"]
    subprocess.run([sys.executable, "-m", "inventory", *args], capture_output=True, text=True, check=True)  # creates and migrates
    code = (
        "import atexit, sys\n"
        "unwanted = ('kubernetes', 'proxmoxer', 'docker', 'alembic', 'prometheus_client', 'inventory.loop', 'inventory.metrics')\n"
        "atexit.register(lambda: print('loaded:', ','.join(m for m in unwanted if m in sys.modules)))\n"
        f"sys.argv = ['inventory', *{args!r}]\n"
        "from inventory.cli import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loaded:"
