"""The one place that talks to a Proxmox VE API through ``proxmoxer``: auth, TLS, timeouts, retries.

``proxmoxer`` and ``requests`` are imported when a client is built, never when
this module is imported (the CLI must start fast). Every failure comes out as
``ApiCallFailed`` naming the resource, with the SDK's exception chained; no
message carries the token or the password (they travel in headers and form
bodies only, never in URLs).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any, cast

from connectors.proxmox.config import ProxmoxConfig
from inventory.cutoff import CollectionAbandoned, Cutoff
from inventory.errors import SourceApiError, SourceError
from inventory.retry import UnansweredInARow, retry_after_seconds

log = logging.getLogger(__name__)

# Answers worth a second try: pveproxy overloaded or restarting, or it could not reach the
# node it proxies to (595/596/597/599 are its "connection to the node failed" codes).
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 595, 596, 597, 599})
_BACKOFF_SECONDS = 0.2
_BACKOFF_CAP_SECONDS = 2.0
# Throttled ("429 Too Many Requests", or 503 with Retry-After): wait what the server asks, up to this.
_THROTTLED_STATUSES = frozenset({429, 503})
_RETRY_AFTER_CAP_SECONDS = 30.0
# Calls in a row to one node (or to the API itself) that timed out before the rest are not sent:
# a hung node costs about one timeout per worker, not one per guest.
SILENT_AFTER_TIMEOUTS = 3


class ApiCallFailed(SourceApiError):
    """One API call failed for good (after retries). ``message`` starts with the call that failed, when known
    ("GET /api2/json/nodes/pve1/status: HTTP 500 ..."); ``reason`` is what the server or the transport said."""

    def __init__(self, resource: str, reason: str, *, status: int | None = None, call: str | None = None) -> None:
        message = f"{call}: {reason}" if call else reason
        super().__init__(f"{resource}: {message}")
        self.resource = resource
        self.reason = reason
        self.message = message
        self.status = status

    @property
    def permission_denied(self) -> bool:
        return self.status == 403

    @property
    def unauthenticated(self) -> bool:
        return self.status == 401


class ProxmoxClient:
    """A thread-safe wrapper over one ``ProxmoxAPI``: counts calls, retries transient failures."""

    def __init__(self, config: ProxmoxConfig, cutoff: Cutoff | None = None) -> None:
        from urllib.parse import urlsplit

        import requests
        from proxmoxer import AuthenticationError, ProxmoxResource
        from proxmoxer.backends.https import Backend
        from proxmoxer.core import ResourceException

        self._config = config
        # No call is sent past the collection's deadline, and none outlives it by more than a grace.
        self._cutoff = cutoff or Cutoff()
        self._lock = threading.Lock()
        self.calls = 0
        parts = urlsplit(config.url)
        host, port = parts.hostname or "", parts.port or 8006
        if config.fingerprint:
            verify: bool | str = False  # the pinned fingerprint replaces chain verification
        elif not config.verify_tls:
            verify = False
            log.warning("source %r: TLS certificate verification is off (verify_tls: false)", config.name)
        elif config.ca_file:
            verify = str(config.ca_file)
        else:
            # As requests would (trust_env is switched off below): a CA bundle named in the environment.
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        common: dict[str, Any] = {"port": port, "verify_ssl": verify, "timeout": config.timeout}
        if parts.path.strip("/"):
            common["path_prefix"] = parts.path.strip("/")
        try:
            # What ProxmoxAPI does, through proxmoxer's public pieces (its https Backend and
            # ProxmoxResource), so that the session is ours to tune rather than reached into.
            if config.token_id:
                user, _, token_name = config.token_id.partition("!")
                secret = config.token_secret.get_secret_value() if config.token_secret else ""
                backend = Backend(host, user=user, token_name=token_name, token_value=secret, **common)
            else:
                password = config.password.get_secret_value() if config.password else ""
                self._count()
                backend = Backend(host, user=config.user, password=password, **common)
        except AuthenticationError as exc:
            # proxmoxer's message names user and URL only, never the password.
            raise ApiCallFailed("login", f"the user/password was rejected ({exc})", status=401) from exc
        except requests.exceptions.RequestException as exc:
            message = describe_transport_error(exc)
            if isinstance(exc, requests.exceptions.Timeout):
                message += f" after {config.timeout:g}s ({config.limit_hit('timeout')})"
            raise ApiCallFailed("login", message, call="POST /api2/json/access/ticket") from exc
        self._session = backend.get_session()
        # requests re-reads the environment (proxies, CA bundle) on every call, which costs more
        # CPU than the rest of a call to a nearby node; read the proxy settings once instead.
        self._session.proxies.update(requests.utils.get_environ_proxies(config.url))
        self._session.trust_env = False
        # proxmoxer's ResourceException carries no headers: keep each thread's last Retry-After.
        self._last_answer = threading.local()
        self._session.hooks["response"].append(self._note_retry_after)
        self._mount_adapter(requests)
        self._api = ProxmoxResource(
            base_url=backend.get_base_url(), session=self._session, serializer=backend.get_serializer()
        )
        # Kept on the instance so that get() can name them without importing the SDK at module level.
        self._resource_exception: type[Exception] = ResourceException
        self._request_exception: type[Exception] = requests.exceptions.RequestException
        self._timeout_exception: type[Exception] = requests.exceptions.Timeout
        # Timeouts in a row per node ("" for the API itself); see SILENT_AFTER_TIMEOUTS.
        self._timeouts: dict[str, UnansweredInARow] = {}

    def _mount_adapter(self, requests: Any) -> None:
        """Size the connection pool to the worker count; pin the certificate when asked to."""
        fingerprint = self._config.fingerprint
        cutoff = self._cutoff

        class _Adapter(requests.adapters.HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                if fingerprint:
                    kwargs["assert_fingerprint"] = fingerprint
                super().init_poolmanager(*args, **kwargs)

            def send(self, request: Any, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
                if isinstance(timeout, (int, float)):  # proxmoxer passes the source's timeout as one number
                    timeout = cutoff.timeout(float(timeout))
                return super().send(request, *args, timeout=timeout, **kwargs)

        self._session.mount("https://", _Adapter(pool_connections=2, pool_maxsize=max(self._config.concurrency, 2)))

    def _note_retry_after(self, response: Any, *_args: Any, **_kwargs: Any) -> None:
        self._last_answer.retry_after = retry_after_seconds(response.headers.get("Retry-After"))

    def _count(self) -> None:
        with self._lock:
            self.calls += 1

    def get_list(self, resource: str, path: str, **params: Any) -> list[dict[str, Any]]:
        return self._shaped(resource, self.get(resource, path, **params), list)

    def get_dict(self, resource: str, path: str, *, retry: bool = True, **params: Any) -> dict[str, Any]:
        return self._shaped(resource, self.get(resource, path, retry=retry, **params), dict)

    @staticmethod
    def _shaped(resource: str, answer: Any, shape: type) -> Any:
        if not isinstance(answer, shape) or (
            shape is list and not all(isinstance(item, dict) for item in cast("list[Any]", answer))
        ):
            raise ApiCallFailed(
                resource, f"malformed answer: expected a JSON {shape.__name__}, got {type(answer).__name__}"
            )
        return answer

    def get(self, resource: str, path: str, *, retry: bool = True, **params: Any) -> Any:
        """GET ``path`` (e.g. "cluster/resources"); ``resource`` names it in errors."""
        # The calls not retried are the guest agent's: an agent that hangs says nothing of its node.
        retries = self._config.retries if retry else 0
        return self._call("get", resource, path, retries=retries, params=params, watch_node=retry)

    def post(self, resource: str, path: str, **params: Any) -> Any:
        """POST ``path`` once (a change is never repeated on a transient failure); returns the answer's data."""
        return self._call("post", resource, path, retries=0, params=params)

    def delete(self, resource: str, path: str, **params: Any) -> Any:
        """DELETE ``path`` once; returns the answer's data (for a guest, the task id)."""
        return self._call("delete", resource, path, retries=0, params=params)

    def _call(
        self, method: str, resource: str, path: str, *, retries: int, params: dict[str, Any], watch_node: bool = True
    ) -> Any:
        attempts = 1 + retries
        node = _node_of(path) if watch_node else None
        call = f"{method.upper()} /api2/json/{call_shape(path)}"
        for attempt in range(attempts):
            self._refuse_if_silent(resource, node)
            self._refuse_past_cutoff(resource)
            self._count()
            try:
                answer = getattr(self._api(path), method)(**params)
            except self._resource_exception as exc:
                self._note_answer(node)  # an error, but an answer: the node is there
                status = int(exc.status_code)  # type: ignore[attr-defined]
                message = f"HTTP {status} {exc.content or exc.status_message or ''}".strip()  # type: ignore[attr-defined]
                if status in _RETRY_STATUSES and attempt + 1 < attempts:
                    wait = getattr(self._last_answer, "retry_after", None) if status in _THROTTLED_STATUSES else None
                    self._back_off(resource, message, attempt, wait)
                    continue
                raise ApiCallFailed(resource, message, status=status, call=call) from exc
            except self._request_exception as exc:
                message = describe_transport_error(exc)
                if isinstance(exc, self._timeout_exception):
                    # A node that does not answer in time will not answer the same call sooner: not asked again.
                    self._note_timeout(node)
                    limit = f"after {self._config.timeout:g}s ({self._config.limit_hit('timeout')})"
                    raise ApiCallFailed(resource, f"{message} {limit}", call=call) from exc
                # A dropped or refused connection (pveproxy restarting) is asked once more.
                if not _is_tls_error(exc) and attempt == 0 and attempts > 1:
                    self._back_off(resource, message, attempt)
                    continue
                raise ApiCallFailed(resource, message, call=call) from exc
            self._note_answer(node)
            # proxmoxer hands back {"errors": <the raw body>} instead of raising when a body is not JSON.
            if isinstance(answer, dict) and list(answer) == ["errors"] and isinstance(answer["errors"], bytes):
                raise ApiCallFailed(resource, "malformed answer: the body is not JSON", call=call)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _refuse_past_cutoff(self, resource: str) -> None:
        try:
            self._cutoff.check()
        except CollectionAbandoned as exc:
            raise ApiCallFailed(resource, str(exc)) from exc

    def _timeouts_of(self, node: str | None) -> UnansweredInARow | None:
        if node is None:
            return None
        with self._lock:
            return self._timeouts.setdefault(node, UnansweredInARow(SILENT_AFTER_TIMEOUTS))

    def _refuse_if_silent(self, resource: str, node: str | None) -> None:
        timeouts = self._timeouts_of(node)
        if timeouts is not None and timeouts.gone.is_set():
            where = f"node {node}" if node else "the API"
            raise ApiCallFailed(
                resource,
                f"not sent: {where} stopped answering ({SILENT_AFTER_TIMEOUTS} calls in a row timed out after "
                f"{self._config.timeout:g}s, {self._config.limit_hit('timeout')})",
            )

    def _note_timeout(self, node: str | None) -> None:
        timeouts = self._timeouts_of(node)
        if timeouts is not None:
            timeouts.unanswered()

    def _note_answer(self, node: str | None) -> None:
        timeouts = self._timeouts_of(node)
        if timeouts is not None:
            timeouts.answered()

    def _back_off(self, resource: str, message: str, attempt: int, retry_after: float | None = None) -> None:
        if retry_after is not None:
            delay = min(retry_after, _RETRY_AFTER_CAP_SECONDS)
        else:
            delay = min(_BACKOFF_SECONDS * 2**attempt, _BACKOFF_CAP_SECONDS)
        log.debug("source %r, %s: %s; retrying in %.1fs", self._config.name, resource, message, delay)
        try:
            self._cutoff.sleep(delay)
        except CollectionAbandoned as exc:
            raise ApiCallFailed(resource, str(exc)) from exc

    def close(self) -> None:
        self._session.close()


