"""Who is calling the server, and what their groups let them do.

A caller is a principal of ``inventory.principals``: over HTTP (the API, ``/mcp``, the web UI)
the holder of a token from ``inventory tokens create NAME --group G`` (``inventory.tokens``),
with the token's groups plus those the config's ``principals.users`` gives that name; on stdio
(``inventory mcp``) the OS user, as the CLI sees them.

Groups decide which doors of the server a principal may use (``PERMISSIONS``): ``viewers``
read the inventory, ``operators`` also refresh sources and call tools, ``agents`` read and call
tools, ``approvers`` read, settle approvals and read the audit log, ``auditors`` read and read
the audit log, ``admins`` do everything. Whether a tool call or an approval then goes through is
the policy's decision, with that principal as the actor or approver.

A token is accepted only from the ``Authorization: Bearer`` header (or the web UI's session,
which holds it server-side), never from a query string, so it never lands in an access log line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum

from inventory.errors import InventoryError
from inventory.principals import Principal, PrincipalSettings, configured_for
from inventory.storage.database import Database
from inventory.tokens import authenticate, authenticate_reference, token_reference


class Permission(str, Enum):
    READ = "read"  # the inventory: hosts, workloads, services, changes, sources, tools' descriptions
    REFRESH = "refresh"  # start a sync of sources
    CALL = "call"  # request tool calls (the policy still decides)
    APPROVE = "approve"  # approve or reject pending calls (the policy's approvers still decide)
    AUDIT = "audit"  # read and verify the audit log


PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewers": frozenset({Permission.READ}),
    "operators": frozenset({Permission.READ, Permission.REFRESH, Permission.CALL}),
    "agents": frozenset({Permission.READ, Permission.CALL}),
    "approvers": frozenset({Permission.READ, Permission.APPROVE, Permission.AUDIT}),
    "auditors": frozenset({Permission.READ, Permission.AUDIT}),
    "admins": frozenset(Permission),
}
EVERY_PERMISSION = frozenset(Permission)

Authenticator = Callable[[str], Principal | None]
# What a principal may do at the server's doors: by its groups (HTTP), or everything (stdio, the CLI's user).
Grants = Callable[[Principal], frozenset[Permission]]


def permissions_of(principal: Principal) -> frozenset[Permission]:
    """The doors the principal's groups open (group names compared case-folded, as the policy does)."""
    granted: set[Permission] = set()
    for group in principal.groups:
        granted |= PERMISSIONS.get(group.casefold(), frozenset())
    return frozenset(granted)


def may(principal: Principal, permission: Permission, grants: Grants = permissions_of) -> bool:
    return permission in grants(principal)


class NotAuthenticated(InventoryError):
    """No token, or one that names no live token: 401."""


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
    if not may(principal, permission):
        raise Forbidden(principal, permission)
    return principal


class TokenAuthenticator:
    """Bearer tokens of ``inventory tokens``: checked against the database at every request, so a revoked
    or expired token stops working at once; the config's ``principals.users`` add groups by name."""

    def __init__(self, db: Database, settings: PrincipalSettings | None = None) -> None:
        self.db = db
        self.settings = settings or PrincipalSettings()

    def __call__(self, token: str) -> Principal | None:
        return self._with_configured_groups(authenticate(self.db, token))

    def reference(self, token: str) -> str | None:
        """What a web session keeps instead of the token: its keyed hash, the same on every replica."""
        return token_reference(self.db, token)

    def by_reference(self, reference: str) -> Principal | None:
        """The token's principal, checked against the database now (revoked or expired: None)."""
        return self._with_configured_groups(authenticate_reference(self.db, reference))

    def _with_configured_groups(self, principal: Principal | None) -> Principal | None:
        if principal is None:
            return None
        configured = frozenset(configured_for(self.settings.users, principal.name))
        return replace(principal, groups=principal.groups | configured) if configured else principal


__all__ = [
    "EVERY_PERMISSION",
    "PERMISSIONS",
    "Authenticator",
    "Forbidden",
    "Grants",
    "NotAuthenticated",
    "Permission",
    "Principal",
    "TokenAuthenticator",
    "authorize",
    "bearer_token",
    "may",
    "permissions_of",
]
