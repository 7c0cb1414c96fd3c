"""The static connector: hand-declared machines, inline or in a file re-read at every sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from connector_contract import ConnectorContract, SourceObject

from connectors.static.config import StaticConfig
from connectors.static.connector import StaticConnector
from inventory.errors import SourceError
from inventory.records import Ref


def connector(tmp_path: Path, **config: object) -> StaticConnector:
    return StaticConnector(
        StaticConfig.model_validate({"type": "static", "name": "lab", **config}, context={"base_dir": tmp_path})
    )


def test_inline_and_file_declarations_become_linked_records(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text(
        "hosts: [{id: sw, name: core-switch, kind: switch, mac_addresses: [AA:BB:CC:00:11:22]}]\n"
    )
    snapshot = connector(
        tmp_path,
        path="more.yaml",
        hosts=[{"id": "nas1", "name": "nas", "machine_uuid": "ABCD-1"}],
        workloads=[
            {"id": "plex", "name": "plex", "host": "nas1", "kind": "app"},
            {"id": 7, "name": "transcoder", "parent": "plex"},
        ],
        services=[{"id": "media", "name": "Media", "members": ["plex", "7"], "slo": 99.9, "url": "https://plex.lan"}],
    ).collect()
    assert snapshot.complete
    assert [h.name for h in snapshot.hosts] == ["nas", "core-switch"]
    assert snapshot.hosts[0].machine_uuid == "abcd-1"
    assert snapshot.hosts[1].mac_addresses == ("aa:bb:cc:00:11:22",)
    plex, transcoder = snapshot.workloads
    assert plex.host == Ref("machine", "nas1")
    assert transcoder.external_id == "7" and transcoder.parent == Ref("app", "plex")
    assert snapshot.services[0].members == (Ref("app", "plex"), Ref("app", "7"))
    assert snapshot.services[0].attributes == {"slo": 99.9, "url": "https://plex.lan"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("hosts: [\n", "malformed YAML"),
        ("hosts: [{id: a}]\n", "hosts.0.name: Field required"),
        ("hosts: [{id: a, name: a}, {id: a, name: b}]\n", "hosts[1].id: 'a' is declared twice"),
    ],
)
def test_a_bad_file_fails_the_source_naming_file_and_key(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "m.yaml").write_text(content)
    with pytest.raises(SourceError) as info:
        connector(tmp_path, path="m.yaml").collect()
    assert f"source 'lab', file {tmp_path / 'm.yaml'}" in str(info.value)
    assert message in str(info.value)


# -- the connector contract -----------------------------------------------------------------------


class DeclarationFile:
    """The static connector's far side: a YAML file of declarations, rewritten as a person would edit it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.declared: dict[str, list[dict[str, Any]]] = {
            "hosts": [
                {"id": "nas1", "name": "nas", "hostname": "nas.lan"},
                {"id": "sw1", "name": "core-switch", "kind": "switch"},
            ],
            "workloads": [
                {"id": "plex", "name": "plex", "host": "nas1", "status": "running"},
                {"id": "backup", "name": "backup", "host": "nas1"},
            ],
            "services": [{"id": "media", "name": "Media", "members": ["plex"]}],
        }
        self.broken = False
        self.write()

    def write(self) -> None:
        self.path.write_text("hosts: [\n" if self.broken else yaml.safe_dump(self.declared), encoding="utf-8")


class TestContract(ConnectorContract):
    # A file that cannot be read fails the source as a whole: nothing of it is known.
    incomplete_status = "failed"

    @pytest.fixture
    def fake(self, tmp_path: Path) -> DeclarationFile:
        return DeclarationFile(tmp_path / "machines.yaml")

    def connector(self, fake: DeclarationFile) -> StaticConnector:
        return connector(fake.path.parent, path=fake.path.name)

    def rename(self, fake: DeclarationFile) -> tuple[SourceObject, str]:
        fake.declared["hosts"][0]["name"] = "nas-renamed"
        fake.write()
        return SourceObject("host", "machine", "nas1"), "nas-renamed"

    def remove(self, fake: DeclarationFile) -> SourceObject:
        fake.declared["workloads"].pop()
        fake.write()
        return SourceObject("workload", "app", "backup")

    def break_one(self, fake: DeclarationFile) -> None:
        fake.broken = True
        fake.write()

    def heal(self, fake: DeclarationFile) -> None:
        fake.broken = False
        fake.write()

    def secrets(self, fake: DeclarationFile) -> list[str]:
        return []
