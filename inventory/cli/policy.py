"""`inventory tools list`, `inventory policy check`, `inventory tool run`, `inventory approvals list|approve|reject`.

Exit codes beyond the common ones: 3 the policy denied the call (or the
confirmation was refused), 4 the call waits for approval (its id is printed).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from inventory.cli.context import AppContext

EXIT_PENDING = 4

policy_option = click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False),
    help="Policy file (else ./policy.yaml, ./config/policy.yaml, the user config dir). Env: INVENTORY_POLICY.",
)
actor_option = click.option("--actor", help="Who is acting (else INVENTORY_ACTOR, else the OS user).")
target_option = click.option("--target", "target", metavar="[TYPE:]IDENT", help="What the call touches: workload:pve/101, host:42, source:docker-local, or a name.")
arg_option = click.option("--arg", "arg_pairs", multiple=True, metavar="KEY=VALUE", help="A tool argument (repeatable).")
output_option = click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)


def build_runner(app: AppContext, policy_path: str | None, *, with_sources: bool = True) -> Any:
    from inventory.policy.execute import ToolRunner
    from inventory.policy.registry import ToolRegistry
    from inventory.policy.rules import load_policy

    registry = ToolRegistry.discover()
    policy = load_policy(policy_path, known_tools=registry.names())
    lookup = (lambda name: app.config.source(name)) if with_sources else None
    notifier = None
    if with_sources and app.config.notify.targets:
        from inventory.notify import Notifier

        notifier = Notifier(app.config.notify)
        app.cleanups.append(notifier.close)
    db = app.database()
    return ToolRunner(db, policy, registry, source_config=lookup, notifier=notifier, escalation_sources=_escalations(app, db, with_sources))


def _escalations(app: AppContext, db: Any, with_sources: bool) -> list[Any]:
    """The impact of a call, with the config's logical services so that one with an SLO escalates it."""
    from inventory.errors import ConfigError
    from inventory.logical.status import slo_lookup
    from inventory.policy.escalations import ImpactEscalation

    try:
        services = app.config.services
    except ConfigError:
        if with_sources:
            raise
        services = []  # `policy check` works without a valid config; `tool run` never does
    return [ImpactEscalation(db, slo_services=slo_lookup(services) if services else None)]


@click.group("tools")
def tools_group() -> None:
    """Named operations on sources, with their class and arguments."""


@tools_group.command("list")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
def tools_list_command(output: str) -> None:
    """Built-in and installed tools with their class, target and arguments."""
    from inventory.policy.classes import mcp_hints
    from inventory.policy.registry import ToolRegistry
    from inventory.render import render_rows

    registry = ToolRegistry.discover()
    rows = [
        {
            "name": spec.name,
            "class": str(spec.default_class),
            "target": spec.target_type + (f" ({'/'.join(spec.target_kinds)})" if spec.target_kinds else ""),
            "arguments": [a["name"] for a in spec.argument_help() if a["name"] != "reason"],
            "argument_details": spec.argument_help(),
            "hints": mcp_hints(spec.default_class, idempotent=spec.idempotent),
            "summary": spec.summary,
        }
        for spec in registry
    ]
    for origin, error in registry.errors.items():
        click.echo(f"warning: tools of {origin} are unavailable: {error}", err=True)
    render_rows(rows, output, ("name", "class", "target", "arguments", "summary"))


@click.group("policy")
def policy_group() -> None:
    """Check what the policy decides for a call, without running it."""


@policy_group.command("check")
@click.argument("tool")
@target_option
@arg_option
@actor_option
@policy_option
@output_option
@click.pass_obj
def check_command(app: AppContext, tool: str, target: str | None, arg_pairs: tuple[str, ...], actor: str | None, policy_path: str | None, output: str) -> None:
    """Print the call's class, the decision and every rule that contributed. Nothing runs; nothing is recorded."""
    from inventory.policy.execute import resolve_actor
    from inventory.policy.tools import parse_arg_pairs
    from inventory.render import render_document

    runner = build_runner(app, policy_path, with_sources=False)
    evaluation = runner.evaluate(tool, target, parse_arg_pairs(arg_pairs), resolve_actor(actor))
    render_document(evaluation.as_row(), output)


@click.group("tool")
def tool_group() -> None:
    """Run a named tool against an inventory target, under the policy, with an audit entry."""


