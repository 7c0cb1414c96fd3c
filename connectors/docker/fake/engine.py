"""A loopback fake of the Docker Engine API, for the demo and for scale runs larger than a test engine holds.

It serves what the Docker connector reads: ``/_ping``, ``/version``,
``/info``, ``/containers/json`` (``all`` and the ``id`` filter honoured),
``/containers/{id}/json`` and ``/events`` (connectors/docker/fake/events.py),
each with or without the ``/v1.41`` prefix, over a unix socket or loopback
TCP, with the JSON shapes of a real engine (Docker 20.10, API 1.41). A real
engine stays the reference: tests/test_docker.py checks these shapes against one.

It can misbehave on purpose: an HTTP status for a path (``faults``), a slow
answer (``delays``), a container that is listed but gone by the time it is
inspected (``vanish``), 429/503 with Retry-After (``throttle``), a connection
closed without an answer (``drop``), and an engine that stops answering
(``freeze``: it still accepts connections, as a hung dockerd does).

    with FakeDocker(generate_containers(5000)) as engine:
        DockerConfig(name="big", url=engine.url)

Standalone (demo)::

    python -m connectors.docker.fake --containers 5000 --socket /tmp/fake-docker.sock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from connectors.docker.fake.events import EventFilter, EventLog, parse_time
from inventory.testing.serving import serve_in_background, shut_down

API_VERSION = "1.41"
SERVER_VERSION = "20.10.24+dfsg1"
_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)$")
_INSPECT = re.compile(r"^/containers/([^/]+)/json$")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_NONE_NETWORK_ID = hashlib.sha256(b"none").hexdigest()


def _fake_id(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


@dataclass
class FakeContainer:
    """One container as the engine keeps it; ``list_entry`` and ``inspect`` render the API's two views."""

    id: str
    name: str
    image: str = "inventory-test/busybox:latest"
    image_id: str = "sha256:" + _fake_id("image")
    command: list[str] = field(default_factory=lambda: ["sleep", "3600"])
    created: int = 1_790_000_000
    state: str = "created"  # created | running | paused | restarting | exited | dead
    labels: dict[str, str] = field(default_factory=dict)
    health: str | None = None  # starting | healthy | unhealthy
    restart_count: int = 0
    restart_policy: str = ""
    exit_code: int = 0
    started_at: str = _ZERO_TIME
    finished_at: str = _ZERO_TIME

    @property
    def running(self) -> bool:
        return self.state in ("running", "paused", "restarting")

    def _status_text(self) -> str:
        if self.state == "running":
            return "Up 5 minutes" + (
                f" ({'health: starting' if self.health == 'starting' else self.health})" if self.health else ""
            )
        if self.state == "exited":
            return f"Exited ({self.exit_code}) 5 minutes ago"
        return self.state.capitalize()

    def _network(self) -> dict[str, Any]:
        return {
            "IPAMConfig": None,
            "Links": None,
            "Aliases": None,
            "NetworkID": _NONE_NETWORK_ID if self.running or self.started_at != _ZERO_TIME else "",
            "EndpointID": _fake_id("endpoint", self.id, self.started_at) if self.running else "",
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "MacAddress": "",
            "DriverOpts": None,
        }

    def list_entry(self) -> dict[str, Any]:
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image,
            "ImageID": self.image_id,
            "Command": " ".join(self.command),
            "Created": self.created,
            "Ports": [],
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": self._status_text(),
            "HostConfig": {"NetworkMode": "none"},
            "NetworkSettings": {"Networks": {"none": self._network()}},
            "Mounts": [],
        }

    def inspect(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Status": self.state,
            "Running": self.running,
            "Paused": self.state == "paused",
            "Restarting": self.state == "restarting",
            "OOMKilled": False,
            "Dead": self.state == "dead",
            "Pid": 4242 if self.running else 0,
            "ExitCode": self.exit_code,
            "Error": "",
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
        }
        if self.health:
            state["Health"] = {"Status": self.health, "FailingStreak": 0, "Log": []}
        return {
            "Id": self.id,
            "Created": _iso(self.created),
            "Path": self.command[0],
            "Args": self.command[1:],
            "State": state,
            "Image": self.image_id,
            "Name": f"/{self.name}",
            "RestartCount": self.restart_count,
            "Driver": "vfs",
            "Platform": "linux",
            "HostConfig": {
                "NetworkMode": "none",
                "RestartPolicy": {"Name": self.restart_policy, "MaximumRetryCount": 0},
            },
            "Mounts": [],
            "Config": {
                "Hostname": self.id[:12],
                "Domainname": "",
                "Cmd": list(self.command),
                "Image": self.image,
                "Labels": dict(self.labels),
            },
            "NetworkSettings": {"Networks": {"none": self._network()}},
        }


