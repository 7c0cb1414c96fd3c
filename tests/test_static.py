"""The static connector: hand-declared machines, inline or in a file re-read at every sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.static.connector import StaticConfig, StaticConnector
from inventory.errors import SourceError
from inventory.records import Ref


def connector(tmp_path: Path, **config: object) -> StaticConnector:
    return StaticConnector(StaticConfig.model_validate({"type": "static", "name": "lab", **config}, context={"base_dir": tmp_path}))


def test_inline_and_file_declarations_become_linked_records(tmp_path: Path) -> None:
    (tmp_path / "more.yaml").write_text("hosts: [{id: sw, name: core-switch, kind: switch, mac_addresses: [AA:BB:CC:00:11:22]}]\n")
    snapshot = connector(
        tmp_path,
        path="more.yaml",
        hosts=[{"id": "nas1", "name": "nas", "machine_uuid": "ABCD-1"}],
        workloads=[{"id": "plex", "name": "plex", "host": "nas1", "kind": "app"}, {"id": 7, "name": "transcoder", "parent": "plex"}],
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
