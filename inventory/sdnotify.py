"""systemd's readiness protocol (sd_notify) without libsystemd: one datagram to $NOTIFY_SOCKET.

The loop says READY=1 once it serves (schema checked, metrics listening) and
STOPPING=1 when a signal asked it to stop, so that `Type=notify` units order
and report it truthfully. Outside systemd (no NOTIFY_SOCKET) it does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

NOTIFY_ENV = "NOTIFY_SOCKET"


def sd_notify(*assignments: str) -> bool:
    """Send ``KEY=VALUE`` lines to the service manager; True when a manager was told."""
    address = os.environ.get(NOTIFY_ENV)
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(assignments).encode())
    except OSError as exc:  # a notification is never worth stopping the service for
        log.warning("cannot notify systemd at %s: %s", os.environ.get(NOTIFY_ENV), exc.strerror or exc)
        return False
    return True