@dataclass
class FakeEngineInfo:
    id: str = "FAKE:ENGI:NE00:0000:0000:0000:0000:0000:0000:0000:0000:0001"
    name: str = "fake-docker"
    cpus: int = 4
    memory: int = 8 * 1024**3
    swarm_node_addr: str | None = None  # set: the engine is the one manager of a swarm, at this address

    def swarm(self) -> dict[str, Any]:
        if self.swarm_node_addr is None:
            return {
                "NodeID": "",
                "NodeAddr": "",
                "LocalNodeState": "inactive",
                "ControlAvailable": False,
                "Error": "",
                "RemoteManagers": None,
            }
        node_id = hashlib.sha256(self.id.encode()).hexdigest()[:25]
        return {
            "NodeID": node_id,
            "NodeAddr": self.swarm_node_addr,
            "LocalNodeState": "active",
            "ControlAvailable": True,
            "Error": "",
            "RemoteManagers": [{"NodeID": node_id, "Addr": f"{self.swarm_node_addr}:2377"}],
            "Nodes": 1,
            "Managers": 1,
            "Cluster": {"ID": hashlib.sha256(f"swarm/{self.id}".encode()).hexdigest()[:25]},
        }

    def info(self, containers: Iterable[FakeContainer]) -> dict[str, Any]:
        states = [c.state for c in containers]
        return {
            "ID": self.id,
            "Containers": len(states),
            "ContainersRunning": states.count("running"),
            "ContainersPaused": states.count("paused"),
            "ContainersStopped": len(states) - states.count("running") - states.count("paused"),
            "Images": 1,
            "Driver": "vfs",
            "CgroupDriver": "cgroupfs",
            "CgroupVersion": "2",
            "KernelVersion": "6.1.0-fake",
            "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
            "OSVersion": "12",
            "OSType": "linux",
            "Architecture": "x86_64",
            "NCPU": self.cpus,
            "MemTotal": self.memory,
            "DockerRootDir": "/var/lib/docker",
            "Name": self.name,
            "Labels": [],
            "ServerVersion": SERVER_VERSION,
            "SystemTime": _system_time(),
            "Swarm": self.swarm(),
        }


def _system_time() -> str:
    """The engine's clock as /info tells it (RFC 3339 with nanoseconds)."""
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1_000_000_000)) + f".{now % 1_000_000_000:09d}Z"


def version_document() -> dict[str, Any]:
    return {
        "Platform": {"Name": ""},
        "Version": SERVER_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": "1.12",
        "GitCommit": "fake",
        "GoVersion": "go1.19.8",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.1.0-fake",
        "BuildTime": "2026-01-01T00:00:00.000000000+00:00",
    }


