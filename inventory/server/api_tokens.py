"""API tokens over HTTP (and the Unix socket): `inventory tokens create|list|revoke` through the same library calls.

Creating and revoking open the ``admin`` door (the group ``admins``; every OS user on the socket) and then
``principals.admins`` of the applied policy decides, with its groups, exactly as the CLI does;
a refusal is an audit entry. Listing opens the ``audit`` door. The new token is in the answer once, and nowhere else.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from inventory.server.auth import Permission, Principal
from inventory.server.models import CreatedTokenOut, TokenOut, TokenRequest
from inventory.server.pagination import json_response
from inventory.server.state import ServerState, current_state, require

router = APIRouter(prefix="/api/v1")


@router.post("/tokens", response_model=CreatedTokenOut, status_code=201, summary="Create a token (admins only)")
def create(
    body: TokenRequest,
    state: ServerState = Depends(current_state),
    principal: Principal = Depends(require(Permission.ADMIN)),
) -> Response:
    from inventory.tokens import create_under

    policy = state.tool_runner().refresh_policy()  # the applied policy, as every decision reads it
    token = create_under(state.db, policy, principal, body.name, tuple(body.groups), body.expires)
    return json_response({"name": body.name, "token": token}, status_code=201)


@router.get("/tokens", response_model=list[TokenOut], summary="Tokens with their groups and state (never a token)")
def listed(state: ServerState = Depends(current_state), _p: Principal = Depends(require(Permission.AUDIT))) -> Response:
    from inventory.tokens import list_tokens

    return json_response([info.as_row() for info in list_tokens(state.db)])


@router.delete("/tokens/{name}", summary="Revoke the live token of NAME (admins only)")
def revoke(
    name: str, state: ServerState = Depends(current_state), principal: Principal = Depends(require(Permission.ADMIN))
) -> Response:
    from inventory.tokens import revoke_under

    revoke_under(state.db, state.tool_runner().refresh_policy(), principal, name)
    return json_response({"name": name, "revoked": True})
