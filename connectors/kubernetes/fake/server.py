"""A loopback Kubernetes API server that speaks the real protocol, for tests, benchmarks and the demo.

It serves the real list and get paths (``/api/v1/pods``,
``/apis/apps/v1/namespaces/{ns}/deployments``, ...) with real JSON shapes
(see ``objects``), paginates with ``limit`` and ``continue``
the way the API server does (opaque continue tokens, ``remainingItemCount``,
``410 Expired`` for a stale token), checks the bearer token, and can be told to
misbehave: an HTTP error on page k, an expired continue token, a slow answer,
malformed JSON. The real ``kubernetes`` client talks to it through a generated
kubeconfig (``write_kubeconfig``).

It streams like the API server too: ``?watch=true&resourceVersion=N&allowWatchBookmarks=true
&timeoutSeconds=S`` answers chunked JSON lines (``ADDED``/``MODIFIED``/``DELETED``, ``BOOKMARK``
carrying the latest resourceVersion, and an ``ERROR`` event holding a 410 ``Expired`` Status
when N is older than the history it keeps). Changes made through ``put``, ``remove`` and
``mutate`` get a resourceVersion each and a managedFields entry of the manager named; tests
cut the watch connections (``cut_watches``), forget history (``expire_history``) and restart
the server on the same port (``restart``).

    with FakeKubernetes(ClusterSpec(nodes=3, pods=30)) as api:
        write_kubeconfig(path, {"lab": api})

Run it standalone (for the demo, or as a separate process in the benchmark)::

    python -m connectors.kubernetes.fake.server --nodes 500 --pods 15000 --profile realistic --kubeconfig /tmp/kc

``--profile small`` (the default) serves the tests' cluster; ``realistic`` a real cluster's kinds and
object weights (``realistic``).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from connectors.kubernetes.fake.objects import JSON, RESOURCES, ClusterObjects, ClusterSpec, generate_cluster
from connectors.kubernetes.fake.realistic import fields_v1, generate_realistic_cluster, pod_json_bytes
from inventory.testing.serving import serve_in_background, shut_down

DEFAULT_TOKEN = "fake-bearer-token-0123456789"


@dataclass
class Fault:
    """One injected misbehaviour of list calls on a resource.

    ``page`` is 1-based (page 1 is the request without a continue token); None
    means every page. ``times`` is how often it fires before it is spent; None
    means forever.
    """

    resource: str
    action: str  # "status" | "expire" | "delay" | "malformed" | "drop"
    page: int | None = None
    status: int = 500
    seconds: float = 0.0
    times: int | None = 1
    # Sent with a 429 or 503 as the API server does: the Retry-After header and details.retryAfterSeconds.
    retry_after: int | None = None

    def matches(self, resource: str, page: int, has_continue: bool) -> bool:
        if self.resource != resource or self.times == 0:
            return False
        if self.action == "expire":
            return has_continue and (self.page is None or self.page == page)
        return self.page is None or self.page == page


@dataclass
class _Collection:
    """The objects of one resource, pre-serialized and ordered by (namespace, name) like etcd keys."""

    keys: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


# The status code the handler reads as "close the connection without an answer".
DROP_CONNECTION = 0
# The status code the handler reads as "stream a watch of this path".
WATCH_STREAM = -1


@dataclass(frozen=True)
class _Event:
    """One change as a watch tells it: the resourceVersion it made, where, and the object's JSON."""

    version: int
    resource: str
    namespace: str
    type: str  # ADDED | MODIFIED | DELETED
    body: bytes


