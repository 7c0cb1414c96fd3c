"""`inventory tokens create|list|revoke`: API tokens, the principals of the HTTP server."""

from __future__ import annotations

from typing import Any

import click

from inventory.cli.context import AppContext
from inventory.errors import UsageError


@click.group("tokens")
def tokens_group() -> None:
    """API tokens: each names a principal with groups; stored only as a keyed hash. Only admins create or revoke."""


def _policy(app: AppContext) -> Any:
    """The database's applied policy: its principals and groups decide who is an admin, whatever the config says."""
    app.tell_if_draft()
    return app.applied_policies().current()


def _administrator(app: AppContext, policy: Any) -> Any:
    """The OS user with every group it holds: the applied policy's principals.users and groups:."""
    from inventory.policy.applied import administrator

    return administrator(policy, app.principal())


@tokens_group.command("create")
@click.argument("name")
@click.option("--group", "groups", multiple=True, help="A group the token's principal belongs to (repeatable).")
@click.option("--expires", help="Lifetime, e.g. 90d, 12h (default: never).")
@click.pass_obj
def create_command(app: AppContext, name: str, groups: tuple[str, ...], expires: str | None) -> None:
    """Create a token for principal NAME and print it once: the last line of stdout is the token alone.

    Only an admin may (principals.admins of the applied policy; default: the group admins)."""
    from inventory.timeutil import parse_duration
    from inventory.tokens import create_token

    expires_in = None
    if expires:
        try:
            expires_in = parse_duration(expires)
        except ValueError as exc:
            raise UsageError(f"--expires {expires}: {exc}") from None
        if expires_in <= 0:
            raise UsageError(f"--expires {expires}: must be positive")
    policy = _policy(app)
    by, admins = _administrator(app, policy), policy.principals.admins
    # A name that looks like one the policy gives (or another token's) is refused.
    known = [*policy.principals.names(), *policy.principal_names()]
    token = create_token(
        app.database(),
        name,
        groups=groups,
        expires_in=expires_in,
        by=by,
        admins=admins,
        known_names=known,
        policy_hash=policy.sha256,
    )
    click.echo(f"token for {name} created; it is shown once, store it now:", err=True)
    click.echo(token)


@tokens_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@click.pass_obj
def list_command(app: AppContext, output: str) -> None:
    """Tokens with their groups and state (never the token)."""
    from inventory.render import render_rows
    from inventory.tokens import list_tokens

    rows = [info.as_row() for info in list_tokens(app.database())]
    render_rows(rows, output, ("name", "groups", "state", "created_at", "created_by", "expires_at", "revoked_at"))


@tokens_group.command("revoke")
@click.argument("name")
@click.pass_obj
def revoke_command(app: AppContext, name: str) -> None:
    """Revoke the live token of NAME: it authenticates no one from now on."""
    from inventory.tokens import revoke_token

    policy = _policy(app)
    revoke_token(
        app.database(),
        name,
        by=_administrator(app, policy),
        admins=policy.principals.admins,
        policy_hash=policy.sha256,
    )
    click.echo(f"token {name} revoked")


COMMANDS = [tokens_group]
