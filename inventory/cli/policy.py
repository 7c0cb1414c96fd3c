"""`inventory tools list`, `inventory policy check|apply|show`, `inventory tool run`, `inventory approvals ...`.

The database's applied policy decides (inventory/policy/applied.py); a policy file a config
names is a draft that `policy check FILE` compares with it.

Exit codes beyond the common ones: 3 the policy denied the call (or the
confirmation was refused), 4 the call waits for approval (its id is printed).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from inventory.cli.context import AppContext

EXIT_PENDING = 4

draft_option = click.option(
    "--policy",
    "draft_path",
    type=click.Path(dir_okay=False),
    help="Evaluate this draft policy instead of the applied one; it decides nothing.",
)
actor_option = click.option(
    "--actor",
    help="Act for this principal (recorded as on behalf of); only where the applied policy's principals.act_for "
    "allows it.",
)
target_option = click.option(
    "--target",
    "target",
    metavar="[TYPE:]IDENT",
    help="What the call touches: workload:pve/101, host:42, source:docker-local, or a name.",
)
arg_option = click.option(
    "--arg", "arg_pairs", multiple=True, metavar="KEY=VALUE", help="A tool argument (repeatable)."
)
output_option = click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)


def build_runner(app: AppContext, *, with_sources: bool = True, draft_path: str | None = None) -> Any:
    """A runner under the database's applied policy, whatever the config names; a draft only for `policy check`."""
    from inventory.policy.execute import ToolRunner
    from inventory.policy.registry import ToolRegistry
    from inventory.policy.rules import load_policy

    registry = ToolRegistry.discover()
    lookup = (lambda name: app.config.source(name)) if with_sources else None
    notifier = None
    if with_sources and app.config.notify.targets:
        from inventory.notify import Notifier

        notifier = Notifier(app.config.notify)
        app.cleanups.append(notifier.close)
    db = app.database()
    kw: dict[str, Any] = {
        "source_config": lookup,
        "notifier": notifier,
        "escalation_sources": _escalations(app, db, with_sources),
        "observe_timeout": app.config.observe_timeout,
    }
    if draft_path is not None:
        applied = app.applied_policies().current()
        draft = load_policy(draft_path, known_tools=registry.names())
        return ToolRunner(db, draft, registry, principals=applied.principals, **kw)
    app.tell_if_draft()
    return ToolRunner.in_force(db, registry, **kw)


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