@tool_group.command("run")
@click.argument("tool")
@target_option
@arg_option
@actor_option
@policy_option
@click.option("--dry-run", is_flag=True, help="Classify, decide and record, but do not execute.")
@click.option("--no-input", is_flag=True, help="Never prompt: a call that needs approval waits for one.")
@output_option
@click.pass_obj
def run_command(
    app: AppContext,
    tool: str,
    target: str | None,
    arg_pairs: tuple[str, ...],
    actor: str | None,
    policy_path: str | None,
    dry_run: bool,
    no_input: bool,
    output: str,
) -> None:
    """Run TOOL. Denied: exit 3. Needs approval: on a terminal, type the target's name;
    else exit 4 with the approval id."""
    from inventory.policy.execute import resolve_actor
    from inventory.policy.tools import parse_arg_pairs

    runner = build_runner(app, policy_path)
    interactive = not no_input and sys.stdin.isatty() and sys.stdout.isatty()
    outcome = runner.run(tool, target, parse_arg_pairs(arg_pairs), resolve_actor(actor), dry_run=dry_run, confirm=_confirm_on_terminal if interactive else None)
    _render_outcome(outcome, output)


def _confirm_on_terminal(evaluation: Any) -> bool:
    name = evaluation.target.name if evaluation.target else evaluation.tool
    click.echo(f"{evaluation.tool} on {evaluation.target_ref} is {evaluation.classification.tool_class}; the policy requires " f"approval ({evaluation.decision.rule_label}).", err=True)
    impact = evaluation.classification.details.get("impact")
    if impact:
        click.echo(f"Impact: {impact['summary']}", err=True)
    typed = click.prompt(f"Type the target's name ({name}) to confirm", default="", show_default=False, err=True)
    return bool(typed) and typed.strip() == name


def _render_outcome(outcome: Any, output: str) -> None:
    from inventory.render import render_document

    row = outcome.as_row()
    data = row.pop("data")
    render_document(row, output)
    if isinstance(data, str) and output == "yaml":
        click.echo(data, nl=not data.endswith("\n"))
    elif data is not None:
        render_document({"data": data}, output)
    if outcome.outcome == "pending":
        click.echo(f"waiting for approval {outcome.approval_id}: inventory approvals approve {outcome.approval_id}", err=True)
        raise SystemExit(EXIT_PENDING)


@click.group("approvals")
def approvals_group() -> None:
    """Calls that wait for approval: list, approve (and run), reject."""


@approvals_group.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "all"]), default="pending", show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@policy_option
@click.pass_obj
def approvals_list(app: AppContext, status: str, output: str, policy_path: str | None) -> None:
    from inventory.policy.approvals import list_approvals
    from inventory.render import render_rows

    rows = list_approvals(build_runner(app, policy_path, with_sources=False), status)
    render_rows(rows, output, ("id", "created_at", "requester", "tool", "target_name", "target", "class", "status", "decided_by", "outcome"))


@approvals_group.command("approve")
@click.argument("approval_id", type=int)
@actor_option
@click.option("--reason", help="Why (kept with the approval).")
@policy_option
@output_option
@click.pass_obj
def approvals_approve(app: AppContext, approval_id: int, actor: str | None, reason: str | None, policy_path: str | None, output: str) -> None:
    """Approve a pending call and run it now (the approver is recorded; it cannot be the
    requester unless policy allows)."""
    from inventory.policy.approvals import approve
    from inventory.policy.execute import resolve_actor

    outcome = approve(build_runner(app, policy_path), approval_id, resolve_actor(actor), reason)
    _render_outcome(outcome, output)


@approvals_group.command("reject")
@click.argument("approval_id", type=int)
@actor_option
@click.option("--reason", help="Why (kept with the approval and in the audit log).")
@policy_option
@click.pass_obj
def approvals_reject(app: AppContext, approval_id: int, actor: str | None, reason: str | None, policy_path: str | None) -> None:
    """Reject a pending call (the requester may withdraw their own)."""
    from inventory.policy.approvals import reject
    from inventory.policy.execute import resolve_actor

    seq = reject(build_runner(app, policy_path, with_sources=False), approval_id, resolve_actor(actor), reason)
    click.echo(f"approval {approval_id} rejected (audit entry {seq})")


COMMANDS = [tools_group, policy_group, tool_group, approvals_group]
