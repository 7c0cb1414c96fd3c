"""The one exception tree of the project.

Third-party errors (SDKs, drivers, YAML) are translated at the boundary where
they are caught: ``raise SourceError(...) from exc``. The CLI maps this tree to
exit codes: ``ConfigError`` and ``UsageError`` -> 2, everything else -> 1.

    InventoryError
    ├── ConfigError          a config file is missing, malformed or invalid (names file and key)
    ├── UsageError           the command line asks for something impossible
    ├── SourceError          a source could not be read (names source and resource)
    ├── StorageError         the database refused or is unreachable
    │   └── SchemaOutOfDate  the database is behind (or ahead of) the code's schema
    ├── ConnectorUnavailable a connector could not be loaded (import failed)
    ├── NotFound             a query named an object that does not exist
    └── Ambiguous            a name matched several objects
"""

from __future__ import annotations


class InventoryError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(InventoryError):
    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(InventoryError):
    exit_code = 2


class SourceError(InventoryError):
    def __init__(self, source: str, resource: str | None, message: str) -> None:
        self.source = source
        self.resource = resource
        self.reason = message
        where = f"source {source!r}" + (f", {resource}" if resource else "")
        super().__init__(f"{where}: {message}")


class StorageError(InventoryError):
    pass


class SchemaOutOfDate(StorageError):
    pass


class ConnectorUnavailable(InventoryError):
    pass


class NotFound(InventoryError):
    pass


class Ambiguous(InventoryError):
    pass
