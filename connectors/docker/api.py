"""Talking to one Docker engine through docker-py: the client factory and one-line error reasons.

The SDK is imported inside functions only: importing this module must stay cheap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connectors.docker.config import DockerConfig
from inventory.cutoff import CollectionAbandoned, Cutoff
from inventory.errors import SourceError
from inventory.retry import RetryBudget

if TYPE_CHECKING:  # pragma: no cover
    from docker import APIClient


def engine_resource(config: DockerConfig) -> str:
    """How errors name the engine of a source."""
    return f"engine {config.url}"


def open_client(config: DockerConfig, cutoff: Cutoff | None = None, version: str = "auto") -> APIClient:
    """An ``APIClient`` of the source's engine (TLS, timeout, pool, ssh client as configured). Close it after use.

    ``cutoff``: the collection's deadline (``Connector.cutoff``); tools pass none and are never cut.
    ``version``: the API version when already known (a second client of one engine), saving the /version call.
    """
    import docker

    tls: Any = False
    if config.tls is not None:
        settings = config.tls
        for path in (settings.ca, settings.cert, settings.key):
            if path is not None and not path.is_file():
                raise SourceError(config.name, engine_resource(config), f"TLS file {path} does not exist")
        tls = docker.tls.TLSConfig(
            client_cert=(str(settings.cert), str(settings.key)) if settings.cert and settings.key else None,
            ca_cert=str(settings.ca) if settings.ca else None,
            verify=settings.verify,
        )
    try:
        # version="auto" asks /version which API the engine speaks (the one extra call).
        client = _client_class()(
            base_url=config.url,
            version=version,
            timeout=config.timeout,  # seconds as a float work
            tls=tls,
            max_pool_size=config.concurrency,
            use_ssh_client=config.ssh_client == "openssh",
            cutoff=cutoff or Cutoff(),
        )
    except Exception as exc:
        raise SourceError(config.name, engine_resource(config), describe_error(exc, config)) from exc
    if urlsplit(config.url).scheme == "unix":
        # No proxy or .netrc can apply to a unix socket; requests would still scan the
        # environment and read ~/.netrc at every call (a millisecond each).
        client.trust_env = False
    return client


@functools.cache
def _client_class() -> Callable[..., APIClient]:
    """``docker.APIClient`` whose TLS verification is the one this source configures.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a session's CA file (and
    turn ``verify: false`` back on): an engine with its own CA would then fail to verify.
    """
    import docker
    import requests.exceptions

    class SourceAPIClient(docker.APIClient):
        def __init__(self, *args: Any, cutoff: Cutoff, **kwargs: Any) -> None:
            # Set before the SDK's constructor asks the engine for its API version: that call is bounded too.
            self.cutoff = cutoff
            super().__init__(*args, **kwargs)

        def send(self, request: Any, **kwargs: Any) -> Any:
            """Every call: 429/503 with Retry-After waited out (bounded), a dropped connection sent once more.

            A proxy in front of the engine (a socket proxy, an ssh bastion's rate limit) may throttle;
            a timeout is not repeated: a frozen engine must cost one timeout per call, not two.
            """
            budget = RetryBudget()
            resent = False
            configured = kwargs.get("timeout")
            while True:
                self.cutoff.check()  # no call past the collection's deadline
                if isinstance(configured, (int, float)):
                    kwargs["timeout"] = self.cutoff.timeout(float(configured))
                try:
                    response = super().send(request, **kwargs)
                except requests.exceptions.ConnectionError as exc:
                    if resent or isinstance(exc, requests.exceptions.Timeout):
                        raise
                    resent = True
                    continue
                wait = budget.wait_for(response.status_code, response.headers.get("Retry-After"))
                if wait is None:
                    return response
                response.close()
                self.cutoff.sleep(wait)

        def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
            settings: Any = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.verify is not True:  # a CA file or False, named by the source's tls settings
                settings["verify"] = self.verify
            return settings

    return SourceAPIClient


def describe_error(exc: BaseException, config: DockerConfig, call: str | None = None) -> str:
    """A one-line reason from an SDK / requests exception, the most telling cause first, after the call that
    failed ("GET /v1.47/containers/json: HTTP 403: ..."); ``call`` names it instead ("": not named)."""
    import docker.errors
    import requests.exceptions

    chain = _chain(exc)
    # An answer refused, or none in time: the call is the news. A connection that fails is the engine's.
    for error in chain:
        if isinstance(error, CollectionAbandoned):
            return str(error)
        if isinstance(error, docker.errors.APIError) and error.response is not None:
            reason = f"HTTP {error.status_code}: {error.explanation or error.response.reason}"
            return _named(call if call is not None else _call_of(exc), reason)
    for error in chain:
        if isinstance(error, requests.exceptions.SSLError):
            return f"TLS failed: {_innermost_text(error)}"
        if isinstance(error, requests.exceptions.Timeout):
            reason = f"no answer within {config.timeout:g} s ({config.limit_hit('timeout')})"
            return _named(call if call is not None else _call_of(exc), reason)
    for error in chain:
        if isinstance(error, requests.exceptions.ConnectionError):
            return f"cannot connect: {_innermost_text(error)}"
    if isinstance(exc, docker.errors.DockerException):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _named(call: str, reason: str) -> str:
    return f"{call}: {reason}" if call else reason


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _call_of(exc: BaseException) -> str:
    """The HTTP call an SDK error came from ("GET /v1.47/info"), as requests recorded it; "" if none did."""
    for error in _chain(exc):
        request = getattr(error, "request", None) or getattr(getattr(error, "response", None), "request", None)
        method, url = getattr(request, "method", None), getattr(request, "url", None)
        if method and url:
            return f"{method} {urlsplit(str(url)).path}"
    return ""


def is_transport_error(exc: BaseException) -> bool:
    """No answer at all (timeout, refused, reset): the engine, not the request, is the trouble."""
    import requests.exceptions

    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def _innermost_text(exc: BaseException) -> str:
    """The OS-level reason buried in urllib3's wrappers ("No such file or directory", "Connection refused")."""
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
        # urllib3 keeps the socket error as a cause, a context, a .reason or an argument.
        stack.extend(
            e
            for e in (error.__cause__, error.__context__, getattr(error, "reason", None))
            if isinstance(e, BaseException)
        )
        stack.extend(a for a in error.args if isinstance(a, BaseException))
    return str(exc)
