"""Talking to one Kubernetes API server: auth the kubectl way, paginated raw-JSON lists, rate limit, timeouts.

The ``kubernetes`` package does the auth (kubeconfig contexts, exec plugins,
client certificates, in-cluster service account), TLS and the HTTP request;
responses are read as raw JSON (``_preload_content``-style: no model object per
item), because building a model per pod costs more than the whole sync of it.

The SDK is imported inside functions only: importing this module must stay cheap.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from connectors.kubernetes.config import KubernetesConfig
from inventory.cutoff import CollectionAbandoned, Cutoff
from inventory.errors import SourceApiError, SourceError
from inventory.redact import register_secret
from inventory.retry import RetryBudget

log = logging.getLogger(__name__)

# resource -> API path prefix, and whether it lives in namespaces.
API_PATHS: dict[str, tuple[str, bool]] = {
    "nodes": ("/api/v1", False),
    "pods": ("/api/v1", True),
    "services": ("/api/v1", True),
    "deployments": ("/apis/apps/v1", True),
    "replicasets": ("/apis/apps/v1", True),
    "statefulsets": ("/apis/apps/v1", True),
    "daemonsets": ("/apis/apps/v1", True),
    "jobs": ("/apis/batch/v1", True),
    "cronjobs": ("/apis/batch/v1", True),
    "ingresses": ("/apis/networking.k8s.io/v1", True),
}


# The scope a list answers: the object type and kind of its records.
SCOPES: dict[str, tuple[str, str]] = {
    "nodes": ("host", "node"),
    "pods": ("workload", "pod"),
    "replicasets": ("workload", "replicaset"),
    "deployments": ("workload", "deployment"),
    "statefulsets": ("workload", "statefulset"),
    "daemonsets": ("workload", "daemonset"),
    "jobs": ("workload", "job"),
    "cronjobs": ("workload", "cronjob"),
    "services": ("service", "service"),
    "ingresses": ("service", "ingress"),
}
# The kind each resource's objects have, as ownerReferences name it (list items do not carry it).
API_KINDS = {
    "nodes": "Node",
    "pods": "Pod",
    "replicasets": "ReplicaSet",
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
    "services": "Service",
    "ingresses": "Ingress",
}


def qualified(resource: str) -> str:
    """``deployments.apps``, ``ingresses.networking.k8s.io``: a resource as kubectl's --resource names it."""
    prefix = API_PATHS[resource][0]
    group = prefix.split("/")[2] if prefix.startswith("/apis/") else ""
    return f"{resource}.{group}" if group else resource