def complete_tool_names(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a tool's name: the built-in and installed tools."""
    from click.shell_completion import CompletionItem

    try:
        from inventory.policy.registry import ToolRegistry

        specs = list(ToolRegistry.discover())
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    return [CompletionItem(spec.name, help=spec.summary) for spec in specs if spec.name.startswith(incomplete)]


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
    """The policy in force: apply one (admins), show it, check a call or a draft against it."""


@policy_group.command("apply")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.pass_obj
def apply_command(app: AppContext, path: str) -> None:
    """Validate FILE and put it in force for this database (admins only; before any, the audit key's owner).

    Its text and sha256 are stored, signed and audited; from now on it decides every call, approval and token
    check, whatever config a caller names."""
    from pathlib import Path

    from inventory.errors import ConfigError
    from inventory.policy.applied import apply_policy
    from inventory.policy.registry import ToolRegistry

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from None
    before = app.applied_policies().info
    info = apply_policy(app.database(), data, app.principal(), label=path, known_tools=ToolRegistry.discover().names())
    if info.id == before.id:
        click.echo(f"{path} is the policy in force already (sha256 {info.sha256}); nothing applied")
        return
    click.echo(
        f"applied {path} as policy {info.id} (sha256 {info.sha256}, replacing {before.sha256[:12]}"
        f"{'' if before.id is not None else ', the built-in defaults'}; audit entry {info.audit_seq})"
    )


@policy_group.command("show")
@click.option("-o", "--output", type=click.Choice(["text", "yaml", "json"]), default="text", show_default=True)
@click.pass_obj
def show_command(app: AppContext, output: str) -> None:
    """The applied policy: its hash, who applied it and when; -o yaml prints its text."""
    from inventory.render import to_json

    info = app.applied_policies().info
    if output == "yaml":
        if info.text is None:
            click.echo("# no policy was applied: the built-in defaults decide")
        else:
            click.echo(info.text, nl=not info.text.endswith("\n"))
    elif output == "json":
        click.echo(to_json({**info.as_row(), "text": info.text}))
    elif info.id is None:
        click.echo(f"no policy was applied: the built-in defaults decide (sha256 {info.sha256})")
        click.echo("apply one with: inventory policy apply FILE")
    else:
        click.echo(f"policy {info.id} in force: sha256 {info.sha256}")
        click.echo(f"applied by {info.applied_by} at {info.applied_at.isoformat() if info.applied_at else '-'}")
        click.echo(f"replaced {info.previous_sha256 or 'the built-in defaults'}; audit entry {info.audit_seq}")


def _is_draft_file(argument: str) -> bool:
    import os

    from inventory.policy.registry import ToolRegistry

    if argument in ToolRegistry.discover().names():
        return False
    return os.path.isfile(argument) or argument.endswith((".yaml", ".yml"))


def _check_draft(app: AppContext, path: str, output: str) -> None:
    """Validate a draft and say how it differs from the applied policy; nothing is decided or recorded."""
    from inventory.errors import ConfigError
    from inventory.policy.applied import describe_difference
    from inventory.policy.registry import ToolRegistry
    from inventory.policy.rules import load_policy
    from inventory.render import render_document

    draft = load_policy(path, known_tools=ToolRegistry.discover().names())
    from pathlib import Path

    try:
        draft_text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # load_policy read it a moment ago
        raise ConfigError(f"cannot read: {exc}", path=path) from None
    tracker = app.applied_policies()
    applied, info = tracker.current(), tracker.info
    differences = describe_difference(draft, applied, info.text, draft_text)
    row = {
        "draft": path,
        "valid": True,
        "sha256": draft.sha256,
        "applied_sha256": info.sha256,
        "applied": info.id is not None,
        "in_force": not differences,
        "differences": differences,
    }
    if output == "json":
        render_document(row, output)
        return
    click.echo(f"{path}: valid (sha256 {draft.sha256})")
    if not differences:
        click.echo("it is the policy in force")
        return
    where = f"applied policy {info.id} (sha256 {info.sha256[:12]})" if info.id is not None else "the built-in defaults"
    click.echo(f"it is a draft: it differs from {where}, which decides; inventory policy apply {path} puts it in force")
    for line in differences:
        click.echo(line)


@policy_group.command("check")
@click.argument("tool", metavar="TOOL|FILE", shell_complete=complete_tool_names)
@target_option
@arg_option
@actor_option
@draft_option
@output_option
@click.pass_obj
def check_command(
    app: AppContext,
    tool: str,
    target: str | None,
    arg_pairs: tuple[str, ...],
    actor: str | None,
    draft_path: str | None,
    output: str,
) -> None:
    """TOOL: print the call's class, the decision and every rule that contributed. FILE: validate a draft policy and
    say how it differs from the applied one. Nothing runs; nothing is recorded."""
    from inventory.policy.tools import parse_arg_pairs
    from inventory.render import render_document

    if target is None and not arg_pairs and draft_path is None and _is_draft_file(tool):
        _check_draft(app, tool, "json" if output == "json" else "text")
        return
    principal = app.principal(actor)
    runner = build_runner(app, with_sources=False, draft_path=draft_path)
    evaluation = runner.evaluate(tool, target, parse_arg_pairs(arg_pairs), principal)
    row = evaluation.as_row()
    row["in_force"] = draft_path is None
    render_document(row, output)
    if draft_path is not None:
        click.echo(f"{draft_path} is a draft: it is not the policy in force (the database's applied one is)", err=True)


@click.group("tool")
def tool_group() -> None:
    """Run a named tool against an inventory target, under the policy, with an audit entry."""


@tool_group.command("run")
@click.argument("tool", shell_complete=complete_tool_names)
@target_option
@arg_option
@actor_option
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
    dry_run: bool,
    no_input: bool,
    output: str,
) -> None:
    """Run TOOL. Denied: exit 3. Needs approval: exit 4 with the approval id (an approver who may approve their
    own call may instead type the target's name on a terminal)."""
    from inventory.policy.tools import parse_arg_pairs

    arguments = parse_arg_pairs(arg_pairs)
    client = app.server_client()
    if client is not None:  # the server runs it as this OS user; a call that needs approval waits for one
        _render_outcome(client.call_tool(tool, target, arguments, actor=actor, dry_run=dry_run), output)
        return
    principal = app.principal(actor)
    runner = build_runner(app)
    interactive = not no_input and sys.stdin.isatty() and sys.stdout.isatty()
    confirm = _confirm_on_terminal if interactive else None
    outcome = runner.run(tool, target, arguments, principal, dry_run=dry_run, confirm=confirm)
    _render_outcome(outcome.as_row(), output)


