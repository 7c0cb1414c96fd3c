"""Logical services declared in config: members across sources, status, availability from sync history, SLO."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import POSTGRES_ADMIN_URL, require_postgres
from lab_support import SyncedLab, synced_lab
from sqlalchemy import update
from sync_support import invoke_inventory, write_config, write_inventory

from inventory.config import build_config, load_config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError
from inventory.logical.spec import LogicalService
from inventory.logical.status import evaluate, slo_lookup
from inventory.policy.classes import ToolClass
from inventory.policy.escalations import ImpactEscalation
from inventory.policy.execute import ToolRunner
from inventory.policy.registry import ToolRegistry
from inventory.policy.rules import builtin_policy
from inventory.storage.database import Database
from inventory.storage.models import Change, WorkloadRow
from inventory.sync import sync_all
from inventory.testing.scratch_postgres import ScratchDatabase
from inventory.timeutil import utcnow

SERVICES = [
    {
        "name": "media",
        "description": "the media stack on docker01 and the web ingress in k3s",
        "select": [
            {"source": "docker01", "kind": "container", "namespace": "media"},
            {"type": "service", "source": "k3s", "kind": "ingress", "namespace": "app-000", "name": "web"},
        ],
        "slo": {"target": 99.9, "window": "7d"},
    },
    {
        "name": "home",
        "require": "all",
        "select": [{"source": "pve", "name": "homeassistant"}, {"source": "pve", "name": "win11"}],
    },
    # A container that is in no service and has nothing below it: its impact is empty, its SLO is not.
    {"name": "updates", "select": [{"source": "docker01", "name": "watchtower"}], "slo": {"target": 99}},
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncedLab]:
    directory = tmp_path_factory.mktemp("lab")
    extra = {"services": SERVICES}
    if request.param == "sqlite":
        with synced_lab(directory, f"sqlite:///{directory / 'inventory.db'}", extra_config=extra) as synced:
            yield synced
        return
    require_postgres()
    with (
        ScratchDatabase(POSTGRES_ADMIN_URL, prefix="inventory_test") as scratch,
        synced_lab(directory, scratch.url, extra_config=extra) as synced,
    ):
        yield synced


def _specs(lab: SyncedLab) -> list[LogicalService]:
    return load_config(lab.config_path).services


def test_members_span_sources_and_status_follows_them(lab: SyncedLab) -> None:
    media, home, _ = _specs(lab)
    with lab.db.session() as session:
        media_state = evaluate(session, media)
        home_state = evaluate(session, home)
    assert {(m.source, m.kind, m.name) for m in media_state.members} == {
        ("docker01", "container", "media-jellyfin-1"), ("docker01", "container", "media-radarr-1"),
        ("docker01", "container", "media-sonarr-1"), ("k3s", "ingress", "web"),
    }  # fmt: skip
    assert (
        media_state.status == "up" and media_state.availability == pytest.approx(100.0) and media_state.slo_met is True
    )
    # homeassistant runs, win11 is stopped: "all" fails. Both the guest and its VM host match the name.
    assert home_state.status == "down" and {m.object_type for m in home_state.members} == {"workload"}
    assert home_state.availability == 0.0 and home_state.slo_met is None  # no SLO declared


def test_report_and_services_show(lab: SyncedLab) -> None:
    report = invoke_inventory("-c", str(lab.config_path), "report")
    assert report.exit_code == 0, report.stderr
    section = report.stdout.split("Logical services: 3")[1]
    assert "media" in section and "99.9% / 7d" in section and "100.000%" in section
    shown = json.loads(invoke_inventory("-c", str(lab.config_path), "services", "show", "media", "-o", "json").stdout)
    assert shown["status"] == "up" and shown["members"] == 4 and shown["slo"] == "99.9% / 7d"
    markdown = invoke_inventory("-c", str(lab.config_path), "report", "-o", "markdown").stdout
    assert "## Logical services" in markdown


def test_a_call_that_reaches_a_service_with_an_slo_is_escalated(lab: SyncedLab) -> None:
    registry = ToolRegistry.discover()
    without = ToolRunner(lab.db, builtin_policy(), registry)  # the impact alone: docker01 reaches nothing protected
    assert (
        without.evaluate("proxmox.reboot", "docker01", {}, "alice").classification.tool_class is ToolClass.SAFE_MUTATE
    )
    runner = ToolRunner(
        lab.db, builtin_policy(), registry, escalation_sources=[ImpactEscalation(lab.db, slo_lookup(_specs(lab)))]
    )
    evaluation = runner.evaluate("proxmox.reboot", "docker01", {}, "alice")
    assert evaluation.classification.tool_class is ToolClass.DESTRUCTIVE
    assert (
        "raised to DESTRUCTIVE: its impact reaches logical service media (SLO 99.9%)"
        in evaluation.classification.reasons
    )
    # The CLI wires the config's services into the policy the same way.
    checked = invoke_inventory(
        "-c",
        str(lab.config_path),
        "policy",
        "check",
        "proxmox.reboot",
        "--target",
        "docker01",
        "-o",
        "json",
    )
    assert checked.exit_code == 0, checked.stderr
    assert json.loads(checked.stdout)["class"] == "DESTRUCTIVE"


def test_availability_is_replayed_from_the_recorded_status_changes(tmp_path: Path, db: Database) -> None:
    registry = ConnectorRegistry.discover()
    source_file = tmp_path / "apps.yaml"
    config_path = write_config(tmp_path / "inventory.yaml", "sqlite:///unused.db", {"apps": source_file})
    config = load_config(config_path, registry=registry)
    for status in ("running", "stopped", "running"):
        write_inventory(source_file, 2, status=status)
        assert all(o.ok for o in sync_all(db, config, registry))
    # Lay the three syncs out in time: created at T0, both apps stopped at T0+10h, running again at T0+12h.
    start = utcnow() - timedelta(hours=20)
    with db.write_session() as session:
        changes = list(session.execute(Change.__table__.select().order_by(Change.id)))
        for change in changes:
            offset = {1: 0, 2: 10, 3: 12}[change.sync_run_id] if change.sync_run_id in (1, 2, 3) else 0
            session.execute(update(Change).where(Change.id == change.id).values(at=start + timedelta(hours=offset)))
        session.execute(update(WorkloadRow).values(first_seen_at=start))
    one = LogicalService.model_validate(
        {"name": "one", "select": [{"source": "apps", "name": "h-app-0"}], "slo": {"target": 95, "window": "1d"}}
    )
    with db.session() as session:
        state = evaluate(session, one)
    # Up 18 of the 20 hours observed (the 4 hours before the first sync are not counted).
    assert state.availability == pytest.approx(90.0, abs=0.01) and state.slo_met is False
    assert state.observed_seconds == pytest.approx(20 * 3600, abs=5)
    assert state.status == "up"


def test_bad_service_declarations_name_the_file_and_key(tmp_path: Path) -> None:
    for services, message in (
        ([{"name": "x", "select": [{}]}], "services[0].select[0]: a selector must name at least one"),
        ([{"name": "x", "select": [{"kind": "pod", "colour": "red"}]}], "services[0].select[0].colour: unknown key"),
        ([{"name": "x", "select": [{"id": "k3s/pod"}]}], "id must be SOURCE/KIND/EXTERNAL_ID"),
        ([{"name": "x", "select": [{"kind": "pod"}], "slo": {"target": 120}}], "services[0].slo.target"),
        (
            [{"name": "x", "select": [{"kind": "pod"}]}, {"name": "x", "select": [{"kind": "vm"}]}],
            "two services are named 'x'",
        ),
    ):
        with pytest.raises(ConfigError) as caught:
            build_config(
                {"services": services}, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.discover()
            )
        assert str(tmp_path / "inventory.yaml") in str(caught.value) and message in str(caught.value), str(caught.value)


def test_impact_names_the_logical_services_it_reaches(lab: SyncedLab) -> None:
    table = invoke_inventory("-c", str(lab.config_path), "impact", "docker01")
    assert table.exit_code == 0, table.stderr
    assert "Logical services it reaches: media (SLO 99.9%)" in table.stdout
    as_json = json.loads(invoke_inventory("-c", str(lab.config_path), "impact", "pihole", "-o", "json").stdout)
    assert as_json["logical_services"] == []


def test_a_member_of_a_service_with_an_slo_is_escalated_even_with_nothing_below_it(lab: SyncedLab) -> None:
    escalation = ImpactEscalation(lab.db, slo_lookup(_specs(lab)))
    runner = ToolRunner(lab.db, builtin_policy(), ToolRegistry.discover(), escalation_sources=[escalation])
    evaluation = runner.evaluate("docker.stop", "watchtower", {}, "alice")
    assert evaluation.classification.tool_class is ToolClass.DESTRUCTIVE
    assert (
        "raised to DESTRUCTIVE: its impact reaches logical service updates (SLO 99%)"
        in evaluation.classification.reasons
    )
    assert evaluation.as_row()["impact"]["workloads"] == 0
