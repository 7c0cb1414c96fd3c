"""The fake Kubernetes API server of ``server``, plus the writes the Kubernetes tools make.

It accepts, applies and records what the real ``kubernetes`` client sends for:

    PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}         (rollout restart: template annotation)
    PATCH  /apis/apps/v1/namespaces/{ns}/deployments/{name}/scale   (scale)
    DELETE /api/v1/namespaces/{ns}/pods/{name}                      (with a uid precondition)
    DELETE /api/v1/namespaces/{name}
    GET    /api/v1/namespaces/{ns}/pods/{name}/log                  (a few lines of text)

Every accepted write is appended to ``mutations`` as a ``Mutation`` (method, path,
parsed body, content type), so that a test asserts what reached the wire. Kept
apart from ``server.py`` (another module's owner) as a subclass.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from connectors.kubernetes.fake.server import FakeKubernetes, _Handler, _status

LOG_LINES = ("starting", "listening on :8080", "ready")


@dataclass(frozen=True)
class Mutation:
    method: str
    path: str
    body: Any
    content_type: str


class _WritingHandler(_Handler):
    api: MutableFakeKubernetes

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        if not self.path.split("?", 1)[0].rstrip("/").endswith("/log"):
            super().do_GET()
            return
        # The API server sends logs as text/plain; the client parses application/json strictly.
        status, body, _delay = self.api.route("GET", self.path, self.headers)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if status == 200 else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PATCH(self) -> None:  # noqa: N802
        self._read_body_then_answer("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._read_body_then_answer("DELETE")

    def _read_body_then_answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.api._request.body = self.rfile.read(length) if length else b""
        self._answer(method)


class MutableFakeKubernetes(FakeKubernetes):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mutations: list[Mutation] = []
        # The body of the request being answered, per handler thread.
        self._request = threading.local()

    def start(self) -> MutableFakeKubernetes:
        super().start()
        assert self._server is not None
        # Same server, a handler that also reads PATCH and DELETE bodies; no request was served yet.
        self._server.RequestHandlerClass = type("Handler", (_WritingHandler,), {"api": self})
        return self

    def __enter__(self) -> MutableFakeKubernetes:
        return self.start()

    def route(self, method: str, raw_path: str, headers: Any) -> tuple[int, bytes, float]:
        path = raw_path.split("?", 1)[0].rstrip("/")
        if self.token is not None and headers.get("Authorization", "") != f"Bearer {self.token}":
            return super().route(method, raw_path, headers)  # the parent answers 401
        if method == "GET" and path.endswith("/log"):
            return self._log(path)
        if method not in ("PATCH", "DELETE"):
            return super().route(method, raw_path, headers)
        body = getattr(self._request, "body", b"") or b""
        parsed = json.loads(body) if body else None
        parts = path.strip("/").split("/")
        answer = self._write(method, parts, parsed)
        if answer[0] < 300:
            with self._lock:
                self.mutations.append(Mutation(method, path, parsed, headers.get("Content-Type", "")))
        return answer

    def _find(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        for obj in self.objects.items.get(resource, []):
            meta = obj["metadata"]
            if meta["name"] == name and meta.get("namespace") == namespace:
                return obj
        return None

    def _write(self, method: str, parts: list[str], body: Any) -> tuple[int, bytes, float]:
        # apis/apps/v1/namespaces/{ns}/deployments/{name}[/scale]
        if (
            method == "PATCH"
            and parts[:3] == ["apis", "apps", "v1"]
            and len(parts) in (7, 8)
            and parts[5] == "deployments"
        ):
            namespace, name = parts[4], parts[6]
            deployment = self._find("deployments", namespace, name)
            if deployment is None:
                return 404, _status(404, "NotFound", f'deployments.apps "{name}" not found'), 0.0
            if len(parts) == 8 and parts[7] == "scale":
                replicas = int(body["spec"]["replicas"])
                self.mutate("deployments", name, namespace, lambda obj: obj["spec"].__setitem__("replicas", replicas))
                scale = {
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": {"name": name, "namespace": namespace, "uid": deployment["metadata"]["uid"]},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": replicas},
                }
                return 200, json.dumps(scale).encode(), 0.0
            annotations = ((body or {}).get("spec", {}).get("template", {}).get("metadata", {}) or {}).get(
                "annotations"
            ) or {}

            def annotate(obj: dict[str, Any]) -> None:
                template_meta = obj["spec"].setdefault("template", {}).setdefault("metadata", {})
                template_meta.setdefault("annotations", {}).update(annotations)

            self.mutate("deployments", name, namespace, annotate)
            return 200, json.dumps(self._find("deployments", namespace, name)).encode(), 0.0
        # api/v1/namespaces/{ns}/pods/{name}
        if method == "DELETE" and parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "pods":
            namespace, name = parts[3], parts[5]
            pod = self._find("pods", namespace, name)
            if pod is None:
                return 404, _status(404, "NotFound", f'pods "{name}" not found'), 0.0
            wanted_uid = ((body or {}).get("preconditions") or {}).get("uid")
            if wanted_uid and wanted_uid != pod["metadata"]["uid"]:
                message = (
                    f"Precondition failed: UID in precondition: {wanted_uid}, "
                    f"UID in object meta: {pod['metadata']['uid']}"
                )
                return 409, _status(409, "Conflict", message), 0.0
            self.mutate("pods", name, namespace, None)
            return 200, json.dumps(pod).encode(), 0.0
        # api/v1/namespaces/{name}
        if method == "DELETE" and parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 4:
            name = parts[3]
            if self._find("namespaces", None, name) is None:
                return 404, _status(404, "NotFound", f'namespaces "{name}" not found'), 0.0
            self.mutate(
                "namespaces", name, None, lambda obj: obj.setdefault("status", {}).__setitem__("phase", "Terminating")
            )
            return 200, json.dumps(self._find("namespaces", None, name)).encode(), 0.0
        return 405, _status(405, "MethodNotAllowed", f"the fake does not accept {method} {'/'.join(parts)}"), 0.0

    def _log(self, path: str) -> tuple[int, bytes, float]:
        parts = path.strip("/").split("/")  # api/v1/namespaces/{ns}/pods/{name}/log
        if len(parts) != 7 or self._find("pods", parts[3], parts[5]) is None:
            return 404, _status(404, "NotFound", "pod not found"), 0.0
        return 200, "\n".join(f"{parts[5]}: {line}" for line in LOG_LINES).encode() + b"\n", 0.0
