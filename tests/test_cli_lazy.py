"""Commands are imported when asked for: the map of lazy commands is what the command modules declare."""

from __future__ import annotations

import ast
import subprocess
import sys

from click.testing import CliRunner

from inventory.cli import LAZY_COMMANDS, cli, module_commands


def test_the_lazy_map_names_every_command_of_every_module_and_no_other() -> None:
    declared = {command.name: module for module in set(LAZY_COMMANDS.values()) for command in module_commands(module)}
    assert declared == LAZY_COMMANDS


def test_help_lists_every_command_and_each_one_resolves() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(LAZY_COMMANDS)
    context = cli.make_context("inventory", [], resilient_parsing=True)
    assert all(cli.get_command(context, name) is not None for name in LAZY_COMMANDS)
    assert cli.get_command(context, "nope") is None


def test_a_command_imports_its_own_module_only() -> None:
    probe = (
        "import sys\n"
        "from inventory.cli import cli\n"
        "ctx = cli.make_context('inventory', [], resilient_parsing=True)\n"
        "cli.get_command(ctx, 'status')\n"
        "print(sorted(m for m in sys.modules if m.startswith('inventory.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = ast.literal_eval(done.stdout)
    assert "inventory.cli.status" in loaded
    assert not {"inventory.cli.query", "inventory.cli.serve", "inventory.cli.policy", "inventory.cli.demo"} & set(
        loaded
    )
