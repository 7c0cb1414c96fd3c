"""`inventory demo` end to end in a fresh environment: fakes on loopback, real connectors, queries afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from sync_support import child_env, run_inventory


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """No config, no database, no kubeconfig, an empty home: what a newcomer's machine has."""
    home = tmp_path / "home"
    home.mkdir()
    return child_env(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        KUBECONFIG="",
        DOCKER_HOST="",
    )


def test_demo_runs_end_to_end_and_leaves_a_database_to_query(tmp_path: Path) -> None:
    env = fresh_env(tmp_path)
    result = run_inventory("demo", cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for source in ("pve", "k3s", "docker01"):
        assert f"{source} " in out
    assert out.count(" success ") >= 6  # three sources, two syncs
    assert "One machine, several sources (4 machines seen by more than one source)" in out
    assert "k3s/node node-0000 = pve/vm node-0000" in out
    assert "docker01/docker-engine docker01 = pve/lxc docker01" in out
    assert "Failed and stopped workloads: 2" in out and "win11" in out  # the template is neither
    assert "debian-12-template" not in out.split("Failed and stopped workloads")[1].split("\n\n")[0]
    changed = out.split("== What changed ==")[1]
    # Tables are aligned with a gap of their own choosing: match the words, not the spaces.
    assert re.search(r"created\s+workload\s+lxc", changed) and "test-ct-3" in changed
    assert re.search(r"removed\s+workload\s+pod", changed)
    assert "monitoring-grafana-1" in changed
    assert "Traceback" not in result.stderr
    # The hints are commands as this one was run (here `python -m inventory`), ready to paste.
    assert "  python -m inventory -c inventory-demo/inventory.yaml hosts list\n" in out

    # The queries the demo suggests work on what it made.
    config = tmp_path / "inventory-demo" / "inventory.yaml"
    assert config.is_file() and (tmp_path / "inventory-demo" / "inventory.db").is_file()
    pods = run_inventory(
        "-c", str(config), "workloads", "list", "--source", "k3s", "--kind", "pod", "-o", "json", cwd=tmp_path, env=env
    )
    assert pods.returncode == 0, pods.stderr
    assert len(json.loads(pods.stdout)) == 24
    stopped = run_inventory(
        "-c",
        "inventory-demo/inventory.yaml",
        "workloads",
        "list",
        "--status",
        "stopped",
        "-o",
        "json",
        cwd=tmp_path,
        env=env,
    )
    assert {w["name"] for w in json.loads(stopped.stdout)} >= {"win11", "nextcloud"}
    assert run_inventory("-c", str(config), "status", "--max-age", "1h", cwd=tmp_path, env=env).returncode == 0
    report = run_inventory("-c", str(config), "report", "-o", "markdown", cwd=tmp_path, env=env)
    assert report.returncode == 0 and "## Hosts with no workloads" in report.stdout

    # A second run keeps the first one's database unless told to replace it (no terminal here: no question).
    kept = run_inventory("demo", cwd=tmp_path, env=env, timeout=120)
    assert kept.returncode == 2 and "pass --force" in kept.stderr and "Traceback" not in kept.stderr
    again = run_inventory("demo", "--force", cwd=tmp_path, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert re.search(r"pve\s+success\s+23\s+23", again.stdout)


def test_demo_churn_follows_the_lab_live_and_says_who_changed_it(tmp_path: Path) -> None:
    result = run_inventory(
        "demo",
        "--dir",
        str(tmp_path / "lab"),
        "--churn",
        "--cycles",
        "3",
        "--interval",
        "0.2s",
        cwd=tmp_path,
        env=fresh_env(tmp_path),
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "~ proxmox: root@pam stopped nextcloud" in out
    assert "~ kubernetes: kube-controller-manager replaced pod" in out
    assert "stopped after 3 change(s) of the lab" in out
    # Followed live: one full sync per source when its watch starts, then only the watches' changes.
    assert out.count("k3s: success") == 1
    # Each change printed as stored, with its cause: a Proxmox task, a field manager, a Docker event.
    assert re.search(
        r"pve\s+updated\s+workload\s+qemu\s+nextcloud\s+status: running -> stopped\s+BY root@pam qmstop", out
    )
    assert re.search(
        r"k3s\s+updated\s+workload\s+deployment\s+app-000/web-0\s+.*BY kubectl-client-side-apply Update", out
    )
    assert re.search(r"k3s\s+created\s+workload\s+pod\s+.*BY kube-controller-manager Update", out)
    assert re.search(
        r"docker01\s+removed\s+workload\s+container\s+monitoring/monitoring-grafana-1\s+.*BY docker destroy", out
    )
    assert re.search(r"pve\s+created\s+workload\s+lxc\s+test-ct-3\s+.*BY alice@pve vzcreate", out)
    assert "Traceback" not in result.stderr


def test_the_cli_imports_no_sdk_and_no_fake() -> None:
    code = (
        "import sys, inventory.cli, inventory.loop, inventory.locks, inventory.metrics, inventory.notify, "
        "inventory.report\n"
        "loaded = {'kubernetes', 'proxmoxer', 'docker', 'inventory.demo', 'connectors.proxmox.fake', 'httpx'} "
        "& set(sys.modules)\n"
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_demo_refuses_a_bad_interval_before_starting_anything(tmp_path: Path) -> None:
    for interval, said in (("abc", "not a duration: 'abc'"), ("0", "must be more than 0")):
        result = run_inventory("demo", "--dir", str(tmp_path / "lab"), "--churn", "--interval", interval, cwd=tmp_path)
        assert result.returncode == 2 and f"--interval: {said}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "lab").exists()
