"""The Docker connector against a real Docker engine (a private dockerd), and against the loopback fake.

The session starts its own dockerd in a temporary directory (unix socket plus a
TCP listener with mutual TLS) and a busybox image made from Debian's
busybox-static; it stops the engine by its pid at the end. Where dockerd cannot
start, these tests skip with the reason on a laptop and fail under CI (CI=true).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from connector_contract import ConnectorContract, SourceObject
from docker import types as docker_types
from docker_engine_support import engine_client
from sqlalchemy import select

from connectors.docker.config import DockerConfig, DockerTLS, default_local_source
from connectors.docker.connector import DockerConnector
from connectors.docker.fake import FakeContainer, FakeDocker, generate_containers
from connectors.docker.records import (
    COMPOSE_PROJECT_KIND,
    COMPOSE_SERVICE_KIND,
    CONTAINER_KIND,
    HOST_KIND,
    INSPECTED_FIELDS,
    SWARM_SERVICE_KIND,
    engine_host,
)
from inventory.config import build_config
from inventory.connector import ConnectorRegistry
from inventory.errors import ConfigError, SourceError
from inventory.records import Ref, Snapshot
from inventory.schema import canonical_fields
from inventory.storage.database import Database
from inventory.storage.models import Change, HostRow, ServiceRow, Source, WorkloadRow
from inventory.sync import sync_source
from inventory.testing.docker_engine import (
    BUSYBOX_IMAGE,
    DockerEngine,
    EngineTLS,
    EngineUnavailable,
    make_busybox_image,
    start_engine,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.docker


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI needs a private Docker engine: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (trustme signs both for either use)."""
    import trustme

    directory = tmp_path_factory.mktemp("docker-tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("inventory-client")
    files = {
        "ca": directory / "ca.pem",
        "server_cert": directory / "server-cert.pem",
        "server_key": directory / "server-key.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
        "other_ca": directory / "other-ca.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server.private_key_pem.write_to_path(str(files["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    trustme.CA().cert_pem.write_to_path(str(files["other_ca"]))
    return files


def _start(tls: EngineTLS | None = None) -> DockerEngine:
    try:
        engine = start_engine(tls=tls)
    except EngineUnavailable as exc:
        _unavailable(str(exc))
    try:
        make_busybox_image(engine.client())
    except Exception:
        engine.stop()
        raise
    return engine


@pytest.fixture(scope="session")
def engine(tls_files: dict[str, Path]) -> Iterator[DockerEngine]:
    """One private dockerd for the session, on a unix socket and on TCP with mutual TLS."""
    started = _start(EngineTLS(ca=tls_files["ca"], cert=tls_files["server_cert"], key=tls_files["server_key"]))
    try:
        yield started
    finally:
        started.stop()


Run = Callable[..., str]


@pytest.fixture
def run(engine: DockerEngine) -> Iterator[Run]:
    """Create (and by default start) a busybox container; every container is removed after the test."""
    with engine_client(engine) as client:

        def create(
            name: str | None = None,
            command: str = "sleep 600",
            *,
            start: bool = True,
            labels: dict[str, str] | None = None,
            network: str = "none",
            binds: dict[str, Mapping[str, str]] | None = None,
            restart_policy: dict[str, str] | None = None,
            **options: Any,
        ) -> str:
            container = client.create_container(
                BUSYBOX_IMAGE,
                command,
                name=name,
                labels=labels or {},
                stop_signal="SIGKILL",
                host_config=client.create_host_config(network_mode=network, binds=binds, restart_policy=restart_policy),
                **options,
            )
            if start:
                client.start(container["Id"])
            return str(container["Id"])

        yield create


def private_bridge(client: Any, name: str) -> str:
    """A user-defined bridge network on a random 10.x.y.0/24; returns "10.x.y.".

    The bridge is a real interface on this machine (no iptables rules are made), and other
    test sessions may run engines beside this one: a random subnet, retried on overlap.
    """
    import docker.errors

    for _ in range(10):
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
        pool = docker_types.IPAMPool(subnet=f"{prefix}0/24", gateway=f"{prefix}1")
        try:
            client.create_network(name, driver="bridge", ipam=docker_types.IPAMConfig(pool_configs=[pool]))
            return prefix
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc):
                raise
    raise AssertionError("no free 10.x.y.0/24 subnet found for a test bridge")


def collect(url: str, name: str = "engine", **options: Any) -> Snapshot:
    return DockerConnector(DockerConfig(name=name, url=url, **options)).collect()


def workloads_by_id(snapshot: Snapshot) -> dict[str, Any]:
    return {w.external_id: w for w in snapshot.workloads}


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# --- the module, the config, the default source -----------------------------------------------


def test_importing_the_connector_does_not_import_the_sdk() -> None:
    code = (
        "import connectors.docker.connector, sys; assert not {'docker', 'paramiko'} & set(sys.modules), sorted(m for "
        "m in "
        "sys.modules if m.startswith(('docker', 'paramiko')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PROJECT_ROOT)


def test_config_reads_endpoints_and_tls_the_docker_cli_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ConnectorRegistry.of(DockerConnector)
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.5:2376")
    config = build_config(
        {
            "sources": [
                {"type": "docker", "name": "default"},
                {"type": "docker", "name": "nas", "url": "ssh://admin@nas.lan"},
                {
                    "type": "docker",
                    "name": "lab",
                    "url": "tcp://lab.lan:2376",
                    "tls": {"ca": "certs/ca.pem", "cert": "certs/cert.pem", "key": "certs/key.pem"},
                },
            ]
        },
        path=tmp_path / "inventory.yaml",
        registry=registry,
    )
    default, nas, lab = config.sources
    assert isinstance(lab, DockerConfig) and lab.tls is not None
    assert default.url == "tcp://10.0.0.5:2376"  # type: ignore[attr-defined]
    assert nas.url == "ssh://admin@nas.lan"  # type: ignore[attr-defined]
    assert lab.tls.ca == tmp_path / "certs/ca.pem" and lab.tls.verify is True

    monkeypatch.delenv("DOCKER_HOST")
    assert DockerConfig(name="x").url == "unix:///var/run/docker.sock"
    assert (DockerConfig(name="x", timeout="30s").timeout, DockerConfig(name="x", timeout="1m").timeout) == (30.0, 60.0)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "http://host:2375"}, "url"),
        ({"url": "tcp://"}, "url"),
        ({"url": "unix:///s.sock", "tls": {"ca": "ca.pem"}}, "sources[0]"),
        ({"url": "tcp://h:2376", "tls": {"cert": "c.pem"}}, "sources[0].tls"),
        ({"concurrency": 0}, "concurrency"),
    ]
    for bad, key in cases:
        with pytest.raises(ConfigError) as caught:
            build_config({"sources": [{"type": "docker", "name": "d", **bad}]}, registry=registry)
        assert key in str(caught.value)


