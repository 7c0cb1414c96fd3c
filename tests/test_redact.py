"""Secrets never reach a log line or an error message."""

from __future__ import annotations

import logging
import time

import pytest

from inventory.redact import MASK, RedactingFilter, redact_text, redact_value, register_secret
from inventory.storage.database import Database


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://inv:hunter2@db.lan/inv", f"postgresql://inv:{MASK}@db.lan/inv"),
        ("Authorization: Bearer eyJhbGciOi.abc.def", f"Authorization: Bearer {MASK}"),
        ("PVEAPIToken=inv@pve!ro=1234-5678", f"PVEAPIToken={MASK}"),
        ("login failed: password=swordfish user=bob", f"login failed: password={MASK} user=bob"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_registered_secret_is_masked_anywhere_and_at_any_depth() -> None:
    register_secret("canary-7f3a9c")
    assert redact_text("error talking to api with canary-7f3a9c inside") == f"error talking to api with {MASK} inside"
    value = {"args": [{"nested": {"api_token": "x", "note": "uses canary-7f3a9c"}}], "count": 3}
    assert redact_value(value) == {"args": [{"nested": {"api_token": MASK, "note": f"uses {MASK}"}}], "count": 3}


def test_log_filter_redacts_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("canary-log-5521")
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter())
    try:
        with caplog.at_level(logging.INFO, logger="test.redact"):
            logger.info("connecting with %s", "canary-log-5521")
            try:
                raise RuntimeError("auth failed for canary-log-5521")
            except RuntimeError:
                logger.exception("boom")
    finally:
        logger.filters.clear()
    assert "canary-log-5521" not in caplog.text
    assert caplog.records[0].getMessage() == f"connecting with {MASK}"


@pytest.mark.parametrize(
    "name",
    [
        "key",
        "pwd",
        "auth",
        "ssh_key",
        "passphrase",
        "credential",
        "private",
        "cookie",
        "session",
        "dbPwd",
        "x-auth-token",
        "sessionId",
        "private_key",
    ],
)
def test_secret_argument_names_are_masked_at_any_depth(name: str) -> None:
    value = {"outer": [{"inner": {name: "s3cr3t-value", "replicas": 3, "namespace": "web"}}]}
    assert redact_value(value) == {"outer": [{"inner": {name: MASK, "replicas": 3, "namespace": "web"}}]}


@pytest.mark.parametrize(
    "message",
    [
        "inventory.yaml: sources[0].tokn_secret: unknown key",
        "inventory.yaml: sources[0].token_secret: String should have at least 1 character",
        "inventory.yaml: sources[0].token_secret: environment variable PVE_SECRET is not set",
        "inventory.yaml: sources[0].token_secret_file: cannot read secret file /etc/x/secret: No such file or directory",
        "keyboard layout: monkey see, author writes; signal handler ok",
    ],
)
def test_ordinary_words_are_never_masked(message: str) -> None:
    assert redact_text(message) == message


def test_a_config_error_keeps_its_words() -> None:
    from inventory.config import build_config
    from inventory.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        build_config({"notify": {"targets": [{"type": "ntfy", "topic": "t", "token": "${ALSO_NOT_SET}"}]}})
    assert str(info.value) == "<config>: notify.targets[0].token: environment variable ALSO_NOT_SET is not set"
    assert redact_text(str(info.value)) == str(info.value)


def test_no_library_logs_the_ntfy_topic(caplog: pytest.LogCaptureFixture) -> None:
    import httpx
    import respx

    from inventory.notify import Notifier, NotifySettings

    topic = "homelab-6c1f0e2a-private"
    caplog.set_level(logging.DEBUG)
    with respx.mock() as mock:
        route = mock.post(f"https://ntfy.example/{topic}").mock(return_value=httpx.Response(200))
        notifier = Notifier(
            NotifySettings.model_validate(
                {"targets": [{"type": "ntfy", "server": "https://ntfy.example", "topic": topic}]}
            )
        )
        notifier.destructive_tool(
            tool="docker.remove", target="workload:x", actor="alice", stage="run", decision="allow", outcome="success"
        )
        notifier.close()
    assert route.called
    assert topic not in caplog.text


def test_secret_arguments_never_reach_the_audit_log(db: Database) -> None:
    from inventory.audit.log import AuditFilter, AuditRecord, append, list_entries

    arguments = {"key": "k-41b7", "pwd": "p-41b7", "auth": "a-41b7", "options": [{"ssh_key": "s-41b7", "timeout": 5}]}
    append(db, AuditRecord(event="tool_call", actor="alice", outcome="success", tool="x.y", arguments=arguments))
    with db.session() as session:
        (entry,) = list_entries(session, AuditFilter())
    assert entry["arguments"] == {"key": MASK, "pwd": MASK, "auth": MASK, "options": [{"ssh_key": MASK, "timeout": 5}]}


def test_control_and_escape_characters_in_names_are_neutralised_in_tables() -> None:
    import io

    from inventory.render import render_rows

    out = io.StringIO()
    rows = [{"name": "web\x1b[2J\x1b]0;pwned\x07", "kind": "vm\r\u202eevil", "note": "[red]markup[/red]"}]
    render_rows(rows, "table", ("name", "kind", "note"), out=out)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text and "\u202e" not in text
    assert "web\\x1b[2J" in text and "[red]markup[/red]" in text


# Shapes an attacker can put in a request path or a tool argument: each made every old pattern quadratic
# (15,000 characters of "a-" cost seconds; 1 MB would have cost hours).
HOSTILE_SHAPES = {
    "word": "a",
    "colons": "a:",
    "at signs and slashes": "/a@/",
    "dashed words": "a-",
    "scheme then userinfo": "a://a:b",
    "secret words": "token",
}
MEGABYTE = 1_000_000


def _redaction_seconds(text: str, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        redact_text(text)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", list(HOSTILE_SHAPES.values()), ids=list(HOSTILE_SHAPES))
def test_hostile_megabyte_is_redacted_in_linear_time(unit: str) -> None:
    text = unit * (MEGABYTE // len(unit))
    # About 0.2 s here; the quadratic patterns took hours on this shape. Generous: a loaded machine must not fail it.
    large = _redaction_seconds(text)
    assert large < 20
    small = _redaction_seconds(text[: len(text) // 10], repeat=3)
    # Ten times the text: about ten times the time (quadratic would be a hundred).
    assert large / max(small, 1e-4) < 40


def test_a_url_with_long_userinfo_is_still_masked_and_long_lines_without_a_match_are_unchanged() -> None:
    assert redact_text("https://" + "u" * 200 + ":" + "p" * 200 + "@h/x") == "https://" + "u" * 200 + f":{MASK}@h/x"
    assert (
        redact_text("db_password_of_the_backup_job = 's3cret' next") == f"db_password_of_the_backup_job = '{MASK}' next"
    )
    line = "x" * MEGABYTE
    assert redact_text(line) == line
