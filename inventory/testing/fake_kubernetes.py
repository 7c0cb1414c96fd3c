"""A loopback Kubernetes API server that speaks the real protocol, for tests, benchmarks and the demo.

It serves the real list and get paths (``/api/v1/pods``,
``/apis/apps/v1/namespaces/{ns}/deployments``, ...) with real JSON shapes
(see ``fake_kubernetes_objects``), paginates with ``limit`` and ``continue``
the way the API server does (opaque continue tokens, ``remainingItemCount``,
``410 Expired`` for a stale token), checks the bearer token, and can be told to
misbehave: an HTTP error on page k, an expired continue token, a slow answer,
malformed JSON. The real ``kubernetes`` client talks to it through a generated
kubeconfig (``write_kubeconfig``).

    with FakeKubernetes(ClusterSpec(nodes=3, pods=30)) as api:
        write_kubeconfig(path, {"lab": api})

Run it standalone (for the demo, or as a separate process in the benchmark)::

    python -m inventory.testing.fake_kubernetes --nodes 500 --pods 15000 --profile realistic --kubeconfig /tmp/kc

``--profile small`` (the default) serves the tests' cluster; ``realistic`` a real cluster's kinds and
object weights (``fake_kubernetes_realistic``).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from inventory.testing.fake_kubernetes_objects import JSON, RESOURCES, ClusterObjects, ClusterSpec, generate_cluster
from inventory.testing.fake_kubernetes_realistic import generate_realistic_cluster, pod_json_bytes
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
        self.load(objects or generate_cluster(self.spec))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- objects -------------------------------------------------------------------------

    def load(self, objects: ClusterObjects) -> None:
        """Replace every object served (a new list of the cluster)."""
        collections = {}
        for resource in RESOURCES:
            items = objects.items.get(resource, [])
            entries = sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            collections[resource] = _Collection(
                keys=[f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" for o in entries],
                namespaces=[o["metadata"].get("namespace", "") for o in entries],
                bodies=[json.dumps(o, separators=(",", ":")).encode() for o in entries],
            )
        with self._lock:
            self._collections = collections
            self._resource_version += 1
            self.objects = objects

    def mutate(self, resource: str, name: str, namespace: str | None, change: Any) -> None:
        """Apply ``change(obj)`` to one object (or delete it when change is None) and serve the result."""
        items = self.objects.items[resource]
        for index, obj in enumerate(items):
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace") == namespace:
                if change is None:
                    del items[index]
                else:
                    change(obj)
                self.load(self.objects)
                return
        raise KeyError(f"{resource} {namespace}/{name} not found")

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
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
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
        return self._list(resource, namespace, query)

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
