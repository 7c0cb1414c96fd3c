"""`hosts|workloads|services show`: naming one object among many, and a host's live and removed workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update
from test_cli_query import query

from inventory.cli import cli
from inventory.storage.database import open_database
from inventory.storage.models import Source

CONTAINER_ID = "3f4e8a9b1c2d" + "0" * 52
LAB = f"""
hosts:
  - {{id: n0, name: node-0000}}
workloads:
  - {{id: a, name: db-0, namespace: prod, host: n0}}
  - {{id: b, name: db-0, namespace: test, host: n0}}
  - {{id: "{CONTAINER_ID}", name: nginx, host: n0}}
  - {{id: gone, name: old-pod, host: n0}}
"""
OTHER = """
hosts:
  - {id: n0, name: node-0000}
"""


@pytest.fixture
def two_sources(tmp_path: Path, migrated_database_url: str) -> Path:
    (tmp_path / "lab.yaml").write_text(LAB)
    (tmp_path / "other.yaml").write_text(OTHER)
    config = tmp_path / "inventory.yaml"
    config.write_text(
        f"database: {{url: '{migrated_database_url}'}}\nsources:\n"
        "  - {type: static, name: lab, path: lab.yaml}\n  - {type: static, name: other, path: other.yaml}\n"
    )
    for args in (["db", "upgrade"], ["sync", "--once"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
    # old-pod goes away at the next sync
    (tmp_path / "lab.yaml").write_text(LAB.replace("  - {id: gone, name: old-pod, host: n0}\n", ""))
    result = CliRunner().invoke(cli, ["--config", str(config), "sync", "--once"])
    assert result.exit_code == 0, result.output
    return config


def shown(config: Path, *args: str) -> dict:
    result = query(config, *args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_same_name_in_two_sources_is_ambiguous_until_source_names_one(two_sources: Path) -> None:
    result = query(two_sources, "hosts", "show", "node-0000")
    assert result.exit_code == 2
    assert "source lab, kind machine" in result.stderr and "source other, kind machine" in result.stderr
    assert "--source" in result.stderr
    assert shown(two_sources, "hosts", "show", "node-0000", "--source", "other")["source"] == "other"
    assert shown(two_sources, "hosts", "show", "--source", "lab", "node-0000")["source"] == "lab"
    unknown = query(two_sources, "hosts", "show", "node-0000", "--source", "nosuch")
    assert unknown.exit_code == 2 and "sources: lab, other" in unknown.stderr


def test_namespace_slash_name_and_the_ambiguity_lists_namespaces(two_sources: Path) -> None:
    result = query(two_sources, "workloads", "show", "db-0")
    assert result.exit_code == 2
    assert "namespace prod" in result.stderr and "namespace test" in result.stderr
    assert shown(two_sources, "workloads", "show", "test/db-0")["external_id"] == "b"
    assert shown(two_sources, "workloads", "show", "prod/db-0")["external_id"] == "a"


def test_host_show_keeps_removed_workloads_apart(two_sources: Path) -> None:
    doc = shown(two_sources, "hosts", "show", "node-0000", "--source", "lab")
    assert sorted(w["name"] for w in doc["workloads"]) == ["db-0", "db-0", "nginx"]
    assert doc["workloads"] and "removed_workloads" not in doc
    full = shown(two_sources, "hosts", "show", "node-0000", "--source", "lab", "--include-removed")
    assert [w["name"] for w in full["workloads"]] == [w["name"] for w in doc["workloads"]]
    assert [w["name"] for w in full["removed_workloads"]] == ["old-pod"]


def test_docker_short_id_and_unique_prefixes(two_sources: Path) -> None:
    assert shown(two_sources, "workloads", "show", CONTAINER_ID[:12])["name"] == "nginx"
    assert shown(two_sources, "workloads", "show", CONTAINER_ID[:20])["name"] == "nginx"
    assert query(two_sources, "workloads", "show", CONTAINER_ID[:11]).exit_code == 1  # too short to be an id


def test_source_kind_external_id_when_the_source_name_holds_slashes(two_sources: Path, database_url: str) -> None:
    # An expanded EKS context: "<source>:<context ARN>", and the ARN ends in cluster/<name>.
    arn = "eks:arn:aws:eks:eu-west-1:123456789012:cluster/prod"
    db = open_database(database_url)
    try:
        with db.write_session() as session:
            session.execute(update(Source).where(Source.name == "lab").values(name=arn))
    finally:
        db.dispose()
    assert shown(two_sources, "workloads", "show", f"{arn}/app/b")["namespace"] == "test"
    assert shown(two_sources, "hosts", "show", f"{arn}/machine/n0")["source"] == arn