def _confirm_on_terminal(evaluation: Any) -> bool:
    name = evaluation.target.name if evaluation.target else evaluation.tool
    click.echo(
        f"{evaluation.tool} on {evaluation.target_ref} is {evaluation.classification.tool_class}; the policy requires "
        f"approval ({evaluation.decision.rule_label}).",
        err=True,
    )
    impact = evaluation.classification.details.get("impact")
    if impact:
        click.echo(f"Impact: {impact['summary']}", err=True)
    typed = click.prompt(f"Type the target's name ({name}) to confirm", default="", show_default=False, err=True)
    return bool(typed) and typed.strip() == name


def _render_outcome(row: dict[str, Any], output: str) -> None:
    """A call's outcome row (``CallOutcome.as_row``, here or from the server); exit 4 when it waits for approval."""
    from inventory.render import render_document

    data = row.pop("data")
    render_document(row, output)
    if isinstance(data, str) and output == "yaml":
        click.echo(data, nl=not data.endswith("\n"))
    elif data is not None:
        render_document({"data": data}, output)
    if row["outcome"] == "pending":
        approval_id = row["approval_id"]
        click.echo(f"waiting for approval {approval_id}: inventory approvals approve {approval_id}", err=True)
        raise SystemExit(EXIT_PENDING)


@click.group("approvals")
def approvals_group() -> None:
    """Calls that wait for approval: list, approve (and run), reject."""


@approvals_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "approved", "rejected", "expired", "all"]),
    default="pending",
    show_default=True,
)
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "csv"]), default="table", show_default=True)
@click.pass_obj
def approvals_list(app: AppContext, status: str, output: str) -> None:
    from inventory.render import render_rows

    client = app.server_client()
    if client is not None:
        rows = client.approvals(status)
    else:
        from inventory.policy.approvals import list_approvals

        rows = list_approvals(build_runner(app, with_sources=False), status)
    render_rows(
        rows,
        output,
        ("id", "created_at", "requester", "tool", "target_name", "target", "class", "status", "decided_by", "outcome"),
    )


@approvals_group.command("approve")
@click.argument("approval_id", type=int)
@click.option("--reason", help="Why (kept with the approval).")
@output_option
@click.pass_obj
def approvals_approve(app: AppContext, approval_id: int, reason: str | None, output: str) -> None:
    """Approve a pending call and run it now, as the OS user (an approver the policy names, not the requester
    unless the policy allows self-approval)."""
    client = app.server_client()
    if client is not None:
        _render_outcome(client.settle(approval_id, "approve", reason), output)
        return
    from inventory.policy.approvals import approve

    principal = app.principal()
    outcome = approve(build_runner(app), approval_id, principal, reason)
    _render_outcome(outcome.as_row(), output)


@approvals_group.command("reject")
@click.argument("approval_id", type=int)
@click.option("--reason", help="Why (kept with the approval and in the audit log).")
@click.pass_obj
def approvals_reject(app: AppContext, approval_id: int, reason: str | None) -> None:
    """Reject a pending call as the OS user (an approver; the requester may withdraw their own)."""
    client = app.server_client()
    if client is not None:
        seq = client.settle(approval_id, "reject", reason)["audit_seq"]
    else:
        from inventory.policy.approvals import reject

        seq = reject(build_runner(app, with_sources=False), approval_id, app.principal(), reason)
    click.echo(f"approval {approval_id} rejected (audit entry {seq})")


COMMANDS = [tools_group, policy_group, tool_group, approvals_group]
