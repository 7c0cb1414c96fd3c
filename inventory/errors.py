"""The one exception tree of the project.

Third-party errors (SDKs, drivers, YAML) are translated at the boundary where
they are caught: ``raise SourceError(...) from exc``. The CLI maps this tree to
exit codes through ``exit_code``: ``ConfigError`` and ``UsageError`` -> 2,
``PolicyDenied`` -> 3, everything else -> 1.

Every exception class of the project is in this tree. Most are defined here; a
few live beside the code that raises them and subclass a class of the tree:

    InventoryError
    ├── ConfigError            a config file is missing, malformed or invalid (names file and key)
    ├── UsageError             the command line asks for something impossible
    │   └── InvalidArguments   a tool call's arguments failed validation (names the keys, never the values)
    ├── SourceError            a source could not be read (names source and resource)
    ├── SourceApiError         one call to a source's API failed; raised and caught inside a connector,
    │   │                      which turns it into a SourceError before it leaves
    │   ├── connectors.kubernetes.api.ListFailed (and its private _Expired: a continue token too old)
    │   └── connectors.proxmox.api.ApiCallFailed
    ├── SourceLockHeld         another process is syncing the source right now (the outcome "locked")
    ├── StorageError           the database refused or is unreachable
    │   └── SchemaOutOfDate    the database is behind (or ahead of) the code's schema
    ├── ConnectorUnavailable   a connector could not be loaded (import failed)
    ├── NotFound               a query named an object that does not exist
    ├── Ambiguous              a name matched several objects (exit code 2)
    ├── PolicyDenied           the policy refuses a tool call or an approval (exit code 3)
    │   ├── TargetChanged      the target at its source is no longer the object the call was decided for
    │   └── TamperedRow        an approval or token row whose mac does not verify (edited without the audit key)
    ├── ToolFailed             a tool ran and its source refused or failed (names source and target)
    ├── ListenFailed           `inventory serve` cannot take its address (the port is busy, or not ours to take)
    ├── ServerUnavailable      the configured server socket does not answer (exit code 2; names the socket)
    ├── inventory.client.ServerError             an error the server answered, with its class's exit code
    ├── inventory.server.auth.NotAuthenticated   no token, or one no authenticator knows (HTTP 401)
    ├── inventory.server.auth.Forbidden          a known principal lacks the permission (HTTP 403)
    ├── inventory.server.web_base.SignInRequired the web UI's session is gone (a redirect to sign in)
    └── HarnessError           raised by the test harness (inventory.testing, connectors.*.fake), never by the product
        ├── inventory.testing.docker_engine.EngineUnavailable
        └── connectors.proxmox.fake.server.ApiError (the fake's non-200 answer, inside the fake)

``inventory.cli.CommandError`` is click's ``ClickException``, not part of the tree: it is how
an ``InventoryError`` leaves the CLI, with the exit code its class declares.
"""

from __future__ import annotations

from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for a near miss among ``choices`` (difflib), else nothing: for error messages."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


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


class InvalidArguments(UsageError):
    """Arguments that failed validation; ``keys`` names them (their values are never repeated anywhere)."""

    def __init__(self, message: str, keys: set[str]) -> None:
        super().__init__(message)
        self.keys = keys


class SourceError(InventoryError):
    def __init__(self, source: str, resource: str | None, message: str) -> None:
        self.source = source
        self.resource = resource
        self.reason = message
        where = f"source {source!r}" + (f", {resource}" if resource else "")
        super().__init__(f"{where}: {message}")


class SourceApiError(InventoryError):
    """One API call of a connector failed; the connector says which source and resource when it translates it."""


class SourceLockHeld(InventoryError):
    """Another process is syncing this source right now."""

    def __init__(self, source: str, holder: str | None, waited: float) -> None:
        self.source = source
        self.holder = holder
        self.waited = waited
        who = holder or "another process (holder unknown)"
        after = f" after waiting {waited:.0f}s" if waited >= 1 else ""
        super().__init__(f"source {source!r} is being synced by {who}{after}; retry later or pass --wait SECONDS")


class StorageError(InventoryError):
    pass


class SchemaOutOfDate(StorageError):
    pass


class ConnectorUnavailable(InventoryError):
    pass


class NotFound(InventoryError):
    pass


class Ambiguous(InventoryError):
    # The user must say which one: a usage error.
    exit_code = 2


class PolicyDenied(InventoryError):
    """The policy refuses the call (or an approval); exit code 3 so that scripts can tell."""

    exit_code = 3


class TamperedRow(PolicyDenied):
    """A row that decides something (an approval, a token) was changed by someone without the audit key."""


class TargetChanged(PolicyDenied):
    """Re-read at its source just before a call, the target is another object than the one the inventory
    (or the approval) names, or it is gone; nothing runs. ``details`` describes what the source holds now."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class ToolFailed(InventoryError):
    """The tool ran and its source refused or failed; the message names the source and the target."""


class ListenFailed(InventoryError):
    """The server's address cannot be bound: a runtime failure (exit 1), said before anything claims to serve."""


class ServerUnavailable(InventoryError):
    """The server socket the CLI is configured to go through does not answer (absent, closed to this user, nobody
    listening): exit code 2, as for a config that names something wrong; the CLI never falls back to direct mode."""

    exit_code = 2


class HarnessError(InventoryError):
    """The test harness (inventory.testing) could not do its part; the message says why and what to install."""
