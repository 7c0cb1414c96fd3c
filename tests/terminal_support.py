"""Run the CLI on a real pseudo-terminal: what a person at a terminal sees, prompts answered as they would."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path


def run_on_terminal(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    columns: int = 80,
    answers: dict[bytes, bytes] | None = None,
    timeout: float = 30,
) -> str:
    """``inventory ARGS`` with a pty as stdin, stdout and stderr; each prompt in ``answers`` gets its reply once."""
    pending = dict(answers or {})
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "inventory", *args], stdin=follower, stdout=follower, stderr=follower, cwd=cwd, env=env
    )
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            process.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the command ended
            break
        if not chunk:
            break
        seen += chunk
        for prompt in [p for p in pending if p in seen]:
            os.write(leader, pending.pop(prompt) + b"\n")
    process.wait(timeout=timeout)
    os.close(leader)
    return seen.decode(errors="replace")