def test_default_local_source_offers_only_a_reachable_engine(
    engine: DockerEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    offered = default_local_source()
    assert offered is not None and offered.url == engine.url and offered.name == "local"
    assert DockerConnector(offered).collect().hosts

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'missing.sock'}")
    assert default_local_source() is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert default_local_source() is None

    assert engine.tcp_url is not None
    monkeypatch.setenv("DOCKER_HOST", engine.tcp_url)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    offered = default_local_source()
    assert offered is not None and offered.tls == DockerTLS(
        ca=tmp_path / "ca.pem", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem"
    )


# --- the real engine ----------------------------------------------------------------------------


def test_running_stopped_and_exited_containers_with_their_engine(engine: DockerEngine, run: Run) -> None:
    healthcheck = {"test": ["CMD", "true"], "interval": 100_000_000, "start_period": 0}
    client = engine.client()
    prefix = private_bridge(client, "inventory-test-net")
    running = run(
        "web",
        labels={"tier": "front"},
        healthcheck=healthcheck,
        network="inventory-test-net",
        binds={"inventory-test-data": {"bind": "/data", "mode": "rw"}},
        ports=[80],
    )
    exited = run("job", "sh -c 'exit 3'")
    created = run("spare", start=False, healthcheck=healthcheck)
    # Why a never-started container is not inspected: inspect would add nothing to the list entry.
    never_started = client.inspect_container(created)
    assert (
        "Health" not in never_started["State"]
        and never_started["RestartCount"] == 0
        and never_started["State"]["StartedAt"].startswith("0001")
    )
    client.wait(exited)
    wait_for(lambda: client.inspect_container(running)["State"]["Health"]["Status"] == "healthy")

    snapshot = collect(engine.url)

    assert snapshot.complete and snapshot.errors == []
    assert snapshot.identity is None  # engines cloned from one template share their ID
    (host,) = snapshot.hosts
    info = client.info()
    assert (host.kind, host.external_id, host.hostname) == (HOST_KIND, info["ID"], info["Name"])
    assert host.attributes["server_version"] == info["ServerVersion"]
    assert host.attributes["cpus"] == info["NCPU"] and host.attributes["memory_bytes"] == info["MemTotal"]
    assert host.attributes["swarm_role"] == "inactive"

    containers = workloads_by_id(snapshot)
    assert set(containers) == {running, exited, created}
    web, job, spare = containers[running], containers[exited], containers[created]
    assert all(w.kind == CONTAINER_KIND and w.host == Ref(HOST_KIND, info["ID"]) for w in containers.values())
    assert (web.name, web.status, web.attributes["health"], web.labels) == (
        "web",
        "running",
        "healthy",
        {"tier": "front"},
    )
    assert web.attributes["restart_count"] == 0 and web.attributes["started_at"].startswith("20")
    assert web.attributes["image"] == BUSYBOX_IMAGE and web.attributes["image_id"].startswith("sha256:")
    network = web.attributes["networks"]["inventory-test-net"]
    assert network["ip"].startswith(prefix) and network["gateway"] == f"{prefix}1" and network["prefix_length"] == 24
    assert (
        network["mac"]
        == client.inspect_container(running)["NetworkSettings"]["Networks"]["inventory-test-net"]["MacAddress"].lower()
        != ""
    )
    assert web.attributes["ports"] == [{"private": 80, "type": "tcp"}]
    assert [(m["type"], m["name"], m["destination"], m["rw"]) for m in web.attributes["mounts"]] == [
        ("volume", "inventory-test-data", "/data", True)
    ]
    assert job.attributes["networks"] == {"none": {"id": job.attributes["networks"]["none"]["id"]}}
    assert (job.status, job.attributes["exit_code"], job.attributes["command"]) == ("exited", 3, "sh -c 'exit 3'")
    assert job.attributes["started_at"] and job.attributes["finished_at"]
    assert spare.status == "created" and "exit_code" not in spare.attributes and "started_at" not in spare.attributes


