"""A bare row id that several object types hold is ambiguous in `impact`, `tool run` and `show`; `host/4` is not."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_support import static_lab
from test_cli_query import query

from inventory.errors import Ambiguous, NotFound
from inventory.policy.targets import resolve_target
from inventory.storage.database import open_database

# Host ids 1-2 and workload ids 1-3 overlap: `1` is the host nas and the workload plex.
LAB = """
hosts:
  - {id: nas1, name: nas}
  - {id: pve1, name: pve1}
workloads:
  - {id: plex, name: plex, host: nas1, status: running}
  - {id: web, name: web, host: pve1, status: running}
  - {id: db, name: db, host: pve1, status: running}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def overlapping(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with static_lab(request, tmp_path_factory.mktemp("lab"), LAB) as config:
        yield config


def _ids(config: Path, plural: str) -> dict[str, int]:
    result = query(config, plural, "list", "-o", "json")
    return {row["name"]: row["id"] for row in json.loads(result.stdout)}


def test_show_refuses_a_shared_bare_id_and_takes_the_typed_forms(overlapping: Path) -> None:
    hosts, workloads = _ids(overlapping, "hosts"), _ids(overlapping, "workloads")
    shared = hosts["nas"]
    assert shared in workloads.values()  # the lab is built so that they overlap
    workload_name = next(name for name, wid in workloads.items() if wid == shared)
    for command in (["hosts", "show"], ["workloads", "show"], ["describe", "host"]):
        result = query(overlapping, *command, str(shared))
        assert result.exit_code == 2, result.output
        # Both listed with type, source, kind and name, and a form that names one.
        assert f"host/{shared} (source lab, kind machine, name nas)" in result.output
        assert f"workload/{shared} (source lab, kind app, name {workload_name})" in result.output
        assert f"say which: host/{shared} or workload/{shared}" in result.output
    for spelling in (f"host/{shared}", f"host:{shared}", "host/nas"):
        result = query(overlapping, "hosts", "show", spelling, "-o", "json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["name"] == "nas"
    typed = query(overlapping, "workloads", "show", f"workload/{shared}", "-o", "json")
    assert json.loads(typed.output)["name"] == workload_name
    wrong = query(overlapping, "hosts", "show", f"workload/{shared}")
    assert wrong.exit_code == 2 and "is a workload id, not a host one" in wrong.output
    # An id only one type holds stays a plain id.
    only_workload = max(workloads.values())
    assert only_workload not in hosts.values()
    assert query(overlapping, "workloads", "show", str(only_workload)).exit_code == 0


def test_quiet_lists_print_typed_ids_that_show_takes(overlapping: Path) -> None:
    ids = query(overlapping, "hosts", "list", "-q").output.split()
    assert all(re.fullmatch(r"host/\d+", i) for i in ids)
    for ident in ids:
        assert query(overlapping, "hosts", "show", ident).exit_code == 0


def test_impact_and_targets_on_a_shared_id(overlapping: Path) -> None:
    hosts = _ids(overlapping, "hosts")
    shared = str(hosts["nas"])
    result = query(overlapping, "impact", shared)
    assert result.exit_code == 2 and f"say which: host/{shared} or workload/{shared}" in result.output
    by_host = query(overlapping, "impact", f"host/{shared}", "-o", "json")
    assert by_host.exit_code == 0, by_host.output
    assert json.loads(by_host.output)["target"]["name"] == "nas"
    assert [w["name"] for w in json.loads(by_host.output)["workloads"]] == ["plex"]


def test_tool_targets_with_a_shared_id(overlapping: Path) -> None:
    """`tool run --target` resolves through resolve_target: a shared bare id is refused, a typed one taken."""
    hosts, workloads = _ids(overlapping, "hosts"), _ids(overlapping, "workloads")
    shared = hosts["nas"]
    workload_name = next(name for name, wid in workloads.items() if wid == shared)
    only_workload = max(workloads.values())
    db = open_database(_url(overlapping))
    try:
        with db.session() as session:
            with pytest.raises(Ambiguous, match=rf"say which: workload/{shared} or host/{shared}"):
                resolve_target(session, str(shared))
            assert resolve_target(session, f"workload/{shared}").name == workload_name
            assert resolve_target(session, f"host:{shared}").name == "nas"
            assert resolve_target(session, str(only_workload)).id == only_workload
            # An id no workload of the tool's kinds holds: the refusal says what that id is.
            with pytest.raises(NotFound, match=rf"other objects with that id: host/{shared} \(source lab"):
                resolve_target(session, str(shared), kinds=("qemu",))
    finally:
        db.dispose()


def test_tool_run_refuses_a_shared_id_before_anything_runs(overlapping: Path) -> None:
    shared = _ids(overlapping, "hosts")["nas"]
    result = query(overlapping, "tool", "run", "proxmox.start", "--target", str(shared), "--dry-run")
    # The static lab has no Proxmox guest: refused as naming none, with what the number is.
    assert result.exit_code == 1 and f"other objects with that id: host/{shared}" in result.output
    impact_result = query(overlapping, "impact", f"workload/{shared}", "-o", "json")
    assert json.loads(impact_result.output)["target"]["type"] == "workload"


def _url(config: Path) -> str:
    return next(line for line in config.read_text().splitlines() if "url:" in line).split("'")[1]


def test_the_api_keeps_plain_ids(overlapping: Path) -> None:
    """A URL says its type: /api/v1/hosts/1 is the host, however many types hold the id."""
    from inventory.queries import show_object

    db = open_database(_url(overlapping))
    try:
        with db.session() as session:
            assert show_object(session, "host", str(_ids(overlapping, "hosts")["nas"]))["name"] == "nas"
    finally:
        db.dispose()


def test_help_names_the_typed_form() -> None:
    from inventory.cli import cli

    result = CliRunner().invoke(cli, ["workloads", "show", "--help"])
    assert "WORKLOAD/ID" in result.output and "write workload/ID" in result.output
