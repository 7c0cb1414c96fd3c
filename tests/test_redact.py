"""Secrets never reach a log line or an error message."""

from __future__ import annotations

import logging

import pytest

from inventory.redact import MASK, RedactingFilter, redact_text, redact_value, register_secret


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
