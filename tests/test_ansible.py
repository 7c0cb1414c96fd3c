"""`inventory ansible`: the dynamic-inventory script protocol over the demo lab, read by a real ansible-inventory."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI
from lab_support import SyncedLab, lab  # noqa: F401 (a fixture)
from sync_support import child_env, run_inventory

from inventory.errors import NotFound
from inventory.exports.ansible import build_list, group_name, host_vars, unique_names
from inventory.exports.hosts import ExportHost, best_address

ANSIBLE_GROUP = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _host(id: int, name: str, source: str, external_id: str, addresses: tuple[str, ...] = ()) -> ExportHost:
    return ExportHost(id, source, "proxmox", "vm", external_id, name, "running", None, None, addresses, (), {}, {})


def test_best_address_prefers_routable_ipv4_then_ipv6_in_the_source_order() -> None:
    assert best_address(["127.0.0.1", "fe80::1", "169.254.3.4", "2001:db8::7", "10.0.0.5", "10.0.0.6"]) == "10.0.0.5"
    assert best_address(["::1", "fe80::1", "2001:db8::7", "not an ip"]) == "2001:db8::7"
    assert best_address(["192.168.1.4/24"]) == "192.168.1.4"
    assert best_address(["127.0.0.1", "0.0.0.0", "224.0.0.1"]) is None


def test_shared_names_are_made_unique_the_same_way_whatever_the_order() -> None:
    hosts = [
        _host(1, "web", "pve", "homelab/101"),
        _host(2, "web", "pve", "homelab/102"),
        _host(3, "web", "k3s", "4f0c1e9a-8b1d-4c7e-9d0a-1234567890ab"),
        _host(4, "db", "pve", "homelab/103"),
    ]
    names = unique_names(hosts)
    assert names == {1: "web@pve-101", 2: "web@pve-102", 3: "web@k3s", 4: "db"}
    assert unique_names(list(reversed(hosts))) == names


def test_list_has_every_machine_once_with_the_groups_and_faces_of_every_source(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        document = build_list(session)
    hostvars = document.pop("_meta")["hostvars"]
    # 15 hosts: 3 Proxmox nodes, 8 guests, 3 Kubernetes nodes, 1 Docker engine; the three VMs that are
    # Kubernetes nodes and the LXC that runs the Docker engine are one machine each: 11 Ansible hosts.
    assert len(hostvars) == 11
    assert {"node-0000", "docker01", "homeassistant", "pve1"} <= set(hostvars)
    assert not any("@" in name for name in hostvars)  # `ansible all` reaches each machine once
    assert "debian-12-template" not in hostvars  # a template never runs: nothing to reach
    node = hostvars["node-0000"]
    assert node["ansible_host"] == "192.168.1.101"  # the InternalIP, not the ExternalIP listed after it
    assert [(f["source"], f["kind"]) for f in node["inv_faces"]] == [("k3s", "node"), ("pve", "vm")]
    assert node["inv_source"] == "k3s" and node["inv_kind"] == "node" and isinstance(node["inv_id"], int)
    assert node["inv_tags"] == ["k8s"]  # the Proxmox guest's tag, on the machine
    assert hostvars["docker01"]["ansible_host"] == "192.168.1.110"  # its swarm node address
    assert hostvars["win11"]["ansible_host"] == "win11"  # stopped, no guest agent address
    assert all(ANSIBLE_GROUP.match(group) for group in document), [g for g in document if not ANSIBLE_GROUP.match(g)]
    machines_of_nodes = {"node-0000", "node-0001", "node-0002"}
    assert set(document["source_k3s"]["hosts"]) == machines_of_nodes
    assert machines_of_nodes | {"docker01", "pve1"} <= set(document["source_pve"]["hosts"])
    assert set(document["tag_k8s"]["hosts"]) == machines_of_nodes
    assert "docker01" in document["tag_docker"]["hosts"]
    # A Proxmox hypervisor and a Kubernetes node are different kinds of node.
    assert document["kind_proxmox_node"]["hosts"] == ["pve1", "pve2", "pve3"]
    assert set(document["kind_kubernetes_node"]["hosts"]) == machines_of_nodes
    assert "kind_node" not in document
    assert "win11" in document["status_stopped"]["hosts"]
    assert document["label_kubernetes_io_arch_amd64"]["hosts"] == sorted(machines_of_nodes)
    with lab.db.session() as session:
        assert host_vars(session, "node-0000")["inv_tags"] == ["k8s"]
        with pytest.raises(NotFound, match="no host named 'nope'"):
            host_vars(session, "nope")


def test_group_names_are_reduced_to_what_ansible_accepts() -> None:
    assert group_name("label", "app.kubernetes.io/name", "Web-UI") == "label_app_kubernetes_io_name_web_ui"
    assert group_name("tag", "prod") == "tag_prod"
    assert ANSIBLE_GROUP.match(group_name("status", "CrashLoopBackOff!"))


def _ansible_inventory() -> str | None:
    beside = Path(sys.executable).parent / "ansible-inventory"
    return str(beside) if beside.exists() else shutil.which("ansible-inventory")


def test_real_ansible_inventory_reads_the_wrapper_script(lab: SyncedLab, tmp_path: Path) -> None:
    binary = _ansible_inventory()
    if binary is None:
        message = "ansible-inventory not installed (pip install -e '.[test]' brings ansible-core)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # The README's two-line wrapper, pointed at this lab's config.
    wrapper = tmp_path / "inventory.sh"
    wrapper.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m inventory -c "{lab.config_path}" ansible "$@"\n', encoding="utf-8"
    )
    wrapper.chmod(0o755)
    env = child_env(
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_INVENTORY_ENABLED="script",
    )
    done = subprocess.run([binary, "-i", str(wrapper), "--list"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    hostvars = listing["_meta"]["hostvars"]
    with lab.db.session() as session:
        ours = build_list(session)
    assert set(hostvars) == set(ours["_meta"]["hostvars"])
    assert hostvars["node-0001"]["ansible_host"] == "192.168.1.102"
    assert hostvars["node-0001"]["inv_tags"] == ["k8s"]
    assert set(listing["source_pve"]["hosts"]) == set(ours["source_pve"]["hosts"])
    assert "source_k3s" in listing["all"]["children"]
    # ansible-inventory --graph: each machine once under @all, in the group of every source that sees it.
    graph = subprocess.run(
        [binary, "-i", str(wrapper), "--graph"], capture_output=True, text=True, env=env, timeout=120
    )
    assert graph.returncode == 0, graph.stderr
    machines = {line.rsplit("|--", 1)[-1] for line in graph.stdout.splitlines() if "@" not in line}
    assert {"node-0000", "docker01", "pve1"} <= machines
    assert "node-0000@k3s" not in graph.stdout and "node-0000@pve" not in graph.stdout


def test_cli_usage_errors(lab: SyncedLab, tmp_path: Path) -> None:
    both = run_inventory("-c", str(lab.config_path), "ansible", "--list", "--host", "x", cwd=tmp_path)
    assert both.returncode == 2 and "exactly one of --list and --host" in both.stderr
    unknown = run_inventory("-c", str(lab.config_path), "ansible", "--host", "nope", cwd=tmp_path)
    assert unknown.returncode == 1 and "no host named 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    one = run_inventory("-c", str(lab.config_path), "ansible", "--host", "homeassistant", cwd=tmp_path)
    assert one.returncode == 0 and json.loads(one.stdout)["ansible_host"] == "192.168.1.112"