def generate_containers(
    count: int, *, running_every: int = 5, compose_projects: int = 10, seed: str = "fake"
) -> list[FakeContainer]:
    """``count`` containers: every ``running_every``-th running, the others created or exited; some in Compose."""
    containers = []
    for index in range(count):
        labels: dict[str, str] = {}
        if compose_projects and index % 2 == 0:
            project = f"project{index % compose_projects:02d}"
            labels = {
                "com.docker.compose.project": project,
                "com.docker.compose.service": f"svc{index % 3}",
                "com.docker.compose.container-number": str(index // (2 * compose_projects) + 1),
                "com.docker.compose.oneoff": "False",
            }
        state = "running" if index % running_every == 0 else ("exited" if index % 3 == 0 else "created")
        started = _iso(1_790_000_100 + index) if state != "created" else _ZERO_TIME
        containers.append(
            FakeContainer(
                id=_fake_id(seed, index),
                name=f"c{index:05d}",
                created=1_790_000_000 + index,
                state=state,
                labels=labels,
                health="healthy" if state == "running" and index % 10 == 0 else None,
                started_at=started,
                finished_at=_iso(1_790_000_200 + index) if state == "exited" else _ZERO_TIME,
            )
        )
    return containers


# docker-py keeps one connection pool per URL on unix sockets, so every inspect opens a new
# connection: the default listen backlog of 5 refuses them (EAGAIN) under concurrency.
_BACKLOG = 512


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = _BACKLOG

    def get_request(self) -> tuple[Any, Any]:
        request, _ = super().get_request()
        return request, ("unix", 0)  # BaseHTTPRequestHandler logs client_address[0]


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = _BACKLOG


class FakeDocker:
    """The fake engine: a container table, faults, and an HTTP server on a unix socket or loopback TCP."""

    def __init__(
        self,
        containers: Iterable[FakeContainer] = (),
        *,
        socket_path: str | os.PathLike[str] | None = None,
        engine: FakeEngineInfo | None = None,
    ) -> None:
        self.engine = engine or FakeEngineInfo()
        self.containers: dict[str, FakeContainer] = {c.id: c for c in containers}
        self.socket_path = Path(socket_path) if socket_path is not None else None
        # Path (without the version prefix) -> HTTP status to answer with instead.
        self.faults: dict[str, int] = {}
        # Path (without the version prefix) -> seconds to wait before answering (a hung engine).
        self.delays: dict[str, float] = {}
        # Container ids that are listed but answer 404 on inspect (removed in between).
        self.vanish: set[str] = set()
        # Container id -> the state inspect answers (it changed after the list was served).
        self.restated: dict[str, str] = {}
        # Path prefix -> (status, Retry-After seconds, times left): a proxy in front of the engine throttling.
        self.throttles: dict[str, list[int]] = {}
        # Path prefix -> times left to close the connection without an answer.
        self.drops: dict[str, int] = {}
        # Path prefixes that are read and never answered until the fake stops (or ``thaw``).
        self.frozen: set[str] = set()
        # The paths of the requests left unanswered by ``freeze``.
        self.hung: list[str] = []
        # The connections open now: ``stop`` closes them, as a dying engine does.
        self.connections: set[Any] = set()
        # Seconds every request waits before its answer (a slow engine, or one far away).
        self.latency = 0.0
        self._thawed = threading.Event()
        self.requests: list[str] = []
        # The event buffer /events serves; ``emit`` logs to it.
        self.events = EventLog()
        self._lock = threading.Lock()
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake engine is not running")
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        host, port = cast("tuple[str, int]", self._server.server_address)[:2]
        return f"tcp://{host}:{port}"

    def start(self) -> FakeDocker:
        handler = _handler_for(self)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)
            self._server = _UnixServer(str(self.socket_path), handler)
        else:
            self._server = _TCPServer(("127.0.0.1", 0), handler)
        self._thread = serve_in_background(self._server, "fake-docker")
        return self

    def throttle(self, prefix: str, retry_after: int, times: int, status: int = 429) -> None:
        self.throttles[prefix] = [status, retry_after, times]

    def drop(self, prefix: str, times: int = 1) -> None:
        self.drops[prefix] = times

    def freeze(self, prefix: str = "/") -> None:
        """Stop answering requests under ``prefix`` (connections are still accepted)."""
        self._thawed.clear()
        self.frozen.add(prefix)

    def thaw(self) -> None:
        self.frozen.clear()
        self._thawed.set()

    def misbehaviour(self, path: str) -> tuple[str, list[int] | None]:
        """What to do instead of answering: ("freeze" | "drop" | "throttle" | "", the throttle), counting it spent."""
        with self._lock:
            if any(path.startswith(p) for p in self.frozen):
                return "freeze", None
            for prefix, left in self.drops.items():
                if path.startswith(prefix) and left > 0:
                    self.drops[prefix] = left - 1
                    self.requests.append(path)
                    return "drop", None
            for prefix, throttle in self.throttles.items():
                if path.startswith(prefix) and throttle[2] > 0:
                    throttle[2] -= 1
                    self.requests.append(path)
                    return "throttle", throttle
        return "", None

    def emit(self, container: FakeContainer, action: str, **extra: str) -> dict[str, Any]:
        """Log a container event now (``exitCode="137"``, ``signal="9"`` ... as dockerd's attributes)."""
        return self.events.emit(
            container.id, action, name=container.name, image=container.image, labels=container.labels, **extra
        )

    def stop(self) -> None:
        self.events.close()
        self.thaw()
        if self._server is not None:
            shut_down(self._server)
            self._server = None
        with self._lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> FakeDocker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # What the handler answers: (status, JSON body).
    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(path)
            if path in self.faults:
                return self.faults[path], {"message": f"fake engine: injected failure on {path}"}
            if path == "/_ping":
                return 200, "OK"
            if path == "/version":
                return 200, version_document()
            if path == "/info":
                return 200, self.engine.info(self.containers.values())
            if path == "/services" and self.engine.swarm_node_addr is not None:
                return 200, []  # a swarm manager that runs no swarm services (its containers are plain ones)
            if path == "/containers/json":
                everything = query.get("all", ["0"])[0] in ("1", "true", "True")
                ids = json.loads(query.get("filters", ["{}"])[0]).get("id") or []
                listed = [
                    c.list_entry()
                    for c in self.containers.values()
                    if (everything or c.running) and (not ids or any(c.id.startswith(i) for i in ids))
                ]
                # The engine lists the newest first.
                return 200, sorted(listed, key=lambda c: c["Created"], reverse=True)
            match = _INSPECT.match(path)
            if match:
                wanted = match.group(1)
                exact = self.containers.get(wanted)
                found = (
                    [exact]
                    if exact
                    else [c for c in self.containers.values() if c.id.startswith(wanted) or c.name == wanted]
                )
                if len(found) != 1 or found[0].id in self.vanish:
                    return 404, {"message": f"No such container: {wanted}"}
                container = found[0]
                if container.id in self.restated:
                    container = replace(container, state=self.restated[container.id])
                return 200, container.inspect()
            return 404, {"message": "page not found"}


