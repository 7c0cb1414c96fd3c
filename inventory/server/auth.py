"""Who is calling the server, and what their groups let them do.

INTEGRATION POINT: ``Principal`` and ``StaticTokens`` below stand in for the trust module's
principals and database-backed ``inventory tokens``. The server only ever sees an
``Authenticator`` (``token -> Principal | None``) handed to ``create_app``; swapping in the
real one changes ``inventory/cli/serve.py`` and the import here, nothing else.

Groups decide what a principal may do (``PERMISSIONS``): ``viewers`` read the inventory,
``operators`` also refresh sources and call tools, ``agents`` read and call tools,
``approvers`` read, settle approvals and read the audit log, ``auditors`` read and read the
audit log, ``admins`` do everything. Whether a tool call then runs is the policy's decision,
with the principal's name as the actor.

A token is accepted only from the ``Authorization: Bearer`` header (or the web UI's session
cookie), never from a query string, so it never lands in an access log line.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from inventory.errors import ConfigError, InventoryError


class Permission(str, Enum):
    READ = "read"  # the inventory: hosts, workloads, services, changes, sources, tools' descriptions
    REFRESH = "refresh"  # start a sync of sources
    CALL = "call"  # request tool calls (the policy still decides)
    APPROVE = "approve"  # approve or reject pending calls
    AUDIT = "audit"  # read and verify the audit log


PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewers": frozenset({Permission.READ}),
    "operators": frozenset({Permission.READ, Permission.REFRESH, Permission.CALL}),
    "agents": frozenset({Permission.READ, Permission.CALL}),
    "approvers": frozenset({Permission.READ, Permission.APPROVE, Permission.AUDIT}),
    "auditors": frozenset({Permission.READ, Permission.AUDIT}),
    "admins": frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """INTEGRATION POINT: the trust module's Principal replaces this (same three fields)."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    on_behalf_of: str | None = None

    def permissions(self) -> frozenset[Permission]:
        granted: set[Permission] = set()
        for group in self.groups:
            granted |= PERMISSIONS.get(group, frozenset())
        return frozenset(granted)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions()


Authenticator = Callable[[str], Principal | None]


class NotAuthenticated(InventoryError):
    """No token, or one no authenticator knows: 401."""


class Forbidden(InventoryError):
    """A known principal whose groups lack the permission: 403."""

    def __init__(self, principal: Principal, permission: Permission) -> None:
        super().__init__(f"{principal.name} may not {permission.value}: none of its groups grants it")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(authenticator: Authenticator, token: str | None, permission: Permission) -> Principal:
    """The principal holding ``token``, if its groups grant ``permission``; the one check every door uses."""
    principal = authenticator(token) if token else None
    if principal is None:
        raise NotAuthenticated()
    if not principal.may(permission):
        raise Forbidden(principal, permission)
    return principal


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class StaticTokens:
    """INTEGRATION POINT: tokens from a YAML file until ``inventory tokens`` lands.

    The file lists ``- {name: NAME, groups: [G, ...], sha256: HEX}``; only digests are kept,
    compared in constant time.
    """

    def __init__(self, entries: Iterable[tuple[str, str, Iterable[str]]]) -> None:
        self._by_digest = {digest.lower(): Principal(name, frozenset(groups)) for name, digest, groups in entries}

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokens:
        import yaml

        label = str(path)
        try:
            raw: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or []
        except OSError as exc:
            raise ConfigError(f"cannot read the tokens file: {exc.strerror}", path=label) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {exc}", path=label) from None
        if not isinstance(raw, list):
            raise ConfigError("expected a list of {name, groups, sha256}", path=label)
        entries = []
        for index, entry in enumerate(raw):
            key = f"[{index}]"
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("name"), str)
                or not isinstance(entry.get("sha256"), str)
            ):
                raise ConfigError("needs name and sha256 (strings)", path=label, key=key)
            groups = entry.get("groups") or []
            unknown = sorted(set(groups) - set(PERMISSIONS))
            if unknown:
                raise ConfigError(
                    f"unknown group(s) {', '.join(unknown)}; known: {', '.join(PERMISSIONS)}",
                    path=label,
                    key=f"{key}.groups",
                )
            entries.append((entry["name"], entry["sha256"], groups))
        return cls(entries)

    def __call__(self, token: str) -> Principal | None:
        digest = token_digest(token)
        for known, principal in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def local_principal(name: str) -> Principal:
    """The OS user on stdio (``inventory mcp``): the same rights the CLI gives them; the policy still decides."""
    return Principal(name, frozenset({"admins"}))
