"""Who is calling the server, and what their groups let them do.

A caller is a principal of ``inventory.principals``: over HTTP (the API, ``/mcp``, the web UI)
the holder of a token from ``inventory tokens create NAME --group G`` (``inventory.tokens``),
with the token's groups plus those the applied policy's ``principals.users`` gives that name; on stdio
(``inventory mcp``) the OS user, as the CLI sees them.

Groups decide which doors of the server a principal may use (``PERMISSIONS``): ``viewers``
read the inventory, ``operators`` also refresh sources and call tools, ``agents`` read and call
tools, ``approvers`` read, settle approvals and read the audit log, ``auditors`` read and read
the audit log, ``admins`` do everything. Whether a tool call or an approval then goes through is
the policy's decision, with that principal as the actor or approver.

A token is accepted only from the ``Authorization: Bearer`` header (or the web UI's session,
which holds it server-side), never from a query string, so it never lands in an access log line.

Wrong tokens are slowed per client address (``FailedAttempts``): after a burst of failures an
address gets 429 with Retry-After for every token it sends, right or wrong, until its allowance
refills; other addresses are not affected.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from enum import Enum

from inventory.errors import InventoryError
from inventory.principals import Principal, PrincipalKind, PrincipalSettings, configured_for
from inventory.storage.database import Database
from inventory.tokens import authenticate, authenticate_reference, token_reference


class Permission(str, Enum):
    READ = "read"  # the inventory: hosts, workloads, services, changes, sources, tools' descriptions
    REFRESH = "refresh"  # start a sync of sources
    CALL = "call"  # request tool calls (the policy still decides)
    APPROVE = "approve"  # approve or reject pending calls (the policy's approvers still decide)
    AUDIT = "audit"  # read and verify the audit log, list tokens
    ADMIN = "admin"  # create and revoke tokens (principals.admins still decides)


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


def doors_of(principal: Principal) -> frozenset[Permission]:
    """An OS user (the CLI, `inventory mcp`, the server's Unix socket) opens every door, as the CLI always has: the
    policy and principals.admins decide. A token holder opens those of its groups."""
    return EVERY_PERMISSION if principal.kind is PrincipalKind.OS_USER else permissions_of(principal)


def may(principal: Principal, permission: Permission, grants: Grants = permissions_of) -> bool:
    return permission in grants(principal)


class NotAuthenticated(InventoryError):
    """No token, or one that names no live token: 401."""


class Forbidden(InventoryError):
    """A known principal whose groups lack the permission: 403."""

    def __init__(self, principal: Principal, permission: Permission) -> None:
        super().__init__(f"{principal.name} may not {permission.value}: none of its groups grants it")


class TooManyFailures(InventoryError):
    """This client address sent too many wrong tokens lately: 429 with Retry-After."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed token attempts from this address; try again in {retry_after} s")
        self.retry_after = retry_after


class FailedAttempts:
    """Per client address, a bucket of ``burst`` failed token attempts refilled at ``per_minute``.

    An empty bucket refuses every attempt from that address, a valid token too: answering a right guess
    with 200 while refusing wrong ones would tell a guesser when it has found one. Only a token that was
    sent and named no live principal counts; a request without a token is no guess. Behind a reverse
    proxy every client shares its address (the server does not trust forwarded headers).
    """

    def __init__(
        self,
        burst: int = 10,
        per_minute: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.burst = burst
        self.per_second = per_minute / 60.0
        self.clock = clock
        self.max_addresses = max_addresses
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (allowance left, when it was counted)

    def _allowance(self, address: str, now: float) -> float:
        left, counted = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), left + (now - counted) * self.per_second)

    def check(self, address: str | None) -> None:
        """Raise TooManyFailures while ``address`` has no allowance left."""
        if address is None:
            return
        with self._lock:
            left = self._allowance(address, self.clock())
        if left < 1:
            raise TooManyFailures(max(1, math.ceil((1 - left) / self.per_second)))

    def failed(self, address: str | None) -> None:
        if address is None:
            return
        with self._lock:
            now = self.clock()
            if len(self._buckets) >= self.max_addresses:
                self._forget_refilled(now)
            self._buckets[address] = (self._allowance(address, now) - 1, now)

    def _forget_refilled(self, now: float) -> None:
        full = [a for a in self._buckets if self._allowance(a, now) >= self.burst]
        for address in full or list(self._buckets)[: self.max_addresses // 10]:
            del self._buckets[address]


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authorize(
    authenticator: Authenticator,
    token: str | None,
    permission: Permission,
    *,
    attempts: FailedAttempts | None = None,
    client: str | None = None,
) -> Principal:
    """The principal holding ``token``, if its groups grant ``permission``; the one check every door uses.

    With ``attempts``, a ``client`` address that sent too many wrong tokens is refused before its token is looked at.
    """
    if attempts is not None and token:
        attempts.check(client)
    principal = authenticator(token) if token else None
    if principal is None:
        if attempts is not None and token:
            attempts.failed(client)
        raise NotAuthenticated()
    if not may(principal, permission):
        raise Forbidden(principal, permission)
    return principal


class TokenAuthenticator:
    """Bearer tokens of ``inventory tokens``: checked against the database at every request, so a revoked
    or expired token stops working at once; the applied policy's ``principals.users`` add groups by name
    (``settings`` may be a callable giving them as they are now: ``ToolRunner.current_principals``)."""

    def __init__(
        self, db: Database, settings: PrincipalSettings | Callable[[], PrincipalSettings] | None = None
    ) -> None:
        self.db = db
        self._settings = settings or PrincipalSettings()

    @property
    def settings(self) -> PrincipalSettings:
        return self._settings() if callable(self._settings) else self._settings

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
    "FailedAttempts",
    "Forbidden",
    "Grants",
    "NotAuthenticated",
    "Permission",
    "Principal",
    "TokenAuthenticator",
    "TooManyFailures",
    "authorize",
    "bearer_token",
    "doors_of",
    "may",
    "permissions_of",
]