def default_kubeconfig_paths() -> list[Path]:
    """Where kubectl looks: every file of $KUBECONFIG, else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large cluster is read.

    Parsed API JSON and records hold no reference cycles (reference counting frees
    them), but the cyclic collector still rescans every live object each time enough
    new ones are allocated: with 20,000 records growing, that costs as much as the
    parsing itself. The previous state is restored on exit.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class RateLimiter:
    """A token bucket: ``burst`` calls at once, then ``qps`` calls per second (client-go's client-side limit)."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for the benchmark and the log

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1  # reserve now; a negative balance is the wait owed
            wait = -self._tokens / self.qps if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            sleep(wait)


class ListFailed(SourceApiError):
    """A list could not be read to the end; ``reason`` says why, for the snapshot's error line."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Expired(SourceApiError):
    """410: the continue token is too old."""


class WatchExpired(SourceApiError):
    """410 Gone on a watch: the resourceVersion it resumes from is older than the server's history."""


@dataclass
class ListStats:
    pages: int = 0
    items: int = 0
    restarts: int = 0


class KubernetesApi:
    """One authenticated client for one source (a context, a server URL, or the in-cluster account)."""

    def __init__(self, source_name: str, config: KubernetesConfig, cutoff: Cutoff | None = None) -> None:
        self.source_name = source_name
        self.config = config
        # The collection's deadline: no request is sent past it, none outlives it by more than a grace.
        self.cutoff = cutoff or Cutoff()
        self.limiter = RateLimiter(config.qps, config.burst)
        self.where = "the API server"
        self.stats: dict[str, ListStats] = {}
        # The resourceVersion each list was read at, by (resource, namespace): where a watch of it starts.
        self.versions: dict[tuple[str, str | None], str] = {}
        # The watch responses being read, so that ``shutdown_watches`` can interrupt them.
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        self._client = self._build_client()

    # -- auth ------------------------------------------------------------------------------

    def _build_client(self) -> Any:
        from kubernetes.client import ApiClient, Configuration
        from kubernetes.config.config_exception import ConfigException
        from urllib3.util.retry import Retry

        config = self.config
        configuration = Configuration()
        try:
            if config.in_cluster:
                from kubernetes.config import incluster_config

                self.where = "the in-cluster service account"
                account = config.service_account_dir
                loader = incluster_config.InClusterConfigLoader(
                    token_filename=str(account / "token") if account else incluster_config.SERVICE_TOKEN_FILENAME,
                    cert_filename=str(account / "ca.crt") if account else incluster_config.SERVICE_CERT_FILENAME,
                )
                loader.load_and_set(configuration)
            elif config.server:
                self.where = f"server {config.server}"
                configuration.host = config.server.rstrip("/")
                if config.token is not None:
                    configuration.api_key["BearerToken"] = config.token.get_secret_value()
                    configuration.api_key_prefix["BearerToken"] = "Bearer"
                if config.ca_file is not None:
                    configuration.ssl_ca_cert = str(config.ca_file)
            else:
                self._load_kubeconfig(configuration)
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceError(
                self.source_name, "credentials", f"cannot load credentials for {self.where}: {exc}"
            ) from exc
        if not config.verify_tls:
            configuration.verify_ssl = False
        if not configuration.verify_ssl and configuration.host.startswith("https"):
            log.warning("source %r: TLS certificates of %s are not verified", self.source_name, self.where)
        # A token the SDK read from a kubeconfig or a service account file is a secret as well.
        _register_tokens(configuration)
        refresh = configuration.refresh_api_key_hook
        if refresh is not None:
            # An exec plugin (EKS, GKE, OIDC helpers) or a token file is read again when its token
            # expires, in the middle of a poll: the new token must be masked from then on too.
            def refresh_and_register(configuration: Any) -> None:
                refresh(configuration)
                _register_tokens(configuration)

            configuration.refresh_api_key_hook = refresh_and_register
        # Retry a refused connection, never a read: a slow server must cost one timeout, not four.
        # Retry-After is ours to honour (``_get_json``, bounded): left to urllib3, a 429 or 503 carrying
        # it counts against ``status=0`` and the list fails with "too many 429 error responses".
        configuration.retries = Retry(
            total=2,
            connect=2,
            read=0,
            status=0,
            redirect=0,
            other=0,
            backoff_factor=0.2,
            respect_retry_after_header=False,
        )
        return ApiClient(configuration)

    def _load_kubeconfig(self, configuration: Any) -> None:
        from kubernetes.config import kube_config

        paths = [self.config.kubeconfig] if self.config.kubeconfig else default_kubeconfig_paths()
        joined = os.pathsep.join(str(p) for p in paths)
        context = self.config.context if isinstance(self.config.context, str) else None
        if context is None:
            _contexts, current = kube_config.list_kube_config_contexts(config_file=joined)
            context = (current or {}).get("name")
        self.where = f"context {context!r}"
        kube_config.load_kube_config(
            config_file=joined, context=context, client_configuration=configuration, persist_config=False
        )

    @property
    def client(self) -> Any:
        """The authenticated ``kubernetes.client.ApiClient`` of this source (for tools that act on objects)."""
        return self._client

    def close(self) -> None:
        self._client.close()

    # -- requests --------------------------------------------------------------------------

    def _get_json(self, path: str, query: list[tuple[str, Any]]) -> Any:
        """One GET as parsed JSON.

        429/503 with Retry-After are waited out (bounded); a dropped connection is tried once more.
        """
        from kubernetes.client.exceptions import ApiException

        budget = RetryBudget()
        reconnected = False
        while True:
            self.cutoff.check()
            self.limiter.acquire(self.cutoff.sleep)
            try:
                response = self._call(path, query)
            except Exception as exc:
                if reconnected or not _is_dropped_connection(exc):
                    raise
                # A keep-alive connection the server closed, or a reset: an ordinary hiccup, asked again once.
                reconnected = True
                log.info(
                    "source %r: %s: connection dropped (%s); asking again", self.source_name, path, _first_line(exc)
                )
                continue
            body = response.read()
            if 200 <= response.status < 300:
                return orjson.loads(body)
            wait = budget.wait_for(response.status, response.headers.get("Retry-After"))
            if wait is None:
                try:
                    ApiException.from_response(
                        http_resp=response, body=None, data=None
                    )  # raises the status's exception
                except ApiException as error:
                    error.retried = budget.describe()  # type: ignore[attr-defined]  # read by _explain
                    raise
                raise ApiException(status=response.status, reason=response.reason)
            log.info(
                "source %r: %s: HTTP %d, asked again in %gs (Retry-After)",
                self.source_name,
                path,
                response.status,
                wait,
            )
            self.cutoff.sleep(wait)

    def _call(self, path: str, query: list[tuple[str, Any]]) -> Any:
        from urllib3.exceptions import InsecureRequestWarning

        request = self._client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        with warnings.catch_warnings():
            if not self._client.configuration.verify_ssl:
                # Said once when the client is built; urllib3 would repeat it on every page.
                warnings.simplefilter("ignore", InsecureRequestWarning)
            return self._client.call_api(*request, _request_timeout=self.cutoff.timeout(self.config.timeout))

    def _explain(self, exc: BaseException, resource: str, what: str) -> ListFailed:
        """A one-line reason without any secret; a 401 becomes a SourceError (the whole source is unreadable)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, SSLError
        from urllib3.exceptions import TimeoutError as Urllib3Timeout

        if isinstance(exc, CollectionAbandoned):
            return ListFailed(_join(str(exc), what, ""))
        if isinstance(exc, ApiException):
            status = exc.status or 0
            detail = _status_message(exc.body) or (exc.reason or "").splitlines()[0]
            if status == 401:
                raise SourceError(
                    self.source_name,
                    resource,
                    _join(f"unauthorized for {self.where} (HTTP 401)", what, detail or "the credentials were refused"),
                ) from exc
            if status == 403:
                return ListFailed(_join(f"forbidden for {self.where} (HTTP 403)", what, detail), status)
            if status == 0:  # the SDK reports TLS failures as status 0
                return ListFailed(_join(f"cannot connect to {self.where}", what, detail), status)
            retried = getattr(exc, "retried", "")
            return ListFailed(_join(f"HTTP {status}", what, f"{detail} ({retried})" if retried else detail), status)
        if isinstance(exc, MaxRetryError) and exc.reason is not None:
            exc = exc.reason
        if isinstance(exc, (SSLError, ssl.SSLError)):
            return ListFailed(
                _join(f"TLS handshake with {self.where} failed", what, _first_line(exc).split("] ", 1)[-1])
            )
        if isinstance(exc, NewConnectionError):  # a subclass of the timeout error in urllib3
            return ListFailed(_join(f"cannot reach {self.where}", what, _first_line(exc).rsplit(": ", 1)[-1]))
        if isinstance(exc, Urllib3Timeout):
            head = f"timed out after {self.config.timeout:g}s"
            return ListFailed(f"{_join(head, what, '')} ({self.config.limit_hit('timeout')})")
        if isinstance(exc, (HTTPError, OSError)):
            return ListFailed(_join(f"cannot reach {self.where}", what, f"{type(exc).__name__}: {_first_line(exc)}"))
        if isinstance(exc, ValueError):
            return ListFailed(_join("malformed JSON", what, _first_line(exc)))
        return ListFailed(_join(type(exc).__name__, what, _first_line(exc)))

    def get(self, path: str, what: str) -> Any:
        """One object; raises ListFailed (or SourceError on a 401)."""
        try:
            return self._get_json(path, [])
        except Exception as exc:  # every failure is translated into a message that names the resource and call
            raise self._explain(exc, what, f"on GET {path}") from exc

    def open_watch(
        self, resource: str, namespace: str | None, version: str, timeout_seconds: int, read_timeout: float
    ) -> Iterator[dict[str, Any]]:
        """The events of one watch request (``?watch=true``), parsed as they arrive; ends when the server
        ends the stream (``timeoutSeconds``). A 410 answered as the HTTP status raises ``WatchExpired``;
        any other failure is raised as it is (the caller reconnects, or gives up on a 401 or 403).

        The first ``next`` sends the request; ``close`` (or ``shutdown_watches`` from another thread) ends it.
        """
        from kubernetes.client.exceptions import ApiException

        path = self.list_path(resource, namespace)
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        request = self._client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        self.limiter.acquire()
        with warnings.catch_warnings():
            if not self._client.configuration.verify_ssl:
                from urllib3.exceptions import InsecureRequestWarning

                warnings.simplefilter("ignore", InsecureRequestWarning)
            response = self._client.call_api(*request, _request_timeout=(self.config.timeout, read_timeout))
        raw = response.response
        if response.status == 410:
            raw.release_conn()
            raise WatchExpired(f"{resource}: HTTP 410")
        if not 200 <= response.status < 300:
            response.read()
            ApiException.from_response(http_resp=response, body=None, data=None)
            raise ApiException(status=response.status, reason=response.reason)
        with self._open_lock:
            self._open.add(raw)
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while (end := buffer.find(b"\n")) >= 0:
                    line, buffer = buffer[:end], buffer[end + 1 :]
                    if line.strip():
                        yield orjson.loads(line)
            if buffer.strip():
                yield orjson.loads(buffer)
        finally:
            with self._open_lock:
                self._open.discard(raw)
            # Closed, not put back in the pool: a stream left half read is no connection to reuse.
            raw.close()
            raw.release_conn()

    def shutdown_watches(self) -> None:
        """Unblock every watch reading its stream (from another thread): each one's read ends at once."""
        with self._open_lock:
            responses = list(self._open)
        for raw in responses:
            try:
                raw.shutdown()
            except (OSError, AttributeError):  # already closed, or a urllib3 without shutdown()
                pass

    def list_path(self, resource: str, namespace: str | None) -> str:
        prefix, namespaced = API_PATHS[resource]
        if namespaced and namespace is not None:
            return f"{prefix}/namespaces/{namespace}/{resource}"
        return f"{prefix}/{resource}"

    def pages(self, resource: str, namespace: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """The items of a list, page by page (limit + continue).

        A 410 on a continue token means the list would no longer be consistent: the caller
        must start that list again: this raises ``_Expired`` and ``list_all`` restarts it.
        Any other failure raises ListFailed naming the page.
        """
        path = self.list_path(resource, namespace)
        stats = self.stats.setdefault(resource, ListStats())
        token: str | None = None
        page = 0
        while True:
            page += 1
            query: list[tuple[str, Any]] = [("limit", self.config.page_size)]
            if token:
                query.append(("continue", token))
            try:
                document = self._get_json(path, query)
                items = document.get("items")
                if not isinstance(items, list):
                    raise ValueError("the answer has no items list")
            except Exception as exc:
                if token and getattr(exc, "status", None) == 410:
                    raise _Expired() from exc
                # The call's shape, not the namespace (the resource names it): one reason for many namespaces.
                shape = self.list_path(resource, None if namespace is None else "{namespace}")
                raise self._explain(exc, resource, f"on page {page} of GET {shape}") from exc
            stats.pages += 1
            stats.items += len(items)
            if page == 1 or not token:
                version = (document.get("metadata") or {}).get("resourceVersion")
                if version:
                    self.versions[(resource, namespace)] = str(version)
            yield items
            token = (document.get("metadata") or {}).get("continue") or None
            if not token:
                return

    def list_all(
        self,
        resource: str,
        namespace: str | None,
        consume: Callable[[list[dict[str, Any]]], None],
        reset: Callable[[], None],
    ) -> None:
        """Feed every page of a list to ``consume``; on an expired continue token, ``reset`` and start over once."""
        for attempt in (1, 2):
            try:
                for items in self.pages(resource, namespace):
                    consume(items)
                return
            except _Expired as exc:
                if attempt == 2:
                    raise ListFailed(
                        "the continue token expired again after the list was restarted (HTTP 410)", 410
                    ) from exc
                log.info("source %r: %s: continue token expired; restarting the list", self.source_name, resource)
                self.stats[resource].restarts += 1
                reset()


def _is_dropped_connection(exc: BaseException) -> bool:
    """A connection closed or reset under a request (not a timeout, not a refused connect: urllib3 retries those)."""
    from urllib3.exceptions import MaxRetryError, ProtocolError

    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    return isinstance(exc, (ProtocolError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError))


def _status_message(body: str | None) -> str:
    """The message of a Kubernetes Status body, if the body is one."""
    if not body:
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip().splitlines()[0][:200] if body.strip() else ""
    if isinstance(status, dict):
        return str(status.get("message") or status.get("reason") or "")
    return ""


def _join(head: str, where: str, detail: str) -> str:
    text = f"{head} {where}" if where else head
    return f"{text}: {detail}" if detail else text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _register_tokens(configuration: Any) -> None:
    for value in configuration.api_key.values():
        register_secret(str(value).removeprefix("Bearer ").removeprefix("bearer "))
