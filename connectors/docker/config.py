"""The configuration of a Docker source, and the local engine offered when there is no config at all."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inventory.connector import ConfigPath, Duration, SourceConfig

TYPE_NAME = "docker"
DEFAULT_SOCKET = "/var/run/docker.sock"
_SCHEMES = ("unix", "tcp", "ssh")


def default_docker_url() -> str:
    """Where the docker CLI looks first: DOCKER_HOST, else the local socket."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


class DockerTLS(BaseModel):
    """Client TLS for ``tcp://`` endpoints, as ``docker --tlsverify --tlscacert ... --tlscert ... --tlskey ...``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: ConfigPath | None = None
    cert: ConfigPath | None = None
    key: ConfigPath | None = None
    # False accepts any server certificate (docker --tls without --tlsverify).
    verify: bool = True

    @model_validator(mode="after")
    def _cert_with_key(self) -> DockerTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("give both cert and key, or neither")
        return self


class DockerConfig(SourceConfig):
    type: str = TYPE_NAME
    url: str = Field(default_factory=default_docker_url)
    tls: DockerTLS | None = None
    # Seconds allowed for each API call.
    timeout: Duration = Field(default=10.0, gt=0)
    # Container inspects in flight at once.
    concurrency: int = Field(default=8, ge=1, le=64)
    # ssh:// only. "openssh": the system ssh, as the docker CLI does (~/.ssh/config, agent and
    # known_hosts apply), but docker-py starts one ssh process per API call: give the host
    # ControlMaster/ControlPersist in ~/.ssh/config. "paramiko": one SSH connection for all
    # calls; reads Hostname, User, IdentityFile and ProxyCommand of ~/.ssh/config (not Port:
    # docker-py makes it 22 unless the URL names one), and the host must be in known_hosts.
    ssh_client: Literal["openssh", "paramiko"] = "openssh"
    # False: the list call only (one call for any number of containers), without health,
    # restart count, exit code and start times of containers that ran.
    inspect: bool = True

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in _SCHEMES:
            raise ValueError(f"must start with {', '.join(s + '://' for s in _SCHEMES)} (got {value!r})")
        if scheme != "unix" and not urlsplit(value).hostname:
            raise ValueError(f"names no host: {value!r}")
        return value

    @model_validator(mode="after")
    def _tls_needs_tcp(self) -> DockerConfig:
        if self.tls is not None and urlsplit(self.url).scheme != "tcp":
            raise ValueError("tls applies to tcp:// endpoints only")
        return self


def default_local_source(name: str = "local", timeout: float = 1.0) -> DockerConfig | None:
    """The source offered when there is no config at all: a reachable DOCKER_HOST or local socket, else None.

    Cheap (a socket connect, no SDK import). An ``ssh://`` DOCKER_HOST is offered
    without a probe: reaching it means running ssh, which a CLI start must not do.
    DOCKER_TLS_VERIFY / DOCKER_CERT_PATH are honoured as the docker CLI does.
    """
    url = default_docker_url()
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        return None
    if parts.scheme == "unix" and not _reachable_unix(parts.path, timeout):
        return None
    if parts.scheme == "tcp" and not _reachable_tcp(parts.hostname or "", parts.port or 2375, timeout):
        return None
    tls = None
    if parts.scheme == "tcp" and os.environ.get("DOCKER_TLS_VERIFY"):
        cert_dir = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
        tls = DockerTLS(ca=cert_dir / "ca.pem", cert=cert_dir / "cert.pem", key=cert_dir / "key.pem")
    return DockerConfig(name=name, url=url, tls=tls)


def _reachable_unix(path: str, timeout: float) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
        return True
    except OSError:
        return False


def _reachable_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
