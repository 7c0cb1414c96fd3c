"""One exception tree: every exception class of the project derives from inventory.errors.InventoryError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import connectors
import inventory
from inventory.errors import InventoryError

OUTSIDE_THE_TREE = {
    # How an InventoryError leaves the CLI: click's exception, carrying the exit code of the error's class.
    "inventory.cli.CommandError",
    # A driver error on purpose: SQLAlchemy must see the DBAPI's own error to drop the closed connection.
    "inventory.storage.pg_waits.NoAnswer",
    # Raised into the application from the body's receive() and caught by the size-limit middleware around
    # it: an InventoryError would be answered by the application's own handlers before the middleware saw it.
    "inventory.server.limits._BodyTooLarge",
    # Control flow inside the Docker watch: raised and caught within its one generator ("read everything
    # again"), never leaving it; a SourceError there would be retried as an unreachable engine instead.
    "connectors.docker.watch._Relist",
}


def _project_modules() -> list[str]:
    names = []
    for package in (inventory, connectors):
        names.append(package.__name__)
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not module.name.endswith(".__main__"):  # running the CLI is not importing it
                names.append(module.name)
    return names


def test_every_exception_class_of_the_project_is_in_the_tree() -> None:
    found, outside = [], []
    for name in _project_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            qualified = f"{name}.{cls.__qualname__}"
            found.append(qualified)
            if not issubclass(cls, InventoryError) and qualified not in OUTSIDE_THE_TREE:
                outside.append(qualified)
    assert outside == []
    # The walk does reach the classes that live beside their code.
    assert {
        "connectors.kubernetes.api.ListFailed",
        "connectors.proxmox.api.ApiCallFailed",
        "inventory.testing.docker_engine.EngineUnavailable",
    } <= set(found)


def test_the_documented_tree_names_every_class_of_errors_py() -> None:
    from inventory import errors

    defined = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    }
    tree = [line.strip().lstrip("│├└─ ") for line in (errors.__doc__ or "").splitlines() if line.startswith("    ")]
    assert defined <= {line.split()[0] for line in tree if line}