def test_an_unchanged_container_hashes_the_same_across_polls(engine: DockerEngine, run: Run) -> None:
    run("steady")
    first = collect(engine.url)
    time.sleep(1.1)  # the human Status text moves from "Up Less than a second" to "Up 1 second"
    second = collect(engine.url)
    assert [canonical_fields(r) for r in first.workloads + first.hosts] == [
        canonical_fields(r) for r in second.workloads + second.hosts
    ]


def test_compose_labels_form_projects_and_services(engine: DockerEngine, run: Run) -> None:
    def compose(project: str, service: str, number: int) -> dict[str, str]:
        return {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project.working_dir": f"/srv/{project}",
        }

    web1 = run("shop-web-1", labels=compose("shop", "web", 1))
    web2 = run("shop-web-2", labels=compose("shop", "web", 2), start=False)
    db = run("shop-db-1", labels=compose("shop", "db", 1))
    run("loner")

    snapshot = collect(engine.url)

    services = {(s.kind, s.external_id): s for s in snapshot.services}
    assert set(services) == {
        (COMPOSE_PROJECT_KIND, "shop"),
        (COMPOSE_SERVICE_KIND, "shop/web"),
        (COMPOSE_SERVICE_KIND, "shop/db"),
    }
    project = services[(COMPOSE_PROJECT_KIND, "shop")]
    assert set(project.members) == {Ref(CONTAINER_KIND, c) for c in (web1, web2, db)}
    assert project.status == "partial" and project.attributes["services"] == ["db", "web"]
    assert project.attributes["working_dir"] == "/srv/shop"
    web = services[(COMPOSE_SERVICE_KIND, "shop/web")]
    assert (web.name, web.namespace, set(web.members)) == (
        "web",
        "shop",
        {Ref(CONTAINER_KIND, web1), Ref(CONTAINER_KIND, web2)},
    )
    assert services[(COMPOSE_SERVICE_KIND, "shop/db")].status == "running"
    container = workloads_by_id(snapshot)[web2]
    assert container.namespace == "shop" and container.attributes["compose"] == {
        "project": "shop",
        "service": "web",
        "number": 2,
        "oneoff": False,
        "working_dir": "/srv/shop",
    }


