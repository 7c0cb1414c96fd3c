"""Deployment files: the Compose file against the Compose Specification's schema, and every example
(Dockerfile, entrypoint, systemd, Kubernetes) against the program they run."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml
from conftest import PROJECT_ROOT, SHARED_DIR

from inventory.cli import cli
from sync_support import child_env, write_config, write_inventory

COMPOSE_SCHEMA = SHARED_DIR / "schemas" / "compose-spec.json"
DEPLOY = PROJECT_ROOT / "deploy"


def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_specification() -> None:
    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(f"the Compose schema is missing at {COMPOSE_SCHEMA}")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    # The schema can fail: a misspelt key is an error.
    broken = compose()
    broken["services"]["sync"]["helthcheck"] = broken["services"]["sync"].pop("healthcheck")
    assert list(validator.iter_errors(broken))


def test_compose_runs_postgres_and_the_loop_with_health_checks() -> None:
    services = compose()["services"]
    postgres, sync = services["postgres"], services["sync"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    # The owner migrates and grants once; the loop runs as the runtime role, after it.
    migrate = services["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert sync["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["command"][:2] == ["db", "grant"] and "inventory_owner@" in migrate["environment"]["INVENTORY_DATABASE_URL"]
    assert "//inventory@" in sync["environment"]["INVENTORY_DATABASE_URL"] and sync["environment"]["INVENTORY_SKIP_UPGRADE"] == "1"
    assert postgres["environment"]["POSTGRES_USER"] == "inventory_owner"
    assert any(v.endswith(":/var/lib/inventory") for v in sync["volumes"])  # the audit key and head
    assert sync["healthcheck"]["test"]
    assert sync["build"] == "." and (PROJECT_ROOT / "Dockerfile").is_file()
    assert "--once" not in sync["command"]  # the loop, not a one-shot
    config_mount = next(v for v in sync["volumes"] if v.endswith(":/etc/inventory/inventory.yaml:ro"))
    assert (PROJECT_ROOT / config_mount.split(":")[0]).is_file()
    assert sync["environment"]["INVENTORY_CONFIG"] == "/etc/inventory/inventory.yaml"
    # No password in the file: it comes from a secret.
    assert "@postgres" in sync["environment"]["INVENTORY_DATABASE_URL"] and ":" not in sync["environment"]["INVENTORY_DATABASE_URL"].split("//")[1].split("@")[0]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    assert f"{9464}:9464" in sync["ports"]


def _dockerfile_instruction(name: str) -> list[str]:
    lines = [line for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines() if line.startswith(name + " ")]
    return [line[len(name) + 1 :] for line in lines]


def test_dockerfile_runs_the_entrypoint_then_the_loop() -> None:
    (entrypoint,) = _dockerfile_instruction("ENTRYPOINT")
    (command,) = _dockerfile_instruction("CMD")
    assert json.loads(entrypoint) == ["/usr/local/bin/docker-entrypoint.sh"]
    assert json.loads(command)[0] == "sync"
    assert "9464" in _dockerfile_instruction("EXPOSE")
    assert any(line.startswith("10001") for line in _dockerfile_instruction("USER"))
    assert _dockerfile_instruction("HEALTHCHECK")


def test_the_entrypoint_upgrades_the_database_then_runs_the_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    config = write_config(tmp_path / "inventory.yaml", url, {"lab": write_inventory(tmp_path / "lab.yaml", 1)})
    (tmp_path / "pg_password").write_text("not-used-by-sqlite\n")
    bin_dir = Path(os.environ.get("VIRTUAL_ENV", PROJECT_ROOT / ".venv")) / "bin"
    env = child_env(INVENTORY_CONFIG=str(config), POSTGRES_PASSWORD_FILE=str(tmp_path / "pg_password"), PATH=f"{bin_dir}:{os.environ['PATH']}")
    result = subprocess.run([str(DEPLOY / "docker-entrypoint.sh"), "sync", "--once"], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "empty -> " in result.stdout  # db upgrade ran first
    assert "lab: success, 2 objects" in result.stdout


def _inventory_invocations() -> list[list[str]]:
    """Every `inventory ...` command line the deployment files run."""
    found = [json.loads(_dockerfile_instruction("CMD")[0]), *(service["command"] for name, service in compose()["services"].items() if name != "postgres")]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit)
        for key in ("ExecStartPre", "ExecStart"):
            if parser.has_option("Service", key):
                argv = shlex.split(parser.get("Service", key))
                assert argv[0].endswith("/inventory"), unit
                found.append(argv[1:])
    for document in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text()):
        if document["kind"] == "CronJob":
            (container,) = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            found.append(container["args"])
        if document["kind"] == "Job":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            found.append(container["args"])
    return found


def test_every_command_line_in_the_deployment_files_parses() -> None:
    invocations = _inventory_invocations()
    assert len(invocations) >= 6
    for argv in invocations:
        assert not check_command_line(argv), argv
    assert check_command_line(["sync", "--once", "--metrics-text-file", "x"])  # a misspelt option is caught


def check_command_line(argv: list[str]) -> str | None:
    """Why ``inventory <argv>`` would not parse (None: it parses). Nothing runs: parsing only."""
    command: click.Command = cli
    rest = list(argv)
    while isinstance(command, click.Group):
        if not rest or rest[0] not in command.commands:
            return f"no command {rest[:1]}"
        command, rest = command.commands[rest[0]], rest[1:]
    try:
        command.make_context(command.name, rest)
    except click.UsageError as exc:
        return exc.format_message()
    return None


def test_systemd_timer_and_services() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(DEPLOY / "systemd" / "inventory-sync.timer")
    assert parser.get("Timer", "OnUnitActiveSec") == "5min"
    assert parser.get("Install", "WantedBy") == "timers.target"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(DEPLOY / "systemd" / "inventory-sync.service")
    assert service.get("Service", "Type") == "oneshot"
    assert "--once" in service.get("Service", "ExecStart")
    assert service.get("Service", "User") != "root"


def test_kubernetes_cronjob_has_a_read_only_service_account() -> None:
    from connectors.kubernetes.api import API_PATHS

    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())}
    assert set(documents) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "PersistentVolumeClaim", "Job", "CronJob"}
    rules = documents["ClusterRole"]["rules"]
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in rules)
    granted = {(group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}
    # Every resource the connector lists is granted, in its API group; and the identity namespace.
    for resource, (prefix, _namespaced) in API_PATHS.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert (group, resource) in granted, resource
    assert ("", "namespaces") in granted
    binding = documents["ClusterRoleBinding"]
    account = documents["ServiceAccount"]["metadata"]
    assert binding["roleRef"]["name"] == documents["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]
    job = documents["CronJob"]["spec"]
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert job["concurrencyPolicy"] == "Forbid"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # Two database roles: the Job migrates and grants as the owner; the CronJob runs as the runtime role.
    (migrate,) = documents["Job"]["spec"]["template"]["spec"]["containers"]
    assert migrate["args"][:2] == ["db", "grant"]
    assert {"name": "INVENTORY_SKIP_UPGRADE", "value": "1"} in pod["containers"][0]["env"]
    owner_url = next(e for e in migrate["env"] if e["name"] == "INVENTORY_DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"]
    runtime_url = next(e for e in pod["containers"][0]["env"] if e["name"] == "INVENTORY_DATABASE_URL")["valueFrom"]["secretKeyRef"]["name"]
    assert owner_url != runtime_url
    source = yaml.safe_load(documents["ConfigMap"]["data"]["inventory.yaml"])["sources"][0]
    assert source["type"] == "kubernetes" and source["in_cluster"] is True