def open_client(config: ProxmoxConfig, cutoff: Cutoff | None = None) -> ProxmoxClient:
    """A logged-in client of the source; a failed login is a SourceError naming the source. Close it after use.

    ``cutoff``: the collection's deadline (``Connector.cutoff``); tools pass none and are never cut.
    """
    try:
        return ProxmoxClient(config, cutoff)
    except ApiCallFailed as exc:
        raise SourceError(config.name, exc.resource, exc.message) from exc


def _is_tls_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, requests.exceptions.SSLError)


def call_shape(path: str) -> str:
    """A path with its node and guest id as placeholders ("nodes/{node}/qemu/{vmid}/config"): the resource a
    failure is reported under names them, and the same failure of many guests stays one summary line."""
    shape = re.sub(r"^nodes/[^/]+", "nodes/{node}", path.strip("/"))
    return re.sub(r"/\d+(?=/|$)", "/{vmid}", shape)


def _node_of(path: str) -> str:
    """The node a call is proxied to ("nodes/pve2/qemu/100/config" -> "pve2"); "" for cluster-wide calls."""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) > 1 and parts[0] == "nodes" else ""


def describe_transport_error(exc: BaseException) -> str:
    """A one-line reason for a connection-level failure, with a hint where one helps."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        if "fingerprint" in text.lower():
            return "the server certificate does not match the pinned fingerprint"
        return (
            "TLS certificate verification failed (a Proxmox VE node's own certificate is signed by the cluster's "
            "pve-root-ca: set ca_file to /etc/pve/pve-root-ca.pem, or pin fingerprint)"
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect (connection refused or host unreachable)"
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
