"""What every request handler shares: the database, the authenticator, the tool runner, the refresher."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Header, Request

from inventory.errors import UsageError
from inventory.principals import PrincipalKind, PrincipalSettings, local_principal
from inventory.server.auth import Authenticator, FailedAttempts, Permission, Principal, authorize, bearer_token
from inventory.server.local import peer_of
from inventory.storage.database import Database

if TYPE_CHECKING:
    from inventory.policy.execute import ToolRunner
    from inventory.server.refresh import Refresher


@dataclass
class ServerState:
    db: Database
    authenticator: Authenticator
    # None: the server was started without tool support (no policy): tool routes answer 400.
    runner: ToolRunner | None = None
    refresher: Refresher | None = None
    # The config's logical services (inventory.logical.spec.LogicalService): impact names those it reaches.
    logical_services: Sequence[Any] = ()
    started_at: float = field(default_factory=time.time)
    # Wrong tokens per client address (server/auth.py): a guesser is slowed, other clients are not.
    failed_attempts: FailedAttempts = field(default_factory=FailedAttempts)
    # The config's principals: the groups of OS users calling on the server's Unix socket (server/local.py).
    principals: PrincipalSettings = field(default_factory=PrincipalSettings)

    def caller(self, scope: Any, token: str | None, permission: Permission) -> Principal:
        """Who is asking: on the Unix socket the OS user the kernel names (every door open, as in the CLI; the
        policy decides), over TCP the holder of ``token`` if its groups grant ``permission``."""
        peer = peer_of(scope)
        if peer is not None:
            return local_principal(self.principals, peer.uid)
        return self.authorize(token, permission, client_address(scope))

    def authorize(self, token: str | None, permission: Permission, client: str | None) -> Principal:
        """``auth.authorize`` with this server's authenticator, wrong tokens counted against ``client``.

        Whoever a token names is a token holder (``auth.doors_of``: its groups' doors only), whatever the
        authenticator made of it; only the socket's kernel-named callers are OS users here."""
        principal = authorize(self.authenticator, token, permission, attempts=self.failed_attempts, client=client)
        return principal if principal.kind is PrincipalKind.TOKEN else replace(principal, kind=PrincipalKind.TOKEN)

    def tool_runner(self) -> ToolRunner:
        if self.runner is None:
            raise UsageError("this server runs no tools (started without a policy and sources)")
        return self.runner


def client_address(scope: Any) -> str | None:
    """The peer's address of an ASGI scope (the proxy's, behind a reverse proxy)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.inventory
    return state


async def current_state(request: Request) -> ServerState:
    """``server_state`` as a dependency: async, so that it costs no trip through the thread pool."""
    return server_state(request)


def require(permission: Permission) -> Callable[..., Any]:
    """The one auth dependency of the API: the OS user on the Unix socket, else a bearer token whose principal's
    groups grant ``permission``."""

    def dependency(
        request: Request, state: ServerState = Depends(current_state), authorization: str | None = Header(default=None)
    ) -> Principal:
        principal = state.caller(request.scope, bearer_token(authorization), permission)
        # Only a caller who may use the route hears what is wrong with its parameters.
        refuse_unknown_parameters(request)
        return principal

    return dependency


def _declared_query_names(route: Any) -> frozenset[str]:
    """The query parameters a route declares: its own, its dependencies', and the fields of a query model."""
    from pydantic import BaseModel

    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for param in dependant.query_params:
            annotation = getattr(param.field_info, "annotation", None)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                names.update(f.alias or n for n, f in annotation.model_fields.items())
            else:
                names.add(param.alias)
    return frozenset(names)


_DECLARED: dict[int, frozenset[str]] = {}


def refuse_unknown_parameters(request: Request) -> None:
    """A query parameter no route declares is a mistake the caller should hear of (400), not a filter ignored."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    known = _DECLARED.get(id(route))
    if known is None:
        known = _DECLARED[id(route)] = _declared_query_names(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        listed = ", ".join(sorted(known)) or "none"
        raise UsageError(f"unknown query parameter(s): {', '.join(unknown)} (this route takes: {listed})")