def test_a_compose_run_container_is_no_member_of_its_service(engine: DockerEngine, run: Run) -> None:
    def compose(service: str, number: int, oneoff: bool) -> dict[str, str]:
        return {
            "com.docker.compose.project": "shop",
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "com.docker.compose.oneoff": "True" if oneoff else "False",
        }

    web = run("shop-web-1", labels=compose("web", 1, oneoff=False))
    # `docker compose run web migrate` labels its container as a one-off of web; it has exited since.
    migrate = run("shop-web-run-3f2a1c", "true", labels=compose("web", 1, oneoff=True))
    wait_for(lambda: engine.client().inspect_container(migrate)["State"]["Status"] == "exited")

    snapshot = collect(engine.url)

    services = {(s.kind, s.external_id): s for s in snapshot.services}
    service = services[(COMPOSE_SERVICE_KIND, "shop/web")]
    assert set(service.members) == {Ref(CONTAINER_KIND, web)} and service.status == "running"
    project = services[(COMPOSE_PROJECT_KIND, "shop")]
    # As `docker compose ps` lists it: the one-off is no member of the project either, only counted.
    assert set(project.members) == {Ref(CONTAINER_KIND, web)}
    assert project.attributes["containers"] == 1 and project.attributes["one_off_containers"] == 1
    assert project.status == "running"
    assert workloads_by_id(snapshot)[migrate].attributes["compose"]["oneoff"] is True


def test_a_crash_looping_container_keeps_its_exit_code(engine: DockerEngine, run: Run) -> None:
    client = engine.client()
    looping = run("crashing", "sh -c 'exit 3'", restart_policy={"Name": "always"})

    def restarting() -> bool:
        state = client.inspect_container(looping)
        # After a few restarts the engine waits seconds before the next: a stable moment to read.
        return bool(state["State"]["Restarting"]) and state["RestartCount"] >= 3

    wait_for(restarting, seconds=30)
    container = workloads_by_id(collect(engine.url))[looping]
    assert container.status == "restarting"
    assert container.attributes["exit_code"] == 3 and container.attributes["restart_count"] >= 3


def _changes(db: Database, source: str) -> list[tuple[str, str, str, Any]]:
    with db.session() as session:
        rows = session.execute(
            select(Change).join(Source, Source.id == Change.source_id).where(Source.name == source).order_by(Change.id)
        ).scalars()
        return [(c.action, c.kind, c.external_id, c.diff) for c in rows]


def test_sync_marks_a_removed_container_and_keeps_a_renamed_one(db: Database, engine: DockerEngine, run: Run) -> None:
    keep = run("keeper", labels={"com.docker.compose.project": "p", "com.docker.compose.service": "k"})
    doomed = run("doomed", labels={"com.docker.compose.project": "p", "com.docker.compose.service": "s"})
    connector = DockerConnector(DockerConfig(name="box", url=engine.url))
    first = sync_source(db, connector)
    assert (
        first.status == "success" and first.result is not None and first.result.created == 6
    )  # host, 2 containers, project, 2 services

    client = engine.client()
    client.rename(keep, "keeper-renamed")
    client.remove_container(doomed, force=True)
    second = sync_source(db, connector)

    assert second.status == "success" and second.result is not None, second.error
    # keeper renamed, project p lost a member; the container and its Compose service are gone
    assert (second.result.created, second.result.updated, second.result.removed) == (0, 2, 2)
    with db.session() as session:
        containers = {w.external_id: w for w in session.execute(select(WorkloadRow)).scalars()}
    assert containers[keep].name == "keeper-renamed" and containers[keep].removed_at is None
    assert containers[doomed].removed_at is not None
    history = _changes(db, "box")
    assert ("updated", CONTAINER_KIND, keep, {"name": ["keeper", "keeper-renamed"]}) in history
    assert ("removed", CONTAINER_KIND, doomed, None) in history
    assert ("removed", COMPOSE_SERVICE_KIND, "p/s", None) in history

    third = sync_source(db, connector)
    assert third.result is not None and third.result.changed == 0  # nothing moved: nothing written


