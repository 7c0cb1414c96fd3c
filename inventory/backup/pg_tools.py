"""PostgreSQL's own pg_dump / pg_restore: found, and run without the password ever on a command line.

The tools are looked for in the versioned directory matching the server's major version
(Debian's /usr/lib/postgresql/N/bin, RHEL's /usr/pgsql-N/bin), then on PATH (Debian's
/usr/bin/pg_dump is a wrapper that picks a version itself), then in the newest versioned
directory. The URL's password goes to the tool in a temporary 0600 passfile (PGPASSFILE);
the command line names host, port, user and database only.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from inventory.errors import StorageError, UsageError
from inventory.redact import redact_text
from inventory.storage.database import ANSWER_TIMEOUT_PARAMETER

# Where PostgreSQL installs its programs, by version (the `*` is the major version).
PG_INSTALL_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin")
_VERSION = re.compile(r"(\d+)(?:\.\d+)?")


def _versioned_dirs() -> list[tuple[int, Path]]:
    found = []
    for pattern in PG_INSTALL_DIRS:
        star = pattern.index("*")
        for directory in glob.glob(pattern):
            match = _VERSION.match(directory[star:])
            if match:
                found.append((int(match.group(1)), Path(directory)))
    return sorted(found, reverse=True)


def find_tool(name: str, server_major: int | None = None) -> Path:
    """The program ``name`` (pg_dump, pg_restore) fit for a server of ``server_major``, or UsageError naming it."""
    versioned = [(major, directory / name) for major, directory in _versioned_dirs() if (directory / name).is_file()]
    matching = [path for major, path in versioned if major == server_major]
    on_path = shutil.which(name)
    for candidate in (*matching, on_path, *(path for _major, path in versioned)):
        if candidate:
            return Path(candidate)
    looked = ", ".join(("PATH", *PG_INSTALL_DIRS))
    package = f"postgresql-client-{server_major}" if server_major else "postgresql-client"
    raise UsageError(
        f"{name} not found (looked in {looked}): PostgreSQL backups use PostgreSQL's own tools; "
        f"install them (e.g. apt install {package}) or put them on PATH"
    )


def tool_url(url: str) -> tuple[str, str | None]:
    """The libpq URI the tools connect with (no password, no SQLAlchemy driver or our own parameters), and the
    password to hand over separately."""
    parsed = make_url(url)
    password = parsed.password
    # URL.set() leaves a password it is given None for: build the URL afresh without one.
    plain = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query={k: v for k, v in parsed.query.items() if k != ANSWER_TIMEOUT_PARAMETER},
    )
    return plain.render_as_string(hide_password=False), (str(password) if password is not None else None)


@contextmanager
def tool_environment(password: str | None) -> Iterator[dict[str, str]]:
    """The environment of a tool: a 0600 passfile holding the password for as long as the block runs."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    if password is None:
        yield env
        return
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd, name = tempfile.mkstemp(prefix="inventory-pgpass-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as passfile:
            passfile.write(f"*:*:*:*:{escaped}\n")
        env["PGPASSFILE"] = name
        yield env
    finally:
        Path(name).unlink(missing_ok=True)


def run_tool(args: Sequence[str], env: dict[str, str], *, what: str, secret: str | None) -> None:
    """Run one tool to the end; its complaint (password-free) becomes a StorageError."""
    try:
        completed = subprocess.run(list(args), env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise StorageError(f"{what}: cannot run {args[0]}: {exc.strerror}") from None
    if completed.returncode != 0:
        complaint = completed.stderr.strip() or f"exit status {completed.returncode}"
        if secret:
            complaint = complaint.replace(secret, "***")
        raise StorageError(f"{what}: {Path(args[0]).name} failed: {redact_text(complaint)}")
