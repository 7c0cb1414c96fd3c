"""A private, throw-away Docker engine for tests and benchmarks, and a busybox image to run in it.

Debian's ``docker.io`` provides ``dockerd``; started as root with the vfs
storage driver and no bridge or iptables it needs nothing from the machine and
is ready in about a second. No registry is reachable, so the image is made
here: a tarball of a root filesystem holding a static busybox (Debian's
``busybox-static``), loaded with ``docker import``. Containers run with
``network_mode="none"``.

The SDK is imported inside the functions that use it: importing this module
stays cheap.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from inventory.errors import HarnessError

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient

BUSYBOX_IMAGE = "inventory-test/busybox:latest"
_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_APPLETS = ("sh", "sleep", "true", "false", "echo", "cat", "ls")


class EngineUnavailable(HarnessError):
    """A private engine cannot run on this machine; the message says why and what to install."""


@dataclass(frozen=True)
class EngineTLS:
    """Files for the engine's TCP listener: it verifies clients against ``ca``."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class DockerEngine:
    """A running private dockerd; ``stop()`` ends it by its pid and removes its files."""

    directory: Path
    process: subprocess.Popen[bytes]
    tcp_port: int | None = None
    tls: EngineTLS | None = None
    # The dockerd command line, for ``restart``.
    command: list[str] = field(default_factory=list)
    _stopped: bool = field(default=False, repr=False)

    @property
    def socket_path(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def tcp_url(self) -> str | None:
        return None if self.tcp_port is None else f"tcp://127.0.0.1:{self.tcp_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "dockerd.log"

    def client(self, timeout: float = 30.0) -> APIClient:
        from docker import APIClient

        return APIClient(base_url=self.url, version="auto", timeout=timeout)  # type: ignore[arg-type]  # seconds as a float work; the stubs say int

    def _kill_containers(self) -> None:
        # Busybox as PID 1 ignores SIGTERM: a graceful shutdown would wait 10 s per container.
        try:
            client = self.client(timeout=5)
            for container in client.containers(filters={"status": "running"}):
                client.kill(container["Id"])
        except Exception:  # best effort: the SIGTERM below still stops the engine, only slower
            pass

    def restart(self, timeout: float = 30.0) -> None:
        """Stop dockerd as a host shutdown does (its containers stop with it) and start it again on the same data.

        Containers with a restart policy start again; the engine's event buffer starts empty.
        """
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = _launch(self.command, self.log_path, append=True)
        _wait_until_ready(self, timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self._kill_containers()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def find_busybox() -> Path | None:
    """A statically linked busybox: a dynamic one would not run in an empty root filesystem."""
    for candidate in _BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file() and _is_static_elf(path):
            return path
    return None


def _is_static_elf(path: Path) -> bool:
    # A dynamic ELF names its loader (PT_INTERP) near the start of the file.
    with path.open("rb") as binary:
        head = binary.read(4096)
    return head[:4] == b"\x7fELF" and b"ld-linux" not in head and b"ld-musl" not in head


def engine_problem() -> str | None:
    """None when a private engine can start here, else what is missing."""
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "a private dockerd needs root"
    if find_busybox() is None:
        return "no static busybox found (apt-get install busybox-static)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux prctl)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def start_engine(*, tls: EngineTLS | None = None, timeout: float = 30.0) -> DockerEngine:
    """Start a private dockerd in a new temporary directory and wait until it answers."""
    problem = engine_problem()
    if problem:
        raise EngineUnavailable(problem)
    # Unix socket paths are limited to ~108 bytes: keep the directory short.
    directory = Path(tempfile.mkdtemp(prefix="inv-dockerd-", dir="/tmp"))
    command = [
        "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--storage-driver=vfs",
        "--shutdown-timeout=2",
        f"--host=unix://{directory / 'docker.sock'}",
        f"--data-root={directory / 'root'}",
        f"--exec-root={directory / 'exec'}",
        f"--pidfile={directory / 'docker.pid'}",
    ]
    port = None
    if tls is not None:
        port = _free_port()
        command += [
            f"--host=tcp://127.0.0.1:{port}",
            "--tlsverify",
            f"--tlscacert={tls.ca}",
            f"--tlscert={tls.cert}",
            f"--tlskey={tls.key}",
        ]
    process = _launch(command, directory / "dockerd.log")
    engine = DockerEngine(directory=directory, process=process, tcp_port=port, tls=tls, command=command)
    try:
        _wait_until_ready(engine, timeout)
    except BaseException:
        engine.stop()
        raise
    return engine


def _launch(command: list[str], log_path: Path, *, append: bool = False) -> subprocess.Popen[bytes]:
    log = log_path.open("ab" if append else "wb")
    try:
        # Its own session keeps a Ctrl-C for pytest away from it (the fixture stops it in order);
        # the parent-death signal stops it when pytest is killed before it can.
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )
    finally:
        log.close()


def _wait_until_ready(engine: DockerEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            tail = engine.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise EngineUnavailable(f"dockerd exited with status {engine.process.returncode}: " + " | ".join(tail))
        if engine.socket_path.exists() and _pings(engine.socket_path):
            return
        time.sleep(0.1)
    raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f} s (log: {engine.log_path})")


def _pings(socket_path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(socket_path))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = conn.recv(64).split(b"\r\n", 1)[0]
            return status_line.split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


def busybox_rootfs_tar() -> bytes:
    """A tarball of a root filesystem: /bin/busybox plus applet links, and /tmp."""
    busybox = find_busybox()
    if busybox is None:
        raise EngineUnavailable("no static busybox found (apt-get install busybox-static)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "tmp", "etc"):
            entry = tarfile.TarInfo(name)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(entry)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def make_busybox_image(client: APIClient, tag: str = BUSYBOX_IMAGE) -> str:
    """Import the busybox root filesystem as an image; returns the image id."""
    repository, _, version = tag.rpartition(":")
    client.import_image_from_data(busybox_rootfs_tar(), repository=repository, tag=version, changes=['CMD ["/bin/sh"]'])
    return str(client.inspect_image(tag)["Id"])
