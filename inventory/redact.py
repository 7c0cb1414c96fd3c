"""Keep secrets out of log lines, error messages, audit entries and the database.

Two nets: every secret value loaded from config is registered and replaced
wherever it appears in text, and well-known secret shapes (``user:pass@`` in
URLs, bearer tokens, ``key=value`` pairs with secret-sounding keys) are masked
even when nobody registered them. ``key: value`` is not such a shape: it is how
every error names its config key ("sources[0].token_secret: environment variable
X is not set"), and masking the word after it ate ordinary words.

Structured values (tool arguments, audit details) are masked by key name, at any
depth: a name is secret when one of its words (split at ``_ - .`` and camelCase)
is in SECRET_WORDS, or it contains one of the unmistakable SECRET_KEY_PATTERN stems.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import Any

MASK = "***"

SECRET_KEY_PATTERN = re.compile(
    r"(pass(word|wd|phrase)|secret|token|authorization|api[_-]?key|private[_-]?key|ssh[_-]?key"
    r"|credential|cookie|ticket)",
    re.IGNORECASE,
)
SECRET_WORDS = frozenset(
    {
        "key",
        "keys",
        "pwd",
        "pass",
        "passwd",
        "password",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "creds",
        "private",
        "cookie",
        "cookies",
        "session",
        "sessionid",
        "apikey",
        "sshkey",
        "otp",
        "pin",
        "ticket",
        "signature",
        "sig",
        "bearer",
        "jwt",
    }
)
_WORD_SPLIT = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """Whether a key or argument name says its value is a secret (``ssh_key``, ``dbPwd``, ``session-id``)."""
    if SECRET_KEY_PATTERN.search(name):
        return True
    return any(word.lower() in SECRET_WORDS for word in _WORD_SPLIT.split(name) if word)


# Every pattern runs in time linear in the text, whatever the text (a request path is the attacker's):
# each starts at a literal (``://``, ``bearer``, ``PVEAPIToken=``, a secret word) rather than at any
# word, and every stretch before the masked value is bounded, so no position is scanned more than a
# bounded number of times. What is kept unmasked (the scheme, a key's prefix) is simply not matched.
_PART = 256  # longest user name or token id looked at before the value
# Longest key after its secret word ("password_of_the_backup_job="), read without backtracking (possessive).
_KEY_SUFFIX = 64
_VALUE_PATTERNS = [
    # scheme://user:password@host
    (
        re.compile(
            rf"(?P<head>(?<=[a-z0-9+.-])://[^/\s:@]{{1,{_PART}}}:)[^@\s/]{{1,{_PART}}}(?P<tail>@)", re.IGNORECASE
        ),
        r"\g<head>" + MASK + r"\g<tail>",
    ),
    # Authorization: Bearer xxx / PVEAPIToken=user@realm!id=uuid
    (re.compile(r"(?P<head>\bbearer\s{1,16})[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\g<head>" + MASK),
    (re.compile(rf"(?P<head>PVEAPIToken=[^=\s]{{1,{_PART}}}=)[^\s,;\"']+", re.IGNORECASE), r"\g<head>" + MASK),
    # token=..., db_password=... in free text and query strings (not "key: message", see above)
    (
        re.compile(
            rf"(?P<head>(?:password|passwd|secret|token|api[_-]?key)[\w-]{{0,{_KEY_SUFFIX}}}+\s{{0,16}}=\s{{0,16}}[\"']?)"
            r"[^\s\"',;&]+",
            re.IGNORECASE,
        ),
        r"\g<head>" + MASK,
    ),
]

_known: set[str] = set()
_lock = threading.Lock()
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it shows up later."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _known.add(value)


def redact_text(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def error_reason(exc: BaseException) -> str:
    """One line of what an error says (a database driver's own error for a SQLAlchemy one), secrets masked."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return redact_text(lines[0] if lines else type(orig).__name__)


def redact_value(value: Any) -> Any:
    """Redact a JSON-like structure at any depth: by key name, then by value shape."""
    if isinstance(value, Mapping):
        return {
            key: (MASK if isinstance(key, str) and is_secret_name(key) and val not in (None, "") else redact_value(val))
            for key, val in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact_value(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """Installed on the root handlers so that no log line carries a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