def _handler_for(fake: FakeDocker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"Docker/{SERVER_VERSION} (linux)"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake.connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake.connections.discard(self.connection)
            super().finish()

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            versioned = _VERSIONED.match(path)
            if versioned:
                path = versioned.group(1)
            delay = fake.delays.get(path, 0.0) + fake.latency
            if delay:
                time.sleep(delay)
            action, throttle = fake.misbehaviour(path)
            if action == "freeze":
                with fake._lock:
                    fake.hung.append(path)
                fake._thawed.wait()
                self.close_connection = True
                return
            if action == "drop":
                self.close_connection = True
                return
            retry_after = None
            if throttle is not None:
                status, retry_after = throttle[0], throttle[1]
                document: Any = {"message": "too many requests"}
            elif path == "/events" and path not in fake.faults:
                with fake._lock:
                    fake.requests.append(path)
                self._stream_events(parse_qs(parts.query))
                return
            else:
                status, document = fake.answer(path, parse_qs(parts.query))
            body = document.encode() if isinstance(document, str) else json.dumps(document).encode()
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header(
                "Content-Type", "text/plain; charset=utf-8" if isinstance(document, str) else "application/json"
            )
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream_events(self, query: dict[str, list[str]]) -> None:
            """Chunked JSON lines as events happen, ended at ``until``; a cut drops the connection mid-answer."""
            since = parse_time(query.get("since", [None])[0])
            until = parse_time(query.get("until", [None])[0])
            wanted = EventFilter.parse(query.get("filters", [None])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                for message in fake.events.follow(since, until, wanted):
                    if message is None:
                        self.close_connection = True
                        return
                    line = json.dumps(message).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:  # the client went away
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Docker Engine API on a unix socket or loopback TCP.")
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--socket", help="unix socket path (default: loopback TCP on a free port)")
    args = parser.parse_args(argv)
    fake = FakeDocker(generate_containers(args.containers), socket_path=args.socket).start()
    print(f"fake Docker engine with {args.containers} containers at {fake.url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
