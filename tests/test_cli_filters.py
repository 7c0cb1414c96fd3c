"""List filters shared by the CLI, the API and MCP: label selectors, namespace globs, kind aliases, unknown names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_support import SyncedLab, lab, static_lab  # noqa: F401 (a fixture)
from test_cli_query import names, query

from inventory import queries
from inventory.cli import cli
from inventory.errors import UsageError

INVENTORY = """
workloads:
  - {id: w0, name: web-0, namespace: app-a, labels: {app: web-0, tier: front, app.kubernetes.io/part-of: shop}}
  - {id: w1, name: web-1, namespace: app-b, labels: {app: web-1, tier: front}}
  - {id: db, name: db-0, namespace: data, labels: {app: db, tier: back}}
  - {id: bare, name: bare, namespace: app_x}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The static lab synced once per engine: these tests only read it."""
    with static_lab(request, tmp_path_factory.mktemp("lab"), INVENTORY) as config:
        yield config


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web-0", ["web-0"]),
        ("app==web-0", ["web-0"]),
        ("app!=web-0", ["bare", "db-0", "web-1"]),  # as kubectl: objects without the key match !=
        ("tier in (front, back)", ["db-0", "web-0", "web-1"]),
        ("tier notin (front)", ["bare", "db-0"]),
        ("tier", ["db-0", "web-0", "web-1"]),
        ("!tier", ["bare"]),
        ("tier=front,app!=web-1", ["web-0"]),
        ("app in (web-0,db),!app.kubernetes.io/part-of", ["db-0"]),
        ("app.kubernetes.io/part-of=shop", ["web-0"]),
    ],
)
def test_label_selectors(synced: Path, selector: str, expected: list[str]) -> None:
    assert names(synced, "workloads", "list", "-l", selector) == expected


def test_repeated_selectors_are_anded(synced: Path) -> None:
    assert names(synced, "workloads", "list", "-l", "tier=front", "--label", "app=web-1") == ["web-1"]


@pytest.mark.parametrize("selector", ["app!", "app in web", "=web", "app=a b", "tier in (a,b"])
def test_a_malformed_selector_is_a_usage_error_naming_it(synced: Path, selector: str) -> None:
    result = query(synced, "workloads", "list", "-l", selector)
    assert result.exit_code == 2
    assert repr(selector) in result.output
    assert "Traceback" not in result.output


def test_namespace_globs(synced: Path) -> None:
    assert names(synced, "workloads", "list", "--namespace", "app-*") == ["web-0", "web-1"]
    assert names(synced, "workloads", "list", "--namespace", "app-?") == ["web-0", "web-1"]
    assert names(synced, "workloads", "list", "--namespace", "data") == ["db-0"]
    assert names(synced, "workloads", "list", "--namespace", "app_*") == ["bare"]  # _ is literal


def test_unknown_source_and_kind_are_usage_errors_naming_what_exists(synced: Path) -> None:
    result = query(synced, "workloads", "list", "--source", "nosuch")
    assert result.exit_code == 2
    assert "unknown source 'nosuch'" in result.output and "lab" in result.output
    result = query(synced, "workloads", "list", "--kind", "gizmo")
    assert result.exit_code == 2
    assert "unknown kind 'gizmo'" in result.output and "app" in result.output
    result = query(synced, "changes", "--source", "nosuch")
    assert result.exit_code == 2 and "lab" in result.output
    # A kind some connector declares is known even where no row has it yet: an empty answer, not an error.
    assert names(synced, "workloads", "list", "--kind", "sts") == []
    assert names(synced, "workloads", "list", "--kind", "APP") == ["bare", "db-0", "web-0", "web-1"]


def test_kinds_are_case_insensitive_with_one_vocabulary_across_hosts_and_workloads(lab: SyncedLab) -> None:
    def kinds(*args: str) -> set[str]:
        result = CliRunner().invoke(cli, ["--config", str(lab.config_path), *args, "-o", "json"])
        assert result.exit_code == 0, result.output
        return {row["kind"] for row in json.loads(result.stdout)}

    # Proxmox guests: "vm" hosts and "qemu" workloads, found by either word.
    assert kinds("workloads", "list", "--kind", "vm") == {"qemu"}
    assert kinds("workloads", "list", "--kind", "QEMU") == {"qemu"}
    assert kinds("hosts", "list", "--kind", "vm") == {"vm"}
    assert kinds("hosts", "list", "--kind", "qemu") == {"vm"}
    assert kinds("workloads", "list", "--kind", "ct") == {"lxc"}
    assert kinds("workloads", "list", "--kind", "Deployment") == {"deployment"}
    assert kinds("workloads", "list", "--kind", "deploy") == {"deployment"}
    assert kinds("workloads", "list", "--kind", "po") == {"pod"}
    assert kinds("services", "list", "--kind", "svc") == {"service"}
    assert kinds("workloads", "list", "--kind", "Container") == {"container"}


def test_the_library_filter_is_what_every_face_uses(db: object) -> None:
    # parse_labels is what the API's ?label= and MCP's "selector" go through.
    assert [str(r) for r in queries.parse_labels(["a=1,b notin (x,y)", "!c"])] == ["a=1", "b notin (x,y)", "!c"]
    with pytest.raises(UsageError, match="'a!'"):
        queries.parse_labels(["a!"])
    with db.session() as session:  # type: ignore[attr-defined]
        with pytest.raises(UsageError, match="unknown source 'x'"):
            queries.list_hosts(session, queries.ObjectFilter(source="x"))
