"""The connector registry: entry points, a connector that fails to import disables only itself, and what
connectors declare.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from connectors.static.connector import StaticConnector
from inventory.connector import ENTRY_POINT_GROUP, ConnectorRegistry, StatusVocabulary, _Entry
from inventory.errors import ConnectorUnavailable
from inventory.policy.registry import ToolRegistry
from inventory.policy.tools import ToolSpec


def registry_with(**targets: str) -> ConnectorRegistry:
    return ConnectorRegistry(
        {
            name: _Entry(name, EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP))
            for name, value in targets.items()
        }
    )


def test_built_in_connectors_are_registered_through_entry_points() -> None:
    registry = ConnectorRegistry.discover()
    assert {"static", "kubernetes", "proxmox", "docker"} <= set(registry.names())
    assert registry.get("static").__module__ == "connectors.static.connector"


def test_broken_connector_is_disabled_and_others_still_load(caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_with(
        broken="connectors.does_not_exist:Nope", static="connectors.static.connector:StaticConnector", odd="json:dumps"
    )
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
    subprocess.run(
        [sys.executable, "-m", "inventory", *args], capture_output=True, text=True, check=True
    )  # creates and migrates
    code = (
        "import atexit, sys\n"
        "unwanted = ('kubernetes', 'proxmoxer', 'docker', 'alembic', 'prometheus_client', 'inventory.loop', "
        "'inventory.metrics')\n"
        "atexit.register(lambda: print('loaded:', ','.join(m for m in unwanted if m in sys.modules)))\n"
        f"sys.argv = ['inventory', *{args!r}]\n"
        "from inventory.cli import main\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loaded:"


def test_every_tool_is_declared_by_its_connector_with_a_callable_implementation() -> None:
    connectors = ConnectorRegistry.discover()
    registry = ToolRegistry.discover(connectors)
    assert not registry.errors
    by_type = {name: connectors.get(name) for name in connectors.names()}
    declared = {spec.name for connector in by_type.values() for spec in connector.tools()}
    assert declared == set(registry.names()) and len(declared) > 10
    for spec in registry:
        connector = by_type[spec.source_type]
        assert spec in connector.tools() and spec.name.startswith(f"{connector.type_name}.")
        assert callable(spec.implementation) and inspect.signature(spec.implementation).parameters.keys() == {"ctx"}
        assert spec.implementation.__module__ == f"{connector.__module__.rpartition('.')[0]}.tools"


def test_tools_are_found_through_the_connectors_given_not_a_list_of_modules() -> None:
    from connectors.docker.connector import DockerConnector

    assert {spec.source_type for spec in ToolRegistry.discover(ConnectorRegistry.of(DockerConnector))} == {"docker"}
    assert ToolRegistry.discover(ConnectorRegistry.of(StaticConnector)).names() == []


class _Lab(StaticConnector):
    type_name = "lab"
    statuses = StatusVocabulary(running={"Humming"}, failed={"on-fire"})


def test_a_tool_declared_for_another_connector_type_disables_that_connectors_tools(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from connectors.docker.tools import TOOLS

    class Impostor(_Lab):
        @classmethod
        def tools(cls) -> Sequence[ToolSpec]:
            return [TOOLS[0]]  # a docker tool, claimed by the "lab" connector

    registry = ToolRegistry.discover(ConnectorRegistry.of(Impostor))
    assert registry.names() == []
    assert registry.errors == {"connector lab": "TypeError: tool 'docker.list' is for source type 'docker', not lab"}


def test_status_words_come_from_the_connectors_declarations() -> None:
    pooled = ConnectorRegistry.of(StaticConnector, _Lab).status_vocabulary()
    assert [pooled.classify(s) for s in ("HUMMING", "on-fire", "shutdown", "exited")] == [
        "running",
        "failed",
        "stopped",
        "other",
    ]
    # The built-in connectors together keep the words the report has always known.
    builtin = ConnectorRegistry.discover().status_vocabulary()
    assert builtin.running == {
        "running",
        "ready",
        "active",
        "up",
        "healthy",
        "available",
        "online",
        "succeeded",
        "completed",
        "complete",
    }
    assert builtin.stopped == {
        "stopped",
        "exited",
        "paused",
        "created",
        "terminated",
        "suspended",
        "offline",
        "shutdown",
        "dead",
    }
    assert builtin.failed == {
        "failed",
        "error",
        "crashloopbackoff",
        "imagepullbackoff",
        "errimagepull",
        "oomkilled",
        "unhealthy",
        "restarting",
        "unknown",
    }


def test_no_connector_module_is_part_of_an_import_cycle() -> None:
    """Counting every import, also those inside functions and under TYPE_CHECKING: a cycle is a cycle."""
    root = Path(__file__).resolve().parent.parent
    files = {
        ".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): f
        for package in ("connectors", "inventory")
        for f in (root / package).rglob("*.py")
    }
    imports: dict[str, set[str]] = {}
    for module, file in files.items():
        found = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    found.add(name)
        imports[module] = found

    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for nxt in imports[todo.pop()] - seen:
                if nxt == goal:
                    return True
                seen.add(nxt)
                todo.append(nxt)
        return False

    cycles = [
        m
        for m in files
        if m.startswith(("connectors.", "inventory.connector", "inventory.policy.tools", "inventory.policy.registry"))
        and reaches(m, m)
    ]
    assert cycles == []