def test_an_engine_that_is_down_fails_clearly_and_removes_nothing(
    db: Database, engine: DockerEngine, run: Run, tmp_path: Path
) -> None:
    run("survivor")
    assert sync_source(db, DockerConnector(DockerConfig(name="nas", url=engine.url))).ok

    down = f"unix://{tmp_path / 'docker.sock'}"
    outcome = sync_source(db, DockerConnector(DockerConfig(name="nas", url=down, timeout=2)))

    assert outcome.status == "failed" and outcome.error is not None
    assert f"source 'nas', engine {down}: cannot connect" in outcome.error
    with db.session() as session:
        assert all(w.removed_at is None for w in session.execute(select(WorkloadRow)).scalars())
        assert all(h.removed_at is None for h in session.execute(select(HostRow)).scalars())
    assert not [c for c in _changes(db, "nas") if c[0] == "removed"]


def test_two_engines_reporting_one_id_are_never_merged(db: Database, engine: DockerEngine, run: Run) -> None:
    # Engines on VMs cloned from one template can report the same ID: two sources, two hosts.
    run("twin")
    for name in ("vm-a", "vm-b"):
        assert sync_source(db, DockerConnector(DockerConfig(name=name, url=engine.url)), configured=["vm-a", "vm-b"]).ok
    with db.session() as session:
        hosts = list(session.execute(select(HostRow)).scalars())
        sources = list(session.execute(select(Source)).scalars())
    assert len(hosts) == 2 and len({h.source_id for h in hosts}) == 2 and len({h.external_id for h in hosts}) == 1
    assert all(s.identity is None for s in sources)


def test_engine_addresses_for_correlation_come_from_the_endpoint_and_the_swarm() -> None:
    info = {
        "ID": "E1",
        "Name": "nas",
        "Swarm": {"LocalNodeState": "active", "ControlAvailable": False, "NodeAddr": "192.168.1.21"},
    }
    host = engine_host(info, "E1", "tcp://192.168.1.20:2376", "1.41")
    assert (host.hostname, host.addresses, host.attributes["swarm_role"]) == (
        "nas",
        ("192.168.1.20", "192.168.1.21"),
        "worker",
    )
    assert engine_host(info, "E1", "ssh://admin@nas.lan", "1.41").addresses == ("192.168.1.21",)


def test_tcp_with_mutual_tls(
    engine: DockerEngine, run: Run, tls_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests would let this replace the source's own CA: the source's settings must win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files["other_ca"]))
    container = run("over-tls")
    assert engine.tcp_url is not None
    good = DockerTLS(ca=tls_files["ca"], cert=tls_files["cert"], key=tls_files["key"])
    snapshot = collect(engine.tcp_url, tls=good)
    assert container in workloads_by_id(snapshot)
    assert snapshot.hosts[0].external_id == collect(engine.url).hosts[0].external_id
    assert snapshot.hosts[0].addresses == ()  # loopback names every machine: useless for correlation

    with pytest.raises(SourceError, match=r"source 'engine', engine tcp://127\.0\.0\.1:\d+: TLS failed"):
        collect(engine.tcp_url, tls=DockerTLS(ca=tls_files["other_ca"], cert=tls_files["cert"], key=tls_files["key"]))
    with pytest.raises(SourceError, match=r"TLS failed|cannot connect"):
        collect(engine.tcp_url, tls=DockerTLS(ca=tls_files["ca"]))  # no client certificate: the engine refuses
    with pytest.raises(SourceError, match=r"TLS file .*missing\.pem does not exist"):
        collect(engine.tcp_url, tls=DockerTLS(ca=tls_files["ca"].with_name("missing.pem")))


