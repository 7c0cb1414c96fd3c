"""Running a fake API server on a background thread, and stopping it, the same way for every fake."""

from __future__ import annotations

import socketserver
import threading


def serve_in_background(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve until ``shut_down``; a short poll interval keeps shutdown quick between tests."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return thread


def shut_down(server: socketserver.BaseServer) -> None:
    server.shutdown()
    server.server_close()
