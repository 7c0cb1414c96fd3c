"""`inventory export prometheus-sd`: file_sd / http_sd target groups, checked against the rules Prometheus applies."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from lab_support import SyncedLab, lab  # noqa: F401 (a fixture)
from sync_support import invoke_inventory

from inventory.errors import UsageError
from inventory.exports.prometheus import label_name, target_groups

# Prometheus' model.LabelNameRE; names starting with "__" are reserved for its own use.
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_sd_document(document: Any) -> None:
    """What Prometheus' file_sd and http_sd loaders require of a document (discovery/file, discovery/http)."""
    assert isinstance(document, list)
    for group in document:
        assert isinstance(group, dict) and set(group) <= {"targets", "labels"}
        assert isinstance(group["targets"], list) and group["targets"]
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            assert 1 <= int(port) <= 65535, target
            ipaddress.ip_address(host.strip("[]"))  # the lab's targets are addresses
            assert host.startswith("[") == (":" in host), target  # IPv6 in brackets
        for name, value in group.get("labels", {}).items():
            assert LABEL_NAME.match(name) and not name.startswith("__"), name
            assert isinstance(value, str)


def test_targets_are_host_addresses_with_labels(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        groups = target_groups(session)
    check_sd_document(groups)
    by_target = {g["targets"][0]: g["labels"] for g in groups}
    # The VM node-0000 and the Kubernetes node node-0000 are one machine at one address: one target.
    assert [t for t in by_target if t.startswith("192.168.1.101:")] == ["192.168.1.101:9100"]
    node = by_target["192.168.1.101:9100"]
    assert (
        node["source"] == "k3s"
        and node["sources"] == "k3s,pve"
        and node["kind"] == "node"
        and node["status"] == "Ready"
    )
    assert node["label_kubernetes_io_arch"] == "amd64"
    # The LXC docker01 and the Docker engine on it (a swarm node at the LXC's address): one target too.
    lxc = by_target["192.168.1.110:9100"]
    assert lxc["source"] == "docker01" and lxc["sources"] == "docker01,pve" and lxc["kind"] == "docker-engine"
    assert "192.168.1.11:9100" in by_target  # a Proxmox node
    assert not any(labels["name"] == "win11" for labels in by_target.values())  # stopped, no address
    assert len(groups) == len(by_target)  # no target twice


def test_port_and_filters(lab: SyncedLab) -> None:
    with lab.db.session() as session:
        only_nodes = target_groups(session, port=9221, sources=["pve"], kinds=["node"])
        with pytest.raises(UsageError, match="1-65535"):
            target_groups(session, port=0)
    assert [g["targets"] for g in only_nodes] == [["192.168.1.11:9221"], ["192.168.1.12:9221"], ["192.168.1.13:9221"]]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("__meta_x", "meta_x"),
        ("9lives", "l_9lives"),
        ("", "l_"),
        ("ok_Name1", "ok_Name1"),
    ],
)
def test_label_names_are_valid_and_never_reserved(key: str, expected: str) -> None:
    assert label_name(key) == expected
    assert LABEL_NAME.match(label_name(key)) and not label_name(key).startswith("__")


def test_cli_writes_the_file_atomically(lab: SyncedLab, tmp_path: Path) -> None:
    out = tmp_path / "targets.json"
    done = invoke_inventory("-c", str(lab.config_path), "export", "prometheus-sd", "--port", "9100", "-o", str(out))
    assert done.exit_code == 0, done.stderr
    document = json.loads(out.read_text())
    check_sd_document(document)
    assert not (tmp_path / "targets.json.tmp").exists()
    stdout = invoke_inventory("-c", str(lab.config_path), "export", "prometheus-sd")
    assert json.loads(stdout.stdout) == document
    bad = invoke_inventory("-c", str(lab.config_path), "export", "prometheus-sd", "--port", "70000")
    assert bad.exit_code == 2 and "1-65535" in bad.stderr and "Traceback" not in bad.stderr
