"""kubectl's habits: get/describe, -n/-A, -o name|jsonpath=|custom-columns=, --sort-by=-field, completion."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lab_support import static_lab
from test_cli_query import query

from inventory.cli import cli
from inventory.errors import UsageError
from inventory.jsonpath import parse_custom_columns, render_template

LAB = """
hosts:
  - {id: nas1, name: nas, hostname: nas.lan, status: up}
  - {id: pve1, name: pve1, kind: server, status: up}
workloads:
  - {id: plex, name: plex, host: nas1, namespace: media, status: running, labels: {app: plex}}
  - {id: web-1, name: web-1, host: pve1, namespace: prod, status: running, labels: {app: web}}
  - {id: web-2, name: web-2, host: pve1, namespace: prod, status: stopped, labels: {app: web}}
services:
  - {id: media, name: media, namespace: media, members: [plex]}
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def synced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with static_lab(request, tmp_path_factory.mktemp("lab"), LAB) as config:
        yield config


def ok(config: Path, *args: str) -> str:
    result = query(config, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_get_and_describe_are_list_and_show(synced: Path) -> None:
    for plural in ("hosts", "workloads", "services"):
        assert ok(synced, "get", plural) == ok(synced, plural, "list")
    assert ok(synced, "get", "host") == ok(synced, "hosts", "list")  # the singular too
    assert ok(synced, "get", "workloads", "-l", "app=web", "-o", "json") == ok(
        synced, "workloads", "list", "-l", "app=web", "-o", "json"
    )
    # With a NAME, get shows that one (as kubectl's `get pod NAME`); describe is show.
    assert json.loads(ok(synced, "get", "hosts", "nas", "-o", "json"))["hostname"] == "nas.lan"
    assert ok(synced, "describe", "host", "nas") == ok(synced, "hosts", "show", "nas")
    assert ok(synced, "describe", "workloads", "plex", "-o", "json") == ok(
        synced, "workloads", "show", "plex", "-o", "json"
    )
    assert "AT" in ok(synced, "get", "changes").splitlines()[0]
    assert query(synced, "get", "pods").exit_code == 2


def test_namespace_flags(synced: Path) -> None:
    def names(*args: str) -> list[str]:
        return sorted(row["name"] for row in json.loads(ok(synced, "get", "workloads", *args, "-o", "json")))

    assert names("-n", "prod") == ["web-1", "web-2"]
    assert names("--namespace", "med*") == ["plex"]
    assert names("-A") == names() == ["plex", "web-1", "web-2"]
    both = query(synced, "get", "workloads", "-A", "-n", "prod")
    assert both.exit_code == 2 and "-A/--all-namespaces and -n/--namespace" in both.output
    assert json.loads(ok(synced, "describe", "workload", "web-1", "-n", "prod", "-o", "json"))["namespace"] == "prod"
    assert json.loads(ok(synced, "services", "show", "media", "-n", "media", "-o", "json"))["name"] == "media"
    assert query(synced, "describe", "host", "nas", "-n", "x").exit_code == 2


def test_output_name_jsonpath_and_custom_columns(synced: Path) -> None:
    assert ok(synced, "get", "hosts", "-o", "name").splitlines() == ["host/nas", "host/pve1"]
    assert ok(synced, "get", "workloads", "-n", "prod", "-o", "name") == "workload/web-1\nworkload/web-2\n"
    assert ok(synced, "get", "workloads", "-o", "jsonpath={.items[*].name}") == "plex web-1 web-2\n"
    ranged = ok(synced, "get", "workloads", "-o", 'jsonpath={range .items[*]}{.name}{"\\t"}{.status}{"\\n"}{end}')
    assert ranged == "plex\trunning\nweb-1\trunning\nweb-2\tstopped\n"
    assert ok(synced, "get", "workloads", "-o", "jsonpath={.items[0].labels.app}") == "plex\n"
    columns = ok(synced, "get", "workloads", "-o", "custom-columns=NAME:.name,APP:.labels.app,NS:{.namespace}")
    assert [line.split() for line in columns.splitlines()] == [
        ["NAME", "APP", "NS"],
        ["plex", "plex", "media"],
        ["web-1", "web", "prod"],
        ["web-2", "web", "prod"],
    ]
    assert "NAME" not in ok(synced, "get", "hosts", "-o", "custom-columns=NAME:.name", "--no-headers")
    for bad in ("jsonpath={.items[*", "custom-columns=NAME", "jsonpath=", "names", "jsonpath={range .items[*]}{.x}"):
        result = query(synced, "get", "hosts", "-o", bad)
        assert result.exit_code == 2, (bad, result.output)
        assert "Traceback" not in result.output


def test_columns_with_whole_row_formats_is_a_usage_error(synced: Path) -> None:
    for fmt in ("json", "yaml", "name", "jsonpath={.items[*].id}"):
        result = query(synced, "hosts", "list", "--columns", "name", "-o", fmt)
        assert result.exit_code == 2 and "--columns applies to tables and CSV" in result.output
    assert query(synced, "hosts", "list", "--columns", "name", "-o", "csv").exit_code == 0


def test_descending_sort(synced: Path) -> None:
    def order(*args: str) -> list[str]:
        return ok(synced, "get", "workloads", "--columns", "name", "--no-headers", *args).split()

    assert order("--sort-by", "name") == ["plex", "web-1", "web-2"]
    assert order("--sort-by=-name") == ["web-2", "web-1", "plex"]
    assert order("--sort-by", "-status")[-1] in ("web-1", "plex")  # stopped before running
    result = query(synced, "get", "workloads", "--sort-by=-colour")
    assert result.exit_code == 2 and "unknown field 'colour'" in result.output


def _complete(config: Path, words: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What click's bash completion answers for ``inventory WORDS`` (the last word is the one completed)."""
    parts = ["inventory", "-c", str(config), *words.split(" ")]
    env = {"_INVENTORY_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(parts), "COMP_CWORD": str(len(parts) - 1)}
    result = CliRunner().invoke(cli, [], env=env, prog_name="inventory")
    return [line.split(",", 1)[1] for line in result.output.splitlines() if "," in line]


def test_completion_of_names_tools_and_kinds(synced: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _complete(synced, "hosts show n", monkeypatch) == ["nas"]
    assert _complete(synced, "describe workload web", monkeypatch) == ["web-1", "web-2"]
    assert _complete(synced, "get services m", monkeypatch) == ["media"]
    assert "proxmox.start" in _complete(synced, "tool run proxmox.st", monkeypatch)
    assert "kubernetes.scale_deployment" in _complete(synced, "policy check kubernetes.sc", monkeypatch)
    assert {"deploy", "deployment"} <= set(_complete(synced, "workloads list --kind dep", monkeypatch))
    # No database behind the config: nothing offered, and no traceback in the shell.
    missing = synced.parent / "missing.yaml"
    missing.write_text("database: {url: 'sqlite:////nonexistent/dir/x.db'}\nsources: []\n")
    assert _complete(missing, "hosts show n", monkeypatch) == []
    absent = synced.parent / "absent.yaml"
    absent.write_text(f"database: {{url: 'sqlite:///{synced.parent / 'absent.db'}'}}\nsources: []\n")
    assert _complete(absent, "hosts show n", monkeypatch) == []
    assert not (synced.parent / "absent.db").exists()  # completing a word created no database


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0 and "_INVENTORY_COMPLETE" in result.output


def test_jsonpath_subset() -> None:
    data = {"items": [{"name": "a", "labels": {"k": "v"}, "up": True}, {"name": "b", "labels": {}, "up": False}]}
    assert render_template("{.items[*].name}", data) == "a b"
    assert render_template("{$.items[-1].name}", data) == "b"
    assert render_template("{.items[*]['name','up']}", data) == "a true b false"
    assert render_template("{range .items[*]}[{@.name}:{.labels.k}]{end}", data) == "[a:v][b:]"
    assert render_template("{.items[0].labels}", data) == '{"k":"v"}'
    assert render_template("names: {.items[1].name}{'\\n'}", data) == "names: b\n"
    nested = {"items": [{"xs": [1, 2]}, {"xs": [3]}]}
    assert render_template("{range .items[*]}{range .xs[*]}{@}-{end};{end}", nested) == "1-2-;3-;"
    for bad in ("{.items[*", "{range .items[*]}", "{..name}", "{.items[?(@.x)]}"):
        with pytest.raises(UsageError):
            render_template(bad, data)
    assert parse_custom_columns("A:.a,B:{.b.c}") == [("A", ".a"), ("B", ".b.c")]
