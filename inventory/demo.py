"""A small homelab made of the loopback fakes, for `inventory demo` and the soak benchmark.

Three Proxmox VE nodes run VMs and LXC containers; three of the VMs are the
nodes of a Kubernetes cluster (two with the SMBIOS uuid of their node's systemUUID,
the third known only by the providerID a Proxmox cloud controller set on its node);
one LXC container, ``docker01``, is a Docker host running two Compose stacks (a
one-node swarm at the LXC's address). Every fake speaks its real API on 127.0.0.1, so the demo syncs through
the real connectors and the real SDKs.

``churn(step)`` changes the lab the way a homelab changes, and the way the real
systems record it, so that a live watch can say who did it: a guest stopped,
started, created or destroyed by a person's Proxmox task (``root@pam qmstop``),
a pod replaced by the ReplicaSet controller and a deployment relabelled by
``kubectl apply`` (their field managers), a container killed, started or
upgraded (recreated) with the Docker events the engine logs. It is deterministic
for a given step.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.docker.fake import FakeContainer, FakeDocker, FakeEngineInfo
from connectors.kubernetes.fake.objects import ClusterSpec, generate_cluster, object_uid
from connectors.kubernetes.fake.server import FakeKubernetes, write_kubeconfig
from connectors.proxmox.fake.model import FakeCluster, FakeGuest, FakeNode, mac_for
from inventory.principals import system_principal

CLUSTER = "homelab"
_STARTED = datetime(2026, 9, 21, 8, 0, tzinfo=UTC)
_NEVER = "0001-01-01T00:00:00Z"
TASKS_KEPT = 500


def _container_id(name: str) -> str:
    # Docker ids are 64 hex digits; a digest of the name keeps them stable from run to run.
    return hashlib.sha256(f"docker01/{name}".encode()).hexdigest()


def _docker_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000000Z")


def _kubernetes() -> FakeKubernetes:
    objects = generate_cluster(ClusterSpec(name=CLUSTER, nodes=3, pods=24, namespaces=2, replicas_per_deployment=2))
    # The nodes' addresses are the VMs' (cosmetic: identity is the SMBIOS uuid); a Proxmox cloud
    # controller names each node's VM in its providerID.
    for index, node in enumerate(objects.items["nodes"]):
        node["spec"]["providerID"] = f"proxmox://{CLUSTER}/{101 + index}"
        for address in node["status"]["addresses"]:
            if address["type"] == "InternalIP":
                address["address"] = f"192.168.1.{101 + index}"
    return FakeKubernetes(objects=objects)


def _guest(
    vmid: int,
    kind: str,
    name: str,
    node: str,
    *,
    status: str = "running",
    tags: tuple[str, ...] = (),
    pool: str | None = None,
    **extra: Any,
) -> FakeGuest:
    return FakeGuest(
        vmid=vmid,
        kind=kind,  # type: ignore[arg-type]
        name=name,
        node=node,
        status=status,
        tags=list(tags),
        pool=pool,
        macs=[mac_for(vmid)],
        addresses=[f"192.168.1.{vmid % 256}/24"],
        agent="running" if status == "running" else "not-running",
        **extra,
    )


def _proxmox_cluster(kubernetes: FakeKubernetes) -> FakeCluster:
    cluster = FakeCluster(name=CLUSTER, pools={"k8s": "Kubernetes nodes", "apps": "Home services"})
    cluster.nodes = [
        FakeNode(name=f"pve{i}", ip=f"192.168.1.{10 + i}", cpus=16, memory_bytes=64 * 1024**3) for i in (1, 2, 3)
    ]
    for index, node in enumerate(kubernetes.objects.items["nodes"]):
        # The last node's VM was restored from a backup with a new SMBIOS uuid: only its providerID links it.
        system_uuid = node["status"]["nodeInfo"]["systemUUID"].lower()
        if index == 2:
            system_uuid = str(uuid.UUID(int=0x103, version=4))
        cluster.guests.append(
            _guest(
                101 + index,
                "qemu",
                node["metadata"]["name"],
                f"pve{index + 1}",
                tags=("k8s",),
                pool="k8s",
                cores=4,
                memory_mib=8192,
                smbios_uuid=system_uuid,
            )
        )
    cluster.guests += [
        _guest(110, "lxc", "docker01", "pve1", tags=("docker",), pool="apps", cores=4, memory_mib=4096),
        _guest(111, "lxc", "pihole", "pve2", tags=("dns",), pool="apps", cores=1, memory_mib=512),
        _guest(112, "qemu", "homeassistant", "pve3", pool="apps", memory_mib=4096),
        _guest(113, "qemu", "nextcloud", "pve2", pool="apps", memory_mib=4096),
        _guest(114, "qemu", "win11", "pve3", status="stopped"),
        _guest(9000, "qemu", "debian-12-template", "pve1", status="stopped", template=True),
    ]
    return cluster


def _container(
    name: str, image: str, *, project: str | None = None, state: str = "running", exit_code: int = 0
) -> FakeContainer:
    labels = {}
    if project:
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": name,
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
        }
    return FakeContainer(
        id=_container_id(name),
        name=f"{project}-{name}-1" if project else name,
        image=image,
        state=state,
        labels=labels,
        exit_code=exit_code,
        health="healthy" if state == "running" and project == "media" else None,
        started_at=_docker_time(_STARTED),
        finished_at=_docker_time(_STARTED + timedelta(minutes=1)) if state == "exited" else _NEVER,
    )


def _docker() -> FakeDocker:
    containers = [
        _container("jellyfin", "jellyfin/jellyfin:10.9.11", project="media"),
        _container("sonarr", "lscr.io/linuxserver/sonarr:4.0.9", project="media"),
        _container("radarr", "lscr.io/linuxserver/radarr:5.11.0", project="media"),
        _container("prometheus", "prom/prometheus:v2.54.1", project="monitoring"),
        _container("grafana", "grafana/grafana:11.2.0", project="monitoring"),
        _container("watchtower", "containrrr/watchtower:1.7.1"),
        _container("certbot", "certbot/certbot:v2.11.0", state="exited"),
    ]
    # A one-node swarm: its node address is the LXC's, which with the name links the engine to the LXC.
    engine = FakeEngineInfo(
        id="DOCK:ER01:HOME:LAB0:0000:0000:0000:0000:0000:0000:0000:0110",
        name="docker01",
        cpus=4,
        memory=4 * 1024**3,
        swarm_node_addr="192.168.1.110",
    )
    return FakeDocker(containers, engine=engine)


@dataclass
class DemoLab:
    """The three fakes, started and stopped together, and the config that points at them."""

    directory: Path
    kubernetes: FakeKubernetes = field(default_factory=_kubernetes)
    docker: FakeDocker = field(default_factory=_docker)
    proxmox: Any = None
    changes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from connectors.proxmox.fake.server import FakeProxmox  # needs trustme (a fresh CA per run)

        if self.proxmox is None:
            self.proxmox = FakeProxmox(_proxmox_cluster(self.kubernetes))

    def start(self) -> DemoLab:
        self.kubernetes.start()
        self.proxmox.start()
        self.docker.start()
        return self

    def stop(self) -> None:
        for fake in (self.docker, self.proxmox, self.kubernetes):
            try:
                fake.stop()
            except Exception:  # stopping is best effort: the process is about to end anyway
                pass

    def __enter__(self) -> DemoLab:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def forget_requests(self) -> None:
        """Drop the fakes' request logs (they keep every request for tests; a soak run would grow them)."""
        self.kubernetes.requests.clear()
        self.docker.requests.clear()
        self.proxmox.reset_calls()
        self.proxmox.requested.clear()

    def write_config(self, database_url: str, *, interval: str = "10s") -> Path:
        """inventory.yaml for the lab: credentials in files beside it, as in a real deployment."""
        import yaml

        self.directory.mkdir(parents=True, exist_ok=True)
        kubeconfig = write_kubeconfig(self.directory / "kubeconfig", {CLUSTER: self.kubernetes})
        secret = self.directory / "pve-token-secret"
        secret.write_text(self.proxmox.token_secret + "\n", encoding="utf-8")
        secret.chmod(0o600)
        # The fake's CA lives in its temporary directory; a copy lets the config load after the demo.
        ca_file = self.directory / "pve-root-ca.pem"
        shutil.copyfile(self.proxmox.ca_file, ca_file)
        config = {
            "database": {"url": database_url},
            "sync": {"interval": interval, "jitter": 0.1},
            "sources": [
                {
                    "type": "proxmox",
                    "name": "pve",
                    "url": self.proxmox.url,
                    "token_id": self.proxmox.token_id,
                    "token_secret_file": secret.name,
                    "ca_file": ca_file.name,
                    # Followed live by reading its task list and resources this often (the default is 5 s).
                    "poll_interval": "1s",
                },
                {"type": "kubernetes", "name": "k3s", "kubeconfig": kubeconfig.name, "context": CLUSTER},
                {"type": "docker", "name": "docker01", "url": self.docker.url},
            ],
        }
        path = self.directory / "inventory.yaml"
        path.write_text(
            "# Written by `inventory demo`: the fakes it points at are gone once the demo ends.\n"
            + yaml.safe_dump(config, sort_keys=False),
            encoding="utf-8",
        )
        return path

    def write_policy(self) -> Path:
        """policy.yaml beside the config, which `inventory demo` applies to the lab's database: the lab is the OS
        user's own, so they administer it (principals.admins: the group admins) and approve its calls."""
        import yaml

        me = system_principal().name
        policy = {
            "groups": {"ops": [me]},
            "protected": {"namespaces": ["kube-system"], "tags": ["prod"]},
            "rules": [
                {
                    "name": "prod-changes-need-approval",
                    "effect": "require_approval",
                    "match": {"classes": ["SAFE_MUTATE", "DESTRUCTIVE"], "target": {"tags": ["prod"]}},
                }
            ],
            "principals": {"users": {me: ["admins"]}},
        }
        path = self.directory / "policy.yaml"
        path.write_text(
            "# Written and applied by `inventory demo` (inventory policy show); edit, then inventory policy apply.\n"
            + yaml.safe_dump(policy, sort_keys=False),
            encoding="utf-8",
        )
        return path

    # -- churn -------------------------------------------------------------------------------

    def churn(self, step: int) -> list[str]:
        """Change the lab a little; returns what changed, in words."""
        done = [self._churn_proxmox(step), self._churn_kubernetes(step), self._churn_docker(step)]
        # Proxmox VE keeps a bounded task log per node; so does the fake here, for a long run (the soak).
        del self.proxmox.cluster.tasks[:-TASKS_KEPT]
        return [d for d in done if d]

    def _churn_proxmox(self, step: int) -> str:
        # Each change is a task of the person who made it, as the web UI runs it: the watch names them.
        # Creation and destruction happen in different steps: the fake indexes guests by
        # (list, length), so one guest swapped for another in a single step would go unseen.
        cluster: FakeCluster = self.proxmox.cluster
        if step % 3 == 0:
            vmid = 200 + step % 50
            guest = _guest(vmid, "lxc", f"test-ct-{step}", f"pve{(step // 3) % 3 + 1}", tags=("test",))
            cluster.create_guest(guest, user="alice@pve")
            return f"proxmox: alice@pve created LXC {vmid} test-ct-{step}"
        previous = 200 + (step - 1) % 50
        if step % 3 == 1 and any(g.vmid == previous for g in cluster.guests):
            cluster.destroy_guest(previous, user="alice@pve")
            return f"proxmox: alice@pve destroyed LXC {previous} test-ct-{step - 1}"
        guest = cluster.guest(113 if (step // 3) % 2 == 0 else 111)
        if guest.status == "running":
            cluster.stop_guest(guest.vmid, user="root@pam")
        else:
            cluster.start_guest(guest.vmid, user="root@pam")
        return f"proxmox: root@pam {'started' if guest.status == 'running' else 'stopped'} {guest.name}"

    def _churn_kubernetes(self, step: int) -> str:
        # Writes through the API server as its clients make them: each with its field manager (managedFields).
        fake = self.kubernetes
        if step % 2 == 0:
            labels = {"app": "web-0", "demo/revision": str(step)}

            def relabel(deployment: dict[str, Any]) -> None:
                deployment["metadata"]["labels"] = {**(deployment["metadata"].get("labels") or {}), **labels}

            fake.mutate("deployments", "web-0", "app-000", relabel, manager="kubectl-client-side-apply")
            return f"kubernetes: kubectl apply relabelled deployment app-000/web-0 (demo/revision={step})"
        pods = fake.objects.items["pods"]
        candidates = [
            p
            for p in pods
            if p["metadata"].get("namespace") == "app-000" and p["metadata"]["name"].startswith("web-0-")
        ]
        if not candidates:
            return ""
        old = candidates[step % len(candidates)]
        new = copy.deepcopy(old)
        base = old["metadata"]["name"].rsplit("-", 1)[0]
        new["metadata"]["name"] = f"{base}-s{step:04d}"
        new["metadata"]["uid"] = object_uid(CLUSTER, "pod", "app-000", new["metadata"]["name"])
        new["metadata"].pop("managedFields", None)
        # The ReplicaSet controller makes the new pod; the old one is deleted (deletions name no writer).
        fake.put("pods", new, manager="kube-controller-manager", operation="Update")
        fake.remove("pods", "app-000", old["metadata"]["name"])
        return (
            f"kubernetes: kube-controller-manager replaced pod {old['metadata']['name']} by {new['metadata']['name']}"
        )

    def _churn_docker(self, step: int) -> str:
        # The engine logs each change as its event (/events): the watch names the action, exit code, signal.
        if step % 2:
            certbot = self.docker.containers[_container_id("certbot")]
            if certbot.state == "exited":
                certbot.state, certbot.exit_code = "running", 0
                certbot.started_at, certbot.finished_at = _docker_time(datetime.now(UTC)), _NEVER
                self.docker.emit(certbot, "start")
                return "docker: certbot started"
            certbot.state, certbot.exit_code = "exited", 137
            certbot.finished_at = _docker_time(datetime.now(UTC))
            self.docker.emit(certbot, "kill", signal="9")
            self.docker.emit(certbot, "die", exitCode="137")
            return "docker: certbot killed (exit code 137)"
        # An upgrade (docker compose pull && up -d): the old container destroyed, a new one created and started.
        old = next(c for c in self.docker.containers.values() if c.name == "monitoring-grafana-1")
        image = f"grafana/grafana:11.2.{step}"
        new = _container("grafana", image, project="monitoring")
        new.id = _container_id(f"grafana@{image}")
        new.started_at = _docker_time(datetime.now(UTC))
        old.state = "exited"
        self.docker.emit(old, "stop")
        self.docker.emit(old, "die", exitCode="0")
        del self.docker.containers[old.id]
        self.docker.emit(old, "destroy")
        self.docker.containers[new.id] = new
        self.docker.emit(new, "create")
        self.docker.emit(new, "start")
        return f"docker: grafana upgraded to {image} (container recreated)"
