"""The tools there are: those every loadable connector declares, and those of ``inventory.tools`` entry points.

Each connector class found through the ``inventory.connectors`` entry points
names its tools in ``tools()``, each for its own ``type_name``. A package that
adds tools to a connector it does not own registers a module with ``TOOLS``
under the entry-point group ``inventory.tools``; those tools must name a known
connector as ``source_type``. Discovery imports no SDK.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from inventory.connector import ConnectorRegistry
from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "inventory.tools"


@dataclass
class ToolRegistry:
    """Tools by name; a tool module that fails to import leaves its tools unknown (and so DESTRUCTIVE)."""

    tools: dict[str, ToolSpec] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, specs: Iterable[ToolSpec]) -> ToolRegistry:
        registry = cls()
        for spec in specs:
            registry.add(spec, origin="given")
        return registry

    @classmethod
    def discover(cls, connectors: ConnectorRegistry | None = None) -> ToolRegistry:
        """Every tool of every loadable connector, then those of ``inventory.tools`` entry points."""
        connectors = connectors or ConnectorRegistry.discover()
        registry = cls()
        for connector in connectors.loadable():
            registry.add_all(f"connector {connector.type_name}", connector.tools, {connector.type_name})
        known = set(connectors.names())
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            registry.add_all(ep.name, functools.partial(_module_tools, ep.value), known)
        return registry

    def add_all(self, origin: str, declared: Callable[[], Iterable[ToolSpec]], source_types: set[str]) -> None:
        """Add the tools ``declared()`` returns; a declaration that fails to load disables its tools only."""
        try:
            specs = list(declared())
            for spec in specs:
                if spec.source_type not in source_types:
                    expected = " or ".join(sorted(source_types)) or "a known connector"
                    raise TypeError(f"tool {spec.name!r} is for source type {spec.source_type!r}, not {expected}")
                if not callable(spec.implementation):
                    raise TypeError(f"tool {spec.name!r} has no callable implementation")
        except Exception as exc:  # a broken tool module disables its tools only
            self.errors[origin] = f"{type(exc).__name__}: {exc}"
            log.warning("tools of %s are disabled: %s", origin, self.errors[origin])
            return
        for spec in specs:
            self.add(spec, origin=origin)

    def add(self, spec: ToolSpec, *, origin: str) -> None:
        if spec.name in self.tools:
            log.warning("tool %r declared twice; keeping the first, ignoring the one from %s", spec.name, origin)
            return
        self.tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self.tools.get(name)

    def names(self) -> list[str]:
        return sorted(self.tools)

    def __iter__(self) -> Any:
        return iter(self.tools[name] for name in self.names())


def _module_tools(module_name: str) -> Iterable[ToolSpec]:
    return importlib.import_module(module_name).TOOLS
