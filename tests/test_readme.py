"""The README's `sh` examples run against the demo lab, so that they cannot drift from the program.

Every command line of every ```sh block is either run (and must exit 0) or listed in NOT_RUN with
the reason. A new example that is neither fails this test until someone decides which it is.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import PROJECT_ROOT

from inventory.cli import cli

README = PROJECT_ROOT / "README.md"

# Command lines (or `&&` steps) that are not run here, by prefix after the program name, with why.
NOT_RUN: dict[str, str] = {
    "python3 -m venv": "creates a virtualenv; the tests already run in one",
    ".venv/bin/pip install": "installs packages",
    ".venv/bin/pytest": "the test suite itself",
    ".venv/bin/python benchmarks/": "benchmarks take minutes and print figures, not pass/fail",
    "init": "reads this machine's kubeconfig and Docker socket; tests/test_cli_setup.py covers it",
    "check": "reaches the configured (real) sources; tests/test_cli_setup.py covers it",
    "exec inventory -c /etc/inventory/inventory.yaml ansible": "the wrapper script's body; test_ansible.py runs it",
    "ansible-inventory -i inventory.sh": "needs the wrapper installed; tests/test_ansible.py runs ansible-inventory",
    "ansible -i inventory.sh": "pings real machines",
    "policy check docker.remove --target media-jellyfin-1 --policy": "needs a draft policy file; tests/test_approvals.py checks drafts",
    "tool run kubernetes.restart_deployment --target web --actor agent-1": "needs principals.act_for in the applied policy; tests/test_approvals.py acts for an agent",
    "policy apply policy.yaml": "the demo applied its own policy; tests/test_applied_policy.py applies and refuses policies",
    "policy check draft.yaml": "needs a draft policy file; tests/test_applied_policy.py checks drafts",
    "psql": "creates PostgreSQL roles on a real server; tests/test_db_roles.py does it",
    '-c "CREATE ROLE inventory LOGIN': "the psql command's continuation line",
    "INVENTORY_DATABASE_URL=postgresql+psycopg://inventory": "needs the two-role PostgreSQL server; tests/test_db_roles.py covers it",
    "serve": "runs a server until stopped; tests/test_server_process.py starts it as a process",
    "INVENTORY_SOCKET=/run/inventory/inventory.sock inventory serve": "runs a server until stopped; tests/test_server_socket.py serves a socket",
    "export INVENTORY_SOCKET=/run/inventory/inventory.sock": "sets the shell's environment; tests/test_server_socket.py goes through a socket",
    "sync --once -s pve": "the demo's fake APIs are stopped once the demo ends: a sync needs them",
    "sync --once --wait 60": "needs the sources (the demo's fakes are stopped)",
    "sync --once --metrics-textfile": "writes under /var/lib/node_exporter",
    "sync --metrics-port": "the loop runs until stopped",
    "sync": "the loop runs until stopped; `sync --once` of the demo's own config runs above",
    "demo --churn": "keeps changing the lab until Ctrl-C",
    "tool run kubernetes.scale_deployment": "changes a (real) cluster",
    "approvals list | approvals approve ID": "ID is a placeholder; tests/test_approvals.py covers approvals",
    "audit export": "writes a file through a shell redirection",
    "audit verify --archive": "needs an archive the demo's young log does not yield; tests/test_audit_archive.py",
    "db upgrade | db current": "two commands on one line; tests/test_migrations.py covers both",
    "completion fish >": "writes into the user's fish config",
    "db backup FILE | db restore FILE": "FILE is a placeholder; the examples of 'Backups and restore' run",
    "db backup /tmp/inventory.db.gz": "the old machine of 'Moving to a new machine'; tests/test_backup.py covers it",
    "rsync -a": "copies to another machine",
    "-c /tmp/inventory.yaml": "the new machine of 'Moving to a new machine'; tests/test_backup.py covers it",
}
PROGRAMS = (".venv/bin/inventory", "inventory")


def readme_commands() -> list[str]:
    """Every command of the README's sh blocks, `&&` chains split into steps, in document order."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.S | re.M):
        for line in block.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            commands.extend(step.strip() for step in line.split(" && "))
    return commands


def _strip_comment(command: str) -> str:
    return re.split(r"\s+#\s", command, maxsplit=1)[0].strip()


def _without_program(command: str) -> str | None:
    for program in PROGRAMS:
        if command.startswith(program + " "):
            return command[len(program) + 1 :]
    return None


def _reason_not_run(command: str) -> str | None:
    args = _without_program(command)
    candidates = [command] if args is None else [args, re.sub(r"^-c \S+ ", "", args)]
    for candidate in candidates:
        for prefix, reason in NOT_RUN.items():
            if (
                candidate == prefix
                or candidate.startswith(prefix + " ")
                or (prefix.endswith(("/", ">", "inventory")) and candidate.startswith(prefix))
            ):
                return reason
    if "eval " in command or "$(" in command:
        return "shell evaluation"
    return None


def test_readme_examples_run_against_the_demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # A newcomer's machine: no config of theirs, the default database in a scratch home.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("DOCKER_HOST", "")
    (tmp_path / "config").mkdir()
    for name in ("inventory.example.yaml", "policy.yaml"):
        (tmp_path / "config" / name).write_text((PROJECT_ROOT / "config" / name).read_text())
    for var in ("INVENTORY_CONFIG", "INVENTORY_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    ran, skipped, unclassified = [], [], []
    runner = CliRunner()
    for raw in readme_commands():
        command = _strip_comment(raw)
        reason = _reason_not_run(command)
        args = _without_program(command)
        if reason is not None:
            skipped.append(command)
            continue
        if args is None:
            unclassified.append(command)
            continue
        argv = shlex.split(args)
        # Bare `inventory ...` examples mean "your config": here, the demo's.
        env = (
            {}
            if argv[:1] in (["-c"], ["demo"])
            else {"INVENTORY_CONFIG": str(tmp_path / "inventory-demo" / "inventory.yaml")}
        )
        result = runner.invoke(cli, argv, env=env)
        assert result.exit_code == 0, f"README: {command}\n{result.output}"
        assert "Traceback" not in result.output
        ran.append(command)
    assert not unclassified, f"README commands neither run nor listed in NOT_RUN: {unclassified}"
    assert len(ran) >= 20 and any(c.endswith("inventory demo") for c in ran)
    # Every NOT_RUN entry still matches something: the list cannot keep reasons for examples that are gone.
    unused = [prefix for prefix in NOT_RUN if not any(_reason_not_run(c) == NOT_RUN[prefix] for c in skipped)]
    assert not unused, f"NOT_RUN entries that match no README command: {unused}"


def test_the_tool_names_of_the_readme_exist() -> None:
    # `policy check` of an unknown tool still answers (unknown tools are DESTRUCTIVE): the name must be checked.
    # (`policy check FILE` takes a draft's file name instead: *.yaml is not a tool.)
    names = set(re.findall(r"(?:policy check|tool run) ([a-z]+\.[a-z_]+)(?![a-z_.])", README.read_text()))
    names = {name for name in names if not name.endswith((".yaml", ".yml"))}
    result = CliRunner().invoke(cli, ["tools", "list", "-o", "json"])
    known = {row["name"] for row in json.loads(result.stdout)}
    assert names and names <= known, names - known
