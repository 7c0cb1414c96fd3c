"""Notifications: payloads of each target type, events, secrets, and failures that never fail a sync (respx)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
import respx
from sync_support import write_config, write_inventory

from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.loop import SyncLoop
from inventory.notify import Notification, Notifier, NotifySettings
from inventory.outcome import SourceOutcome
from inventory.redact import redact_text
from inventory.storage.database import open_database

WEBHOOK = "https://hooks.example.net/inventory"
SLACK = "https://hooks.slack.com/services/T000/B000/s3cretslackpath"
DISCORD = "https://discord.com/api/webhooks/123/s3cretdiscordtoken"
NTFY = "https://ntfy.example.net"

FAILED = Notification(
    "source_failed", "inventory: source lab failed", "source 'lab': HTTP 500", source="lab", details={"type": "static"}
)


def settings(*targets: Mapping[str, object], **extra: object) -> NotifySettings:
    return NotifySettings.model_validate({"targets": list(targets), **extra})


@respx.mock
def test_webhook_posts_one_json_document() -> None:
    route = respx.post(WEBHOOK).mock(return_value=httpx.Response(204))
    assert Notifier(settings({"type": "webhook", "url": WEBHOOK, "headers": {"X-Team": "lab"}})).send(FAILED) == 1
    request = route.calls.last.request
    body = json.loads(request.content)
    assert {k: body[k] for k in ("event", "title", "message", "source", "details")} == {
        "event": "source_failed",
        "title": "inventory: source lab failed",
        "message": "source 'lab': HTTP 500",
        "source": "lab",
        "details": {"type": "static"},
    }
    assert body["at"].endswith("+00:00")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-team"] == "lab"


@respx.mock
def test_ntfy_publishes_text_with_title_priority_and_token() -> None:
    route = respx.post(f"{NTFY}/homelab").mock(return_value=httpx.Response(200, json={"id": "x"}))
    target = {"type": "ntfy", "server": NTFY, "topic": "homelab", "token": "tk_s3cretntfy"}
    assert Notifier(settings(target)).send(FAILED) == 1
    request = route.calls.last.request
    assert request.content == b"source 'lab': HTTP 500"
    assert request.headers["title"] == "inventory: source lab failed"
    assert request.headers["priority"] == "high"
    assert request.headers["tags"] == "warning"
    assert request.headers["authorization"] == "Bearer tk_s3cretntfy"


@respx.mock
def test_slack_and_discord_payloads() -> None:
    slack = respx.post(SLACK).mock(return_value=httpx.Response(200, text="ok"))
    discord = respx.post(DISCORD).mock(return_value=httpx.Response(204))
    notifier = Notifier(settings({"type": "slack", "url": SLACK}, {"type": "discord", "url": DISCORD}))
    assert notifier.send(FAILED) == 2
    assert json.loads(slack.calls.last.request.content) == {
        "text": "*inventory: source lab failed*\nsource 'lab': HTTP 500"
    }
    assert json.loads(discord.calls.last.request.content) == {
        "content": "**inventory: source lab failed**\nsource 'lab': HTTP 500"
    }


@respx.mock
def test_each_target_gets_only_its_events() -> None:
    everything = respx.post(WEBHOOK).mock(return_value=httpx.Response(200))
    failures_only = respx.post(SLACK).mock(return_value=httpx.Response(200))
    notifier = Notifier(
        settings({"type": "webhook", "url": WEBHOOK}, {"type": "slack", "url": SLACK, "events": ["source_failed"]})
    )
    notifier.send(Notification("objects_removed", "t", "m"))
    notifier.destructive_tool(
        tool="proxmox.vm.delete", target="pve/100", actor="alice", stage="requested", decision="require_approval"
    )
    notifier.send(FAILED)
    assert [json.loads(c.request.content)["event"] for c in everything.calls] == [
        "objects_removed",
        "destructive_tool",
        "source_failed",
    ]
    assert len(failures_only.calls) == 1
    destructive = json.loads(everything.calls[1].request.content)
    assert destructive["message"] == "alice requested proxmox.vm.delete on pve/100 (decision: require_approval)"


@respx.mock
def test_a_server_error_is_retried_once_then_logged_without_the_secret_url(caplog: pytest.LogCaptureFixture) -> None:
    route = respx.post(SLACK).mock(side_effect=[httpx.Response(500), httpx.Response(503)])
    with caplog.at_level(logging.WARNING, logger="inventory.notify"):
        assert Notifier(settings({"type": "slack", "url": SLACK})).send(FAILED) == 0
    assert len(route.calls) == 2
    assert "notification 'source_failed' to the slack target at hooks.slack.com failed: HTTP 503" in caplog.text
    assert "s3cretslackpath" not in caplog.text


@respx.mock
def test_a_retry_can_succeed_and_a_refusal_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    flaky = respx.post(WEBHOOK).mock(side_effect=[httpx.ConnectError("refused"), httpx.Response(200)])
    refused = respx.post(SLACK).mock(return_value=httpx.Response(404))
    notifier = Notifier(settings({"type": "webhook", "url": WEBHOOK}, {"type": "slack", "url": SLACK}))
    with caplog.at_level(logging.WARNING, logger="inventory.notify"):
        assert notifier.send(FAILED) == 1
    assert len(flaky.calls) == 2
    assert len(refused.calls) == 1
    assert "HTTP 404" in caplog.text


def test_config_reads_target_secrets_from_files_and_masks_them(tmp_path: Path) -> None:
    (tmp_path / "slack_url").write_text(SLACK + "\n")
    (tmp_path / "ntfy_token").write_text("tk_fromfile123\n")
    raw = {
        "notify": {
            "timeout": "2s",
            "targets": [
                {"type": "slack", "url_file": "slack_url"},
                {"type": "ntfy", "topic": "lab", "token_file": "ntfy_token"},
            ],
        }
    }
    config = build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.of())
    slack, ntfy = config.notify.targets
    assert slack.url is not None and slack.url.get_secret_value() == SLACK
    assert ntfy.token is not None and ntfy.token.get_secret_value() == "tk_fromfile123"
    assert config.notify.timeout == 2.0
    assert "s3cretslackpath" not in repr(config.notify)
    assert redact_text(f"posting to {SLACK} with tk_fromfile123") == "posting to *** with ***"


def test_an_incomplete_target_is_a_config_error() -> None:
    from inventory.errors import ConfigError

    with pytest.raises(ConfigError, match=r"notify\.targets\[0\]: a slack target needs url"):
        build_config({"notify": {"targets": [{"type": "slack"}]}}, registry=ConnectorRegistry.of())


@respx.mock
def test_the_loop_notifies_failures_and_removals_and_a_dead_target_never_stops_it(
    tmp_path: Path, sqlite_url: str
) -> None:
    hook = respx.post(WEBHOOK).mock(return_value=httpx.Response(200))
    dead = respx.post(SLACK).mock(side_effect=httpx.ConnectError("refused"))
    lab = write_inventory(tmp_path / "lab.yaml", 3)
    config_path = write_config(
        tmp_path / "inventory.yaml", sqlite_url, {"lab": lab, "broken": tmp_path / "missing.yaml"}, interval="10s"
    )
    registry = ConnectorRegistry.discover()
    from inventory.config import load_config

    config = load_config(config_path, registry=registry)
    notifier = Notifier(settings({"type": "webhook", "url": WEBHOOK}, {"type": "slack", "url": SLACK}, retries=0))
    db = open_database(sqlite_url, migrate=True)
    clock = [0.0]

    def change_lab_after_its_sync(outcome: SourceOutcome) -> None:
        if outcome.source == "lab":
            write_inventory(lab, 1)

    try:
        loop = SyncLoop(
            db,
            config,
            registry,
            notifier=notifier,
            coordinate=False,
            names=["lab", "broken"],
            clock=lambda: clock[0],
            sleep=lambda s: clock.__setitem__(0, clock[0] + s),
            on_outcome=change_lab_after_its_sync,
        )
        loop.run(max_cycles=2)
    finally:
        db.dispose()
        notifier.close()
    events = [json.loads(c.request.content) for c in hook.calls]
    assert [(e["event"], e["source"]) for e in events] == [("source_failed", "broken"), ("objects_removed", "lab")]
    assert events[1]["details"]["removed"] == 4
    assert len(dead.calls) == 2  # tried, failed, logged, and the loop went on
    assert [s.syncs for s in loop.schedule] == [2, 1]