def _key(obj: JSON) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _now() -> str:
    """managedFields' time: seconds, UTC, as the API server writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: JSON | None = None, **metadata: Any) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": metadata,
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return json.dumps(status).encode()


def _forbidden(resource: str, namespace: str | None, user: str, verb: str = "list", name: str | None = None) -> bytes:
    group = (
        RESOURCES[resource][0].removeprefix("/apis/").rsplit("/", 1)[0] if RESOURCES[resource][0] != "/api/v1" else ""
    )
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    subject = f'{resource} "{name}"' if name else resource
    message = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API group "{group}" {where}'
    )
    details: dict[str, Any] = {"kind": resource} if name is None else {"name": name, "kind": resource}
    return _status(403, "Forbidden", message, details)


def _encode_continue(resource_version: int, start_key: str) -> str:
    token = json.dumps({"v": "meta.k8s.io/v1", "rv": resource_version, "start": start_key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).decode()


def _decode_continue(token: str) -> tuple[int, str] | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError):
        return None


class FakeKubernetes:
    """A fake API server on 127.0.0.1 (random port) in a background thread."""

    def __init__(
        self,
        spec: ClusterSpec | None = None,
        *,
        objects: ClusterObjects | None = None,
        token: str | None = DEFAULT_TOKEN,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.spec = spec or (objects.spec if objects else ClusterSpec())
        self.token = token
        self._tls = tls  # (certificate chain file, private key file)
        self._lock = threading.Lock()
        self._collections: dict[str, _Collection] = {}
        self._resource_version = 5000
        self.faults: list[Fault] = []
        # What the token may not list, as RBAC would refuse it: (resource, namespace or None for cluster-wide).
        self.forbidden: set[tuple[str, str | None]] = set()
        self.user = "system:serviceaccount:inventory:reader"
        # Every request served: (path, query) — tests count pages with it.
        self.requests: list[tuple[str, dict[str, str]]] = []
        # Seconds every request waits before its answer (a slow API server), and how many were answered
        # at once at the most (a collection left running beside the next one shows as two).
        self.latency = 0.0
        self.in_flight = 0
        self.most_in_flight = 0
        # The watch side: every change since the server started (sorted by resourceVersion), the oldest
        # resourceVersion a watch of each resource may resume from (older: 410 Expired), the open watch
        # connections, and how often a watch asking for bookmarks gets one (the API server: about a minute).
        self._changed = threading.Condition(self._lock)
        self._history: list[_Event] = []
        self._versions: list[int] = []
        self._floors: dict[str, int] = {}
        self._watching: set[socket.socket] = set()
        self.bookmark_interval = 1.0
        # What the token may list but not watch (RBAC without the watch verb).
        self.unwatchable: set[str] = set()
        self._renamed = False  # the next put is of an object mutate() renamed
        self.load(objects or generate_cluster(self.spec))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- objects -------------------------------------------------------------------------

    def load(self, objects: ClusterObjects) -> None:
        """Replace every object served (a new list of the cluster); a watch sees what differs as events."""
        collections = {}
        for resource in RESOURCES:
            items = objects.items.get(resource, [])
            entries = sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            collections[resource] = _Collection(
                keys=[_key(o) for o in entries],
                namespaces=[o["metadata"].get("namespace", "") for o in entries],
                bodies=[json.dumps(o, separators=(",", ":")).encode() for o in entries],
            )
        with self._lock:
            old = getattr(self, "_collections", {})
            for resource, collection in collections.items():
                before = old.get(resource)
                if before is None:
                    continue
                was = dict(zip(before.keys, zip(before.namespaces, before.bodies, strict=True), strict=True))
                now = dict(
                    zip(collection.keys, zip(collection.namespaces, collection.bodies, strict=True), strict=True)
                )
                for key, (namespace, body) in now.items():
                    if key not in was:
                        self._record(resource, namespace, "ADDED", body)
                    elif was[key][1] != body:
                        self._record(resource, namespace, "MODIFIED", body)
                for key, (namespace, body) in was.items():
                    if key not in now:
                        self._record(resource, namespace, "DELETED", body)
            self._collections = collections
            self._resource_version += 1
            self.objects = objects
            self._changed.notify_all()

    def _record(self, resource: str, namespace: str, type_: str, body: bytes, version: int | None = None) -> None:
        """One event for the watches (the lock is held)."""
        if version is None:
            self._resource_version += 1
            version = self._resource_version
        self._history.append(_Event(version, resource, namespace, type_, body))
        self._versions.append(version)

    def put(
        self,
        resource: str,
        obj: JSON,
        manager: str | None = None,
        operation: str = "Update",
        subresource: str | None = None,
    ) -> JSON:
        """Create or replace one object (by namespace and name), as a write by ``manager`` would.

        The object gets the next resourceVersion and, when a manager is named, that manager's
        managedFields entry (its fields: the status for ``subresource="status"``, else the
        metadata labels and the spec) with the time now. Watches see ADDED or MODIFIED.
        """
        meta = obj["metadata"]
        if manager is not None:
            if subresource == "status":
                fields: JSON = {"f:status": fields_v1(obj.get("status") or {}, top=True)}
            else:
                fields = {"f:metadata": fields_v1({"labels": meta.get("labels") or {}}, top=True)}
                if "spec" in obj:
                    fields["f:spec"] = fields_v1(obj["spec"], top=True)
            entry: JSON = {
                "manager": manager,
                "operation": operation,
                "apiVersion": obj.get("apiVersion", "v1"),
                "time": _now(),
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }
            if subresource:
                entry["subresource"] = subresource
            entries = [
                e
                for e in meta.get("managedFields") or ()
                if (e.get("manager"), e.get("operation"), e.get("subresource")) != (manager, operation, subresource)
            ]
            meta["managedFields"] = [*entries, entry]
        with self._lock:
            self._resource_version += 1
            meta["resourceVersion"] = str(self._resource_version)
            body = json.dumps(obj, separators=(",", ":")).encode()
            collection = self._collections[resource]
            key = _key(obj)
            index = bisect.bisect_left(collection.keys, key)
            items = self.objects.items.setdefault(resource, [])
            if index < len(collection.keys) and collection.keys[index] == key:
                collection.bodies[index] = body
                type_ = "MODIFIED"
                for position, item in enumerate(items):
                    if _key(item) == key:
                        items[position] = obj
                        break
            else:
                collection.keys.insert(index, key)
                collection.namespaces.insert(index, meta.get("namespace", ""))
                collection.bodies.insert(index, body)
                if not any(item is obj for item in items):
                    items.append(obj)
                type_ = "MODIFIED" if self._renamed else "ADDED"
            self._renamed = False
            self._record(resource, meta.get("namespace", ""), type_, body, self._resource_version)
            self._changed.notify_all()
        return obj

    def remove(self, resource: str, namespace: str | None, name: str) -> JSON:
        """Delete one object; watches see DELETED with its last state at the deletion's resourceVersion."""
        key = f"{namespace or ''}/{name}"
        with self._lock:
            collection = self._collections[resource]
            index = bisect.bisect_left(collection.keys, key)
            if index >= len(collection.keys) or collection.keys[index] != key:
                raise KeyError(f"{resource} {key} not found")
            items = self.objects.items[resource]
            position = next(i for i, item in enumerate(items) if _key(item) == key)
            obj = items.pop(position)
            del collection.keys[index], collection.namespaces[index], collection.bodies[index]
            self._resource_version += 1
            obj["metadata"]["resourceVersion"] = str(self._resource_version)
            body = json.dumps(obj, separators=(",", ":")).encode()
            self._record(resource, namespace or "", "DELETED", body, self._resource_version)
            self._changed.notify_all()
        return obj

    def find(self, resource: str, namespace: str | None, name: str) -> JSON:
        for obj in self.objects.items.get(resource, []):
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace") == namespace:
                return obj
        raise KeyError(f"{resource} {namespace}/{name} not found")

    def mutate(
        self,
        resource: str,
        name: str,
        namespace: str | None,
        change: Callable[[JSON], Any] | None,
        manager: str | None = None,
        operation: str = "Update",
        subresource: str | None = None,
    ) -> None:
        """Apply ``change(obj)`` to one object (or delete it when change is None) and serve the result."""
        if change is None:
            self.remove(resource, namespace, name)
            return
        obj = self.find(resource, namespace, name)
        before = _key(obj)
        change(obj)
        if _key(obj) != before:
            # The API never renames; the fake does (the contract: identity is the uid): one object, modified.
            with self._lock:
                collection = self._collections[resource]
                index = bisect.bisect_left(collection.keys, before)
                del collection.keys[index], collection.namespaces[index], collection.bodies[index]
                self._renamed = True
        self.put(resource, obj, manager, operation, subresource)

    # -- watch faults --------------------------------------------------------------------

    def cut_watches(self) -> int:
        """Close every open watch connection abruptly (a load balancer's reset); returns how many."""
        with self._lock:
            sockets = list(self._watching)
            self._watching.clear()
            self._changed.notify_all()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(sockets)

    def expire_history(self, resource: str | None = None) -> None:
        """Forget the history (of one resource): a watch resuming from before now is answered 410 Expired."""
        with self._lock:
            for name in [resource] if resource else list(RESOURCES):
                self._floors[name] = self._resource_version

    def watches_open(self) -> int:
        with self._lock:
            return len(self._watching)

    # -- faults --------------------------------------------------------------------------

    def fail_page(self, resource: str, page: int, status: int = 500, times: int | None = 1) -> None:
        self.faults.append(Fault(resource, "status", page=page, status=status, times=times))

    def throttle(
        self, resource: str, page: int = 1, retry_after: int = 1, times: int | None = 1, status: int = 429
    ) -> None:
        """A 429 (or 503) with Retry-After, as an API server under priority-and-fairness limits answers."""
        self.faults.append(Fault(resource, "status", page=page, status=status, times=times, retry_after=retry_after))

    def drop_connection(self, resource: str, page: int = 1, times: int | None = 1) -> None:
        """Close the connection without an answer (a restarting API server, a load balancer's idle reset)."""
        self.faults.append(Fault(resource, "drop", page=page, times=times))

    def forbid(self, resource: str, namespace: str | None = None) -> None:
        """Refuse to list ``resource`` (in ``namespace``; None: cluster-wide and in every namespace) with RBAC's 403."""
        self.forbidden.add((resource, namespace))

    def forbid_everything(self) -> None:
        """An account bound to no role (never granted, or its binding deleted after a good sync): RBAC's 403 on
        every get and list, while the token itself is still valid (not a 401)."""
        for resource in RESOURCES:
            self.forbid(resource)

    def expire_continue(self, resource: str, times: int | None = 1, page: int | None = None) -> None:
        self.faults.append(Fault(resource, "expire", page=page, times=times))

    def delay(self, resource: str, seconds: float, page: int | None = None, times: int | None = None) -> None:
        self.faults.append(Fault(resource, "delay", page=page, seconds=seconds, times=times))

    def malformed_page(self, resource: str, page: int, times: int | None = 1) -> None:
        self.faults.append(Fault(resource, "malformed", page=page, times=times))

    def _take_fault(self, resource: str, page: int, has_continue: bool) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(resource, page, has_continue):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def pages_served(self, resource: str) -> int:
        """How many list requests of ``resource`` were answered (any namespace)."""
        return sum(1 for path, _query in self.requests if path.rstrip("/").endswith("/" + resource))

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake API server is not started"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeKubernetes:
        handler = type("Handler", (_Handler,), {"api": self})
        # A restart listens on the port it had (a kubeconfig written before still points at it).
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._port = self._server.server_address[1]
        self._server.daemon_threads = True
        if self._tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self._tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = serve_in_background(self._server, "fake-kubernetes")
        return self

    def stop(self) -> None:
        if self._server is not None:
            shut_down(self._server)
            self._server = None
        self.cut_watches()  # a stopped API server holds no connection open

    def restart(self, down: float = 0.0, while_down: Callable[[], Any] | None = None) -> None:
        """Stop (every watch is cut), run ``while_down``, wait ``down`` seconds, start again on the same port."""
        self.stop()
        if while_down is not None:
            while_down()
        if down:
            time.sleep(down)
        self.start()

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- request handling ----------------------------------------------------------------

    def route(self, method: str, raw_path: str, headers: Mapping[str, str] | Message) -> tuple[int, bytes, float]:
        """(status, body, delay seconds) for one request."""
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        path = split.path.rstrip("/")
        with self._lock:
            self.requests.append((path, query))
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 7235): the in-cluster loader sends "bearer".
        if self.token is not None and (scheme.lower() != "bearer" or credential != self.token):
            return 401, _status(401, "Unauthorized", "Unauthorized"), 0.0
        if method != "GET":
            return (
                405,
                _status(
                    405,
                    "MethodNotAllowed",
                    f"the server does not allow this method on the requested resource ({method})",
                ),
                0.0,
            )
        if path == "/version":
            return (
                200,
                json.dumps(
                    {"major": "1", "minor": "31", "gitVersion": "v1.31.1+fake", "platform": "linux/amd64"}
                ).encode(),
                0.0,
            )
        parsed = self._parse_path(path)
        if parsed is None:
            return 404, _status(404, "NotFound", "the server could not find the requested resource"), 0.0
        resource, namespace, name = parsed
        if name is not None:
            return self._get(resource, namespace, name)
        if query.get("watch") in ("true", "1"):
            if (
                (resource, None) in self.forbidden
                or (namespace is not None and (resource, namespace) in self.forbidden)
                or resource in self.unwatchable
            ):
                return 403, _forbidden(resource, namespace, self.user, verb="watch"), 0.0
            return WATCH_STREAM, b"", 0.0
        return self._list(resource, namespace, query)

    def serve_watch(self, handler: _Handler, resource: str, namespace: str | None, query: Mapping[str, str]) -> None:
        """Stream the changes of one resource (in one namespace) after ``resourceVersion``, as chunked JSON lines."""
        prefix, kind, _namespaced = RESOURCES[resource]
        api_version = "v1" if prefix == "/api/v1" else prefix.removeprefix("/apis/")
        since = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 1800)
        sock = handler.connection
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(type_: str, body: bytes) -> None:
            line = b'{"type":"' + type_.encode() + b'","object":' + body + b"}\n"
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))

        first: list[bytes] = []
        expired: int | None = None
        with self._lock:
            self._watching.add(sock)
            if since in ("", "0"):  # from now, starting with every object as ADDED (the API's "any" version)
                collection = self._collections[resource]
                first = [
                    b
                    for b, ns in zip(collection.bodies, collection.namespaces, strict=True)
                    if namespace is None or ns == namespace
                ]
                position = self._resource_version
            elif not since.isdigit():
                expired = -1
                position = 0
            else:
                position = int(since)
                if position < self._floors.get(resource, 0):
                    expired = self._floors[resource]
        try:
            if expired is not None:
                message = (
                    f"too old resource version: {since} ({expired})"
                    if expired >= 0
                    else f"invalid resourceVersion {since!r}"
                )
                send("ERROR", _status(410, "Expired", message))
                handler.wfile.write(b"0\r\n\r\n")
                return
            for body in first:
                send("ADDED", body)
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + self.bookmark_interval
            marked = position
            while True:
                with self._changed:
                    if sock not in self._watching:
                        return  # cut: the socket is already shut down
                    index = bisect.bisect_right(self._versions, position)
                    if index == len(self._versions):
                        wait = min(deadline, next_bookmark) - time.monotonic()
                        self._changed.wait(max(0.0, min(wait, 0.5)))
                        index = bisect.bisect_right(self._versions, position)
                    events = [
                        e
                        for e in self._history[index:]
                        if e.resource == resource and (namespace is None or e.namespace == namespace)
                    ]
                    # Every event up to the current resourceVersion has been looked at.
                    position = max(position, self._resource_version)
                    if sock not in self._watching:
                        return
                for event in events:
                    send(event.type, event.body)
                if _closed_by_peer(sock):
                    return  # the client went away: the API server ends the watch
                now = time.monotonic()
                if bookmarks and now >= next_bookmark:
                    next_bookmark = now + self.bookmark_interval
                    if position > marked:
                        marked = position
                        mark = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(position)}}
                        send("BOOKMARK", json.dumps(mark, separators=(",", ":")).encode())
                if now >= deadline:
                    break
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client went away, or the connection was cut
        finally:
            with self._lock:
                self._watching.discard(sock)

    @staticmethod
    def _parse_path(path: str) -> tuple[str, str | None, str | None] | None:
        for resource, (prefix, _kind, namespaced) in RESOURCES.items():
            if not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :].split("/")
            if rest == [resource]:
                return resource, None, None
            if resource == "namespaces" and len(rest) == 2 and rest[0] == "namespaces":
                return resource, None, rest[1]
            if namespaced and len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] == resource:
                return resource, rest[1], rest[3] if len(rest) == 4 else None
            if not namespaced and len(rest) == 2 and rest[0] == resource:
                return resource, None, rest[1]
        return None

    def _get(self, resource: str, namespace: str | None, name: str) -> tuple[int, bytes, float]:
        if (resource, None) in self.forbidden or (namespace is not None and (resource, namespace) in self.forbidden):
            # A namespace is asked for by name in its own namespace, as RBAC words it.
            where = namespace or (name if resource == "namespaces" else None)
            return 403, _forbidden(resource, where, self.user, verb="get", name=name), 0.0
        collection = self._collections[resource]
        key = f"{namespace or ''}/{name}"
        index = bisect.bisect_left(collection.keys, key)
        if index < len(collection.keys) and collection.keys[index] == key:
            return 200, collection.bodies[index], 0.0
        return 404, _status(404, "NotFound", f'{resource} "{name}" not found'), 0.0

    def _list(self, resource: str, namespace: str | None, query: Mapping[str, str]) -> tuple[int, bytes, float]:
        collection = self._collections[resource]
        prefix_path, kind, _namespaced = RESOURCES[resource]
        if (resource, None) in self.forbidden or (namespace is not None and (resource, namespace) in self.forbidden):
            return 403, _forbidden(resource, namespace, self.user), 0.0
        token = query.get("continue")
        start_key, version = "", self._resource_version
        if token:
            decoded = _decode_continue(token)
            if decoded is None:
                return 400, _status(400, "BadRequest", "continue key is not valid: illegal base64 data"), 0.0
            version, start_key = decoded
        keys = collection.keys
        if namespace is None:
            lo, hi = bisect.bisect_left(keys, start_key), len(keys)
        else:
            lo = bisect.bisect_left(keys, max(start_key, f"{namespace}/"))
            hi = bisect.bisect_left(keys, f"{namespace}0")  # '0' sorts right after '/'
        limit = int(query["limit"]) if query.get("limit", "").isdigit() and int(query["limit"]) > 0 else 0
        first_index = bisect.bisect_left(keys, f"{namespace}/") if namespace is not None else 0
        page = 1 + ((lo - first_index) // limit if limit else 0)

        fault = self._take_fault(resource, page, bool(token))
        delay = 0.0
        if fault is not None:
            if fault.action == "status":
                reason = {
                    500: "InternalError",
                    503: "ServiceUnavailable",
                    403: "Forbidden",
                    429: "TooManyRequests",
                }.get(fault.status, "InternalError")
                details = {"retryAfterSeconds": fault.retry_after} if fault.retry_after is not None else None
                message = (
                    f"an error on the server (injected) has prevented the request from succeeding (get {resource})"
                )
                return fault.status, _status(fault.status, reason, message, details), 0.0
            if fault.action == "drop":
                return DROP_CONNECTION, b"", 0.0
            if fault.action == "expire":
                message = (
                    "The provided continue parameter is too old to display a consistent list result. You can start a "
                    "new list "
                    "without the continue parameter, or use the continue token in this response to retrieve the "
                    "remainder of the results."
                )
                continuation: dict[str, Any] = {"continue": token}
                return 410, _status(410, "Expired", message, **continuation), 0.0
            if fault.action == "delay":
                delay = fault.seconds

        end = min(hi, lo + limit) if limit else hi
        metadata: JSON = {"resourceVersion": str(version)}
        if end < hi:
            metadata["continue"] = _encode_continue(version, keys[end])
            metadata["remainingItemCount"] = hi - end
        api_version = "v1" if prefix_path == "/api/v1" else prefix_path.removeprefix("/apis/")
        head = json.dumps(
            {"kind": f"{kind}List", "apiVersion": api_version, "metadata": metadata}, separators=(",", ":")
        )
        body = b"".join((head[:-1].encode(), b',"items":[', b",".join(collection.bodies[lo:end]), b"]}"))
        if fault is not None and fault.action == "malformed":
            body = body[: len(body) // 2]
        return 200, body, delay


class _Handler(BaseHTTPRequestHandler):
    api: FakeKubernetes
    protocol_version = "HTTP/1.1"  # keep-alive, as urllib3 expects of an API server
    # Headers and body go out in two writes: without TCP_NODELAY each small answer waits
    # for the client's delayed ACK (40 ms), which would make every page look slow.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        with self.api._lock:
            self.api.in_flight += 1
            self.api.most_in_flight = max(self.api.most_in_flight, self.api.in_flight)
        try:
            status, body, delay = self.api.route(method, self.path, self.headers)
            if delay or self.api.latency:
                time.sleep(delay + self.api.latency)
        finally:
            with self.api._lock:
                self.api.in_flight -= 1
        if status == DROP_CONNECTION:
            self.close_connection = True
            return
        if status == WATCH_STREAM:
            split = urlsplit(self.path)
            parsed = self.api._parse_path(split.path.rstrip("/"))
            assert parsed is not None
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            self.api.serve_watch(self, parsed[0], parsed[1], query)
            return
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            retry_after = _retry_after(status, body)
            if retry_after is not None:
                self.send_header("Retry-After", str(retry_after))
            self.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the client closed its end (a watch request sends nothing more: readable means EOF)."""
    if isinstance(sock, ssl.SSLSocket):
        return False  # no peeking under TLS: a gone client is found when a write fails
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _retry_after(status: int, body: bytes) -> int | None:
    """The API server repeats a Status's details.retryAfterSeconds as the Retry-After header."""
    if status not in (429, 503):
        return None
    details = json.loads(body).get("details") or {}
    value = details.get("retryAfterSeconds")
    return int(value) if value is not None else None


def write_kubeconfig(
    path: str | Path,
    clusters: Mapping[str, FakeKubernetes],
    *,
    current: str | None = None,
    ca_file: str | None = None,
    token: str | None = None,
) -> Path:
    """A kubeconfig with one context (and cluster and user) per fake server, named by the mapping's keys."""
    path = Path(path)
    doc: JSON = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "users": [], "contexts": []}
    for name, api in clusters.items():
        cluster: JSON = {"server": api.url}
        if ca_file:
            cluster["certificate-authority"] = ca_file
        doc["clusters"].append({"name": f"{name}-cluster", "cluster": cluster})
        doc["users"].append(
            {"name": f"{name}-user", "user": {"token": token if token is not None else (api.token or "")}}
        )
        doc["contexts"].append({"name": name, "context": {"cluster": f"{name}-cluster", "user": f"{name}-user"}})
    doc["current-context"] = current or next(iter(clusters), "")
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Kubernetes API on 127.0.0.1 until interrupted.")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--name", default="fake", help="cluster name (seeds the uids)")
    parser.add_argument("--context", default="fake")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig that points at the server")
    parser.add_argument(
        "--profile",
        choices=("small", "realistic"),
        default="small",
        help="the tests' cluster, or a real one's kinds and weights",
    )
    args = parser.parse_args(argv)
    spec = ClusterSpec(name=args.name, nodes=args.nodes, pods=args.pods)
    objects = generate_realistic_cluster(spec) if args.profile == "realistic" else generate_cluster(spec)
    api = FakeKubernetes(objects=objects).start()
    write_kubeconfig(args.kubeconfig, {args.context: api})
    counts = ", ".join(f"{r}={len(c.keys)}" for r, c in api._collections.items())
    weight = f"{pod_json_bytes(objects):.0f} bytes of JSON per pod"
    print(f"serving {api.url} ({counts}; {weight}); kubeconfig {args.kubeconfig}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        api.stop()


if __name__ == "__main__":
    main()
