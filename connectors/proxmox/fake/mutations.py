"""The fake Proxmox VE API of ``server``, plus the guest writes the Proxmox tools make.

It accepts, applies and records what proxmoxer sends for:

    POST   /nodes/{node}/{qemu|lxc}/{vmid}/status/{start|shutdown|stop|reboot}
    POST   /nodes/{node}/{qemu|lxc}/{vmid}/snapshot                      (snapname, description, vmstate)
    POST   /nodes/{node}/{qemu|lxc}/{vmid}/snapshot/{snapname}/rollback
    DELETE /nodes/{node}/{qemu|lxc}/{vmid}                               (purge)

As the real API does, it answers each with a task id (UPID), refuses to delete a
running guest and to roll back to a snapshot that does not exist. Every accepted
write is appended to ``mutations``. Kept apart from ``server.py`` (another
module's owner) as a subclass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.proxmox.fake.model import TASK_PREFIX, FakeTask
from connectors.proxmox.fake.server import API_PREFIX, ApiError, FakeProxmox, _make_handler, _TLSServer
from inventory.testing.serving import serve_in_background

_GUEST_PATH = re.compile(r"^/nodes/(?P<node>[^/]+)/(?P<kind>qemu|lxc)/(?P<vmid>\d+)(?P<rest>(/[^/]+)*)$")
_STATUS_AFTER = {"start": "running", "shutdown": "stopped", "stop": "stopped", "reboot": "running"}


@dataclass(frozen=True)
class Mutation:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)


class MutableFakeProxmox(FakeProxmox):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mutations: list[Mutation] = []
        self.snapshots: dict[int, list[str]] = {}

    def start(self) -> MutableFakeProxmox:

        base = _make_handler(self)
        fake = self

        class WritingHandler(base):  # type: ignore[misc, valid-type]
            def _handle(self, method: str) -> None:
                path = urlsplit(self.path).path
                api_path = path[len(API_PREFIX) :] if path.startswith(API_PREFIX + "/") else ""
                if method not in ("POST", "DELETE") or not _GUEST_PATH.match(api_path):
                    super()._handle(method)
                    return
                fake.count(method, api_path)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode() if length else "").items()}
                form.update({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
                try:
                    if not fake.authenticate(self.headers):
                        raise ApiError(401, "No ticket")
                    self._answer(200, None, fake.write(method, api_path, form))
                except ApiError as error:
                    self._answer(error.status, error.reason, None)

            def do_DELETE(self) -> None:  # noqa: N802 - http.server naming
                self._handle("DELETE")

        self._httpd = _TLSServer(("127.0.0.1", 0), WritingHandler, self._ssl_context)
        self._thread = serve_in_background(self._httpd, "fake-pve")
        return self

    def __enter__(self) -> MutableFakeProxmox:
        return self.start()

    def _task(self, node: str, action: str, vmid: int) -> FakeTask:
        """The task the write starts (before it changes anything, as a worker does), listed in /cluster/tasks
        under the token that asked (user@realm!name); finished once the change is made."""
        return self.cluster.task(node, action, vmid, self.token_id, running=True)

    def write(self, method: str, api_path: str, params: dict[str, str]) -> str:
        match = _GUEST_PATH.match(api_path)
        assert match is not None
        node, kind, vmid, rest = (
            match["node"],
            match["kind"],
            int(match["vmid"]),
            match["rest"].strip("/").split("/") if match["rest"] else [],
        )
        with self._lock:
            guest = next((g for g in self.cluster.guests if g.vmid == vmid and g.kind == kind), None)
            if guest is None or guest.node != node:
                raise ApiError(500, f"Configuration file 'nodes/{node}/{kind}-server/{vmid}.conf' does not exist")
            if method == "DELETE" and not rest:
                if guest.status == "running":
                    raise ApiError(500, f"VM {vmid} is running - destroy failed")
                task = self._task(node, f"{TASK_PREFIX[kind]}destroy", vmid)
                self.cluster.guests.remove(guest)
            elif method == "POST" and len(rest) == 2 and rest[0] == "status" and rest[1] in _STATUS_AFTER:
                task = self._task(node, f"{TASK_PREFIX[kind]}{rest[1]}", vmid)
                guest.status = _STATUS_AFTER[rest[1]]
            elif method == "POST" and rest == ["snapshot"]:
                name = params.get("snapname", "")
                if not name or name in self.snapshots.get(vmid, []):
                    raise ApiError(500, f"snapshot name '{name}' already used or empty")
                task = self._task(node, f"{TASK_PREFIX[kind]}snapshot", vmid)
                self.snapshots.setdefault(vmid, []).append(name)
            elif method == "POST" and len(rest) == 3 and rest[0] == "snapshot" and rest[2] == "rollback":
                if rest[1] not in self.snapshots.get(vmid, []):
                    raise ApiError(500, f"snapshot '{rest[1]}' does not exist")
                task = self._task(node, f"{TASK_PREFIX[kind]}rollback", vmid)
            else:
                raise ApiError(501, f"Method '{method} {api_path}' not implemented")
            self.mutations.append(Mutation(method, api_path, dict(params)))
            task.finish()
        return task.upid