def test_ssh_endpoint_goes_through_the_system_ssh_client(
    engine: DockerEngine, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The far side of an ssh:// endpoint is `docker system dial-stdio` on the remote host. This
    # stand-in for ssh runs exactly that command locally, against the private engine.
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        _unavailable("the docker CLI is missing (apt-get install docker.io)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    arguments = tmp_path / "ssh-arguments"
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> {arguments}\nexec {docker_cli} -H {engine.url} system dial-stdio\n'
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    container = run("over-ssh")

    snapshot = collect("ssh://admin@nas.lan:2222")

    assert snapshot.complete and container in workloads_by_id(snapshot)
    invocations = arguments.read_text().splitlines()
    assert set(invocations) == {"-l admin -p 2222 -- nas.lan docker system dial-stdio"}
    # docker-py starts one ssh per API call (/version, /info, the list, one inspect): why
    # ControlMaster, or ssh_client: paramiko, is advised for remote engines with many containers.
    assert len(invocations) == 4


def test_ssh_endpoint_through_paramiko_uses_one_connection(
    engine: DockerEngine, run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paramiko

    from inventory.testing.ssh_docker import DIAL_STDIO, SSHDockerServer

    client_key = paramiko.ECDSAKey.generate()
    server = SSHDockerServer(engine.socket_path, authorized_key=client_key).start()
    try:
        ssh_dir = tmp_path / "home" / ".ssh"
        ssh_dir.mkdir(parents=True)
        client_key.write_private_key_file(str(ssh_dir / "id_inventory"))
        (ssh_dir / "config").write_text(
            f"Host nas.lan\n  HostName 127.0.0.1\n  IdentityFile {ssh_dir / 'id_inventory'}\n"
        )
        (ssh_dir / "known_hosts").write_text(server.known_hosts_line() + "\n")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        containers = {run(f"remote-{i}") for i in range(3)}

        url = f"ssh://admin@nas.lan:{server.port}"  # docker-py makes the port 22 unless the URL names one
        snapshot = collect(url, ssh_client="paramiko")

        assert snapshot.complete and containers <= set(workloads_by_id(snapshot))
        assert server.connections == 1 and set(server.commands) == {DIAL_STDIO} and len(server.commands) >= 6
        (ssh_dir / "known_hosts").write_text("")  # an unknown host key is refused, as OpenSSH would
        with pytest.raises(SourceError, match=rf"source 'engine', engine {url}: .*not found in known_hosts"):
            collect(url, ssh_client="paramiko")
    finally:
        server.stop()


def test_every_call_has_a_timeout() -> None:
    with FakeDocker(generate_containers(3)) as fake:
        fake.delays["/info"] = 3.0
        started = time.monotonic()
        with pytest.raises(
            SourceError, match=r"source 'engine', engine tcp://127\.0\.0\.1:\d+: GET /\S+: no answer within 0\.5 s"
        ):
            collect(fake.url, timeout=0.5)
        assert time.monotonic() - started < 2.5
        fake.delays.clear()
        running = next(c for c in fake.containers.values() if c.state == "running")
        fake.delays[f"/containers/{running.id}/json"] = 3.0
        snapshot = collect(fake.url, timeout=0.5)
    assert not snapshot.complete and snapshot.errors == [
        "containers: inspect failed for 1 container (no answer within 0.5 s (the source's `timeout:`)): " + running.name
    ]


def test_swarm_services_on_a_manager() -> None:
    import docker

    engine = _start()
    try:
        client = engine.client()
        client.init_swarm(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:0")
        task = docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(BUSYBOX_IMAGE, command=["sleep", "600"], stop_signal="SIGKILL")
        )
        service_id = client.create_service(task, name="api", labels={"com.docker.stack.namespace": "shop"})["ID"]
        wait_for(lambda: bool(client.containers(all=True)))

        snapshot = collect(engine.url)

        assert snapshot.complete, snapshot.errors
        assert snapshot.hosts[0].attributes["swarm_role"] == "manager"
        (service,) = [s for s in snapshot.services if s.kind == SWARM_SERVICE_KIND]
        assert (service.external_id, service.name, service.namespace) == (service_id, "api", "shop")
        assert service.attributes == {"mode": "replicated", "replicas": 1, "image": BUSYBOX_IMAGE, "stack": "shop"}
        (container,) = snapshot.workloads
        assert service.members == (Ref(CONTAINER_KIND, container.external_id),)
        assert container.attributes["swarm"]["service_name"] == "api"
    finally:
        engine.stop()


# --- the fake engine, and the real one as its reference --------------------------------------


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value types, not values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _missing_or_different(fake: Any, real: Any, path: str = "") -> list[str]:
    """Where the fake's document has a key the real one lacks, or a value of another type."""
    if isinstance(fake, dict) and isinstance(real, dict):
        problems = []
        for key, value in fake.items():
            if key not in real:
                problems.append(f"{path}.{key}: not in the real engine's answer")
            else:
                problems.extend(_missing_or_different(value, real[key], f"{path}.{key}"))
        return problems
    if isinstance(fake, list) and isinstance(real, list):
        return _missing_or_different(fake[0], real[0], f"{path}[0]") if fake and real else []
    if type(fake) is not type(real) and None not in (fake, real):
        return [f"{path}: {type(fake).__name__} in the fake, {type(real).__name__} in the real engine"]
    return []


def test_the_fake_answers_like_the_real_engine(engine: DockerEngine, run: Run) -> None:
    labels = {
        "com.docker.compose.project": "p",
        "com.docker.compose.service": "s",
        "com.docker.compose.container-number": "1",
    }
    running = run("same-running", labels=labels)
    created = run("same-created", start=False)
    client = engine.client()
    real_list = {c["Id"]: c for c in client.containers(all=True)}
    model = {
        "running": FakeContainer(
            id="a" * 64, name="same-running", state="running", labels=labels, started_at="2026-01-01T00:00:00.1Z"
        ),
        "created": FakeContainer(id="b" * 64, name="same-created", state="created"),
    }
    with FakeDocker(model.values()) as fake:
        fake_client = type(client)(base_url=fake.url, version="auto")
        fake_list = {c["Id"]: c for c in fake_client.containers(all=True)}
        # The list entry is the connector's main source: the fake must have exactly its shape.
        assert _shape(fake_list["a" * 64]) == _shape(real_list[running])
        assert _shape(fake_list["b" * 64]) == _shape(real_list[created])
        problems = _missing_or_different(fake_client.inspect_container("a" * 64), client.inspect_container(running))
        problems += _missing_or_different(fake_client.info(), client.info())
        problems += _missing_or_different(fake_client.version(), client.version())
        assert problems == []
        fake_snapshot = collect(fake.url)
    real_snapshot = collect(engine.url)
    # What the connector makes of either engine has the same fields.
    for real_id, fake_id in ((running, "a" * 64), (created, "b" * 64)):
        real_fields = canonical_fields(workloads_by_id(real_snapshot)[real_id])
        fake_fields = canonical_fields(workloads_by_id(fake_snapshot)[fake_id])
        assert sorted(real_fields["attributes"]) == sorted(fake_fields["attributes"])
        assert (real_fields["name"], real_fields["status"]) == (fake_fields["name"], fake_fields["status"])
    assert sorted(real_snapshot.hosts[0].attributes) == sorted(fake_snapshot.hosts[0].attributes)


def test_a_container_gone_between_list_and_inspect_is_simply_not_there() -> None:
    containers = generate_containers(30)
    vanishing = next(c for c in containers if c.state != "created")
    with FakeDocker(containers) as fake:
        fake.vanish.add(vanishing.id)
        snapshot = collect(fake.url)
        inspected = [p for p in fake.requests if p.startswith("/containers/") and p != "/containers/json"]
    assert snapshot.complete and snapshot.errors == []
    assert len(snapshot.workloads) == 29 and vanishing.id not in workloads_by_id(snapshot)
    assert all(vanishing.id not in {m.external_id for m in s.members} for s in snapshot.services)
    # Few calls: never-started containers are not inspected; the list said all there is.
    assert len(inspected) == sum(1 for c in containers if c.state != "created")


def test_a_failed_read_leaves_the_snapshot_incomplete_and_removes_only_what_a_complete_list_lost(
    db: Database, tmp_path: Path
) -> None:
    containers = generate_containers(12)
    with FakeDocker(containers, socket_path=tmp_path / "fake.sock") as fake:
        connector = DockerConnector(DockerConfig(name="fake", url=fake.url))
        assert sync_source(db, connector).ok

        broken = next(c for c in containers if c.state == "running")
        fake.faults[f"/containers/{broken.id}/json"] = 500
        del fake.containers[containers[-1].id]  # really gone: the list that completed says so
        snapshot = connector.collect()
        assert not snapshot.complete
        # Still listed, so still there: what inspect alone knows keeps its stored value.
        assert workloads_by_id(snapshot)[broken.id].unread == INSPECTED_FIELDS
        assert snapshot.errors == [
            f"containers: inspect failed for 1 container (HTTP 500: fake engine: injected failure on /containers/{broken.id}/json): {broken.name}"
        ]
        outcome = sync_source(db, connector)
        assert outcome.status == "partial" and outcome.result is not None and outcome.result.removed == 1

        fake.faults.clear()
        fake.faults["/containers/json"] = 500
        outcome = sync_source(db, connector)
        assert outcome.status == "partial" and outcome.result is not None and outcome.result.removed == 0
        assert (
            outcome.error is not None
            and "source 'fake', containers: GET /v1.41/containers/json: HTTP 500" in outcome.error
        )
    with db.session() as session:
        removed = [w.external_id for w in session.execute(select(WorkloadRow)).scalars() if w.removed_at is not None]
        assert removed == [containers[-1].id]
        assert all(s.removed_at is None for s in session.execute(select(ServiceRow)).scalars())


def test_list_only_mode_makes_one_list_call(tmp_path: Path) -> None:
    with FakeDocker(generate_containers(40), socket_path=tmp_path / "fake.sock") as fake:
        snapshot = collect(fake.url, inspect=False)
        assert sorted(set(fake.requests)) == ["/containers/json", "/info", "/version"]
    assert snapshot.complete and len(snapshot.workloads) == 40


def test_no_config_at_all_offers_the_local_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no config file anywhere, a reachable DOCKER_HOST is the default source 'local'."""
    from click.testing import CliRunner

    from connectors.docker.fake import FakeDocker, generate_containers
    from inventory.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INVENTORY_DATABASE_URL", f"sqlite:///{tmp_path / 'inv.db'}")
    with FakeDocker(generate_containers(3), socket_path=tmp_path / "docker.sock") as fake:
        monkeypatch.setenv("DOCKER_HOST", fake.url)
        result = CliRunner().invoke(cli, ["sync", "--once"])
        assert result.exit_code == 0, result.output
        assert "local: success" in result.stdout
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing-here.sock'}")
    result = CliRunner().invoke(cli, ["sync", "--once"])
    assert result.exit_code == 2 and "no sources configured" in result.stderr


# -- the connector contract -----------------------------------------------------------------------


class TestContract(ConnectorContract):
    """Against the loopback fake engine, whose containers a test can rename and break at will."""

    @pytest.fixture
    def fake(self, tmp_path: Path) -> Iterator[FakeDocker]:
        with FakeDocker(generate_containers(6), socket_path=tmp_path / "fake.sock") as fake:
            yield fake

    def connector(self, fake: FakeDocker) -> DockerConnector:
        return DockerConnector(DockerConfig(name="fake", url=fake.url, timeout=5))

    def container(self, fake: FakeDocker, name: str) -> FakeContainer:
        return next(c for c in fake.containers.values() if c.name == name)

    def rename(self, fake: FakeDocker) -> tuple[SourceObject, str]:
        container = self.container(fake, "c00005")
        container.name = "renamed"
        return SourceObject("workload", CONTAINER_KIND, container.id), "renamed"

    def remove(self, fake: FakeDocker) -> SourceObject:
        container = fake.containers.pop(self.container(fake, "c00003").id)
        return SourceObject("workload", CONTAINER_KIND, container.id)

    def break_one(self, fake: FakeDocker) -> None:
        # The list that ``remove`` takes a container from (an inspect that fails removes nothing either,
        # but the complete list beside it does remove what is gone).
        fake.faults["/containers/json"] = 500

    def heal(self, fake: FakeDocker) -> None:
        fake.faults.clear()

    def remove_beside_a_failed_scope(self, fake: FakeDocker) -> SourceObject:
        # The container list is complete while one inspect (a scope of its own) fails.
        gone = self.remove(fake)
        fake.faults[f"/containers/{self.running(fake).id}/json"] = 500
        return gone

    def break_detail(self, fake: FakeDocker) -> tuple[SourceObject, str]:
        container = self.running(fake)
        fake.faults[f"/containers/{container.id}/json"] = 500
        return SourceObject("workload", CONTAINER_KIND, container.id), "attributes.started_at"

    def running(self, fake: FakeDocker) -> FakeContainer:
        return next(c for c in fake.containers.values() if c.state == "running")

    def secrets(self, fake: FakeDocker) -> list[str]:
        return []
