"""The connector interface and the registry behind the ``inventory.connectors`` entry points.

A connector knows one source system and nothing of storage: ``collect()``
returns a ``Snapshot``. Connector modules import their SDK inside
``collect()`` (or helpers it calls), never at module level, so that reading
config and starting the CLI never pays for ``import kubernetes``.

Besides collecting, a connector declares what the core needs to know about its
source: its config model, its tools (``tools()``) and its status vocabulary
(``statuses``) and kind vocabulary (``kinds``). The core finds all of them through the entry point alone.

Registration (pyproject.toml)::

    [project.entry-points."inventory.connectors"]
    static = "connectors.static.connector:StaticConnector"
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo

from inventory.cutoff import Cutoff
from inventory.errors import ConnectorUnavailable
from inventory.records import Snapshot
from inventory.timeutil import parse_duration

if TYPE_CHECKING:
    # Tools are declared only where tools are listed or run: a sync never loads the policy package.
    from inventory.policy.tools import ToolSpec

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "inventory.connectors"

# SDKs are imported under this one lock: two threads importing kubernetes and docker at once (both
# reach requests and urllib3) deadlock in Python's per-module import locks, which break the cycle by
# handing one thread a half-initialised module ("cannot import name ... from partially initialized module").
_SDK_IMPORT_LOCK = threading.Lock()


def _relative_to_config_file(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and base is not None:
        return Path(base) / value
    return value


# A file named in the config: ~ expanded, a relative path taken relative to the config file.
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config_file)]


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


# Seconds in the config, as a number or a duration such as "30s", "5m" or "1h30m".
Duration = Annotated[float, BeforeValidator(_seconds)]


class SourceConfig(BaseModel):
    """Keys every source accepts; each connector extends it with its own (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")
    enabled: bool = True
    # Seconds between syncs of this source in loop mode; None means the global interval.
    interval: Duration | None = Field(default=None, gt=0)
    # Seconds a collection may take before it is abandoned (the run is partial); None: sync.deadline.
    deadline: Duration | None = Field(default=None, gt=0)
    # In the loop and `serve --sync`, follow the source's changes as they happen where its connector can
    # (``Connector.streams``); false: poll every ``interval`` only.
    events: bool = True
    # While events flow, a full sync still runs this often (seconds) as a safety net; what it finds that
    # the events missed is counted as drift.
    full_sync_interval: Duration = Field(default=3600.0, gt=0)
    # Where the source is declared ("/etc/inventory.yaml sources[2]"), set by the config loader; None for a
    # source made in code or offered by default. Messages that hit a limit name the key to change.
    _declared_at: str | None = PrivateAttr(default=None)

    def declared_at(self, where: str) -> None:
        self._declared_at = where

    def limit_hit(self, option: str) -> str:
        """What a message adds when a limit of this source was hit, after its value: "the source's
        `timeout:`, raise it in inventory.yaml sources[2].timeout"."""
        where = f", raise it in {self._declared_at}.{option}" if self._declared_at else ""
        return f"the source's `{option}:`{where}"


@dataclass(frozen=True, init=False)
class StatusVocabulary:
    """Which status words of a source mean running, stopped or failed (compared lower-cased); others are "other".

    ``inert`` words name objects that never run (a Proxmox template): neither stopped nor failed in a
    report, never idle, and no target for the exports that reach machines (Ansible, Prometheus).
    """

    running: frozenset[str]
    stopped: frozenset[str]
    failed: frozenset[str]
    inert: frozenset[str]

    def __init__(
        self,
        *,
        running: Iterable[str] = (),
        stopped: Iterable[str] = (),
        failed: Iterable[str] = (),
        inert: Iterable[str] = (),
    ) -> None:
        object.__setattr__(self, "running", frozenset(word.lower() for word in running))
        object.__setattr__(self, "stopped", frozenset(word.lower() for word in stopped))
        object.__setattr__(self, "failed", frozenset(word.lower() for word in failed))
        object.__setattr__(self, "inert", frozenset(word.lower() for word in inert))

    def __or__(self, other: StatusVocabulary) -> StatusVocabulary:
        return StatusVocabulary(
            running=self.running | other.running,
            stopped=self.stopped | other.stopped,
            failed=self.failed | other.failed,
            inert=self.inert | other.inert,
        )

    def classify(self, status: str | None) -> str:
        """running | stopped | failed | inert | other; a word claimed by two states counts as running, then failed."""
        value = (status or "").strip().lower()
        if value in self.running:
            return "running"
        if value in self.failed:
            return "failed"
        if value in self.stopped:
            return "stopped"
        if value in self.inert:
            return "inert"
        return "other"


@dataclass(frozen=True, init=False)
class KindVocabulary:
    """Words that name the same kind, the stored word first: ``--kind deploy`` finds deployments, ``--kind vm``
    finds Proxmox guests whether the row is a host (``vm``) or a workload (``qemu``). Compared lower-cased."""

    groups: tuple[frozenset[str], ...]

    def __init__(self, *groups: Iterable[str]) -> None:
        merged: list[set[str]] = []
        for group in groups:
            words = {word.lower() for word in group}
            overlapping = [m for m in merged if m & words]
            for m in overlapping:
                words |= m
                merged.remove(m)
            merged.append(words)
        object.__setattr__(self, "groups", tuple(frozenset(m) for m in merged))

    def __or__(self, other: KindVocabulary) -> KindVocabulary:
        return KindVocabulary(*self.groups, *other.groups)

    def words(self) -> frozenset[str]:
        return frozenset().union(*self.groups)

    def equivalents(self, word: str) -> frozenset[str]:
        """Every spelling of the kind ``word`` names (the word alone when no group has it)."""
        value = word.strip().lower()
        for group in self.groups:
            if value in group:
                return group
        return frozenset({value})


class Connector:
    """Base class of connectors. Subclasses set ``type_name`` and ``config_model``, and may declare
    ``statuses`` and ``tools()``."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]] = SourceConfig
    # The status words this connector writes, sorted into running / stopped / failed (for reports).
    statuses: ClassVar[StatusVocabulary] = StatusVocabulary()
    # The kinds this connector writes with the other words users type for them (filters accept any).
    kinds: ClassVar[KindVocabulary] = KindVocabulary()
    # The SDK modules collect() and the tools import, imported once by ``load_sdk`` before threads use them.
    sdk_modules: ClassVar[tuple[str, ...]] = ()
    # Whether ``watch`` follows this source's changes as they happen.
    streams: ClassVar[bool] = False
    # This source sees a machine as one runtime on it (a Kubernetes node, a Docker engine), not as the machine
    # itself: losing it takes its own workloads, never the machine nor the other runtimes on it (impact).
    runtime: ClassVar[bool] = False
    # Workload kinds that are machines other sources may see as hosts (a hypervisor's guests): a bare name
    # given to `impact` is tried as one of these first, since a guest is the top of its machine.
    machine_kinds: ClassVar[tuple[str, ...]] = ()
    # The attribute keys ``provider_id`` reads (extracted in SQL when hosts are linked into machines).
    provider_keys: ClassVar[tuple[str, ...]] = ("provider_id",)

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        # The collection's deadline (set by the runner): a connector hands it to its client, which sends
        # no call past it and bounds every call's timeout by it (inventory/cutoff.py).
        self.cutoff = Cutoff()

    @property
    def abandoned(self) -> threading.Event:
        """Set when the collection is abandoned: a connector may check it between calls and return what it read."""
        return self.cutoff.abandoned

    @classmethod
    def load_sdk(cls) -> None:
        """Import ``sdk_modules`` under the process-wide SDK lock (cheap once they are imported).

        The runner, the loop, ``check`` and the server call it in one thread before collection threads
        start; ``collect`` calls it again, so that no path imports an SDK outside the lock.
        """
        with _SDK_IMPORT_LOCK:
            for module in cls.sdk_modules:
                try:
                    importlib.import_module(module)
                except ImportError as exc:
                    raise ConnectorUnavailable(
                        f"connector {cls.type_name!r} is unavailable: its SDK module {module!r} cannot be imported "
                        f"({exc})"
                    ) from exc

    @property
    def source_name(self) -> str:
        return self.config.name

    @classmethod
    def expand(cls, config: SourceConfig) -> list[SourceConfig]:
        """One config entry may stand for several sources (e.g. every kubeconfig context)."""
        return [config]

    @classmethod
    def default_sources(cls) -> list[SourceConfig]:
        """Sources offered when there is no config file at all (e.g. a reachable local Docker engine).

        Must be cheap and must not import the SDK: it runs on every config-less start.
        """
        return []

    @classmethod
    def provider_id(cls, attributes: Mapping[str, Any]) -> str | None:
        """The cloud-provider id a host of this source is known by, lower-cased; None when it has none.

        By default the host's own ``provider_id`` attribute (a Kubernetes node's spec.providerID, a
        hand-declared machine's); a hypervisor's connector names its guests as its cloud controller does.
        """
        own = attributes.get("provider_id")
        return str(own).lower() if own else None

    @classmethod
    def starter_sources(cls) -> list[StarterSource]:
        """What `inventory init` can write for this connector on this machine (kubeconfig contexts, a local
        engine), each with where it was found. Must be cheap and quiet: it runs on a first start."""
        return []

    @classmethod
    def tools(cls) -> Sequence[ToolSpec]:
        """The tools this connector offers, each with ``source_type == type_name``.

        Must be cheap and must not import the SDK: listing tools and checking policy call it.
        """
        return ()

    def collect(self) -> Snapshot:  # pragma: no cover - interface
        raise NotImplementedError

    def watch(self, stop: threading.Event) -> Iterator[Snapshot]:  # pragma: no cover - interface
        """Follow the source's changes: yield snapshots as they happen, until ``stop`` is set.

        The contract every streaming connector keeps (``streams = True``):

        - The core calls it after a full sync (``collect``) of the source was written; the stream must
          lose nothing from then on. It starts by reading its own position (Kubernetes: a list of each
          kind, its resourceVersion; Docker: the time before a container list; Proxmox: a first
          ``/cluster/resources``) and may yield that list as a snapshot that ``read``s the scopes it
          covers (reconciled whole, cheap when nothing changed).
        - Then it yields deltas (``Snapshot.changes()``): records of objects that changed, built exactly
          as ``collect`` builds them (same kind, external id, fields, so an unchanged object costs no
          write), ``delete`` for objects the source said are gone, and ``attribute``/``causes`` where
          the source tells who did it. A relist of one scope (a Kubernetes watch answered 410 Gone)
          is a snapshot that ``read``s that scope and holds all of it.
        - It batches: at most a few snapshots a second, however fast events arrive.
        - It reconnects by itself after a cut connection or an expired watch (with backoff), resuming
          from its position so that nothing in the gap is lost. When it cannot (the position is lost
          and a relist failed, or reconnecting failed for longer than it should wait), it raises a
          ``SourceError``: the core then runs a full sync and calls ``watch`` again.
        - It checks ``stop`` at least every second (short read timeouts) and returns promptly when set.
        - Like ``collect``, it never writes storage.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class StarterSource:
    """A source `inventory init` offers: its name before it is made unique, its settings, where it was found."""

    name: str
    settings: dict[str, str]
    found_in: str


@dataclass
class _Entry:
    name: str
    entry_point: EntryPoint | None
    loaded: type[Connector] | None = None
    error: str | None = None


@functools.cache
def installed_registry() -> ConnectorRegistry:
    """The installed connectors, discovered once per process (loading one imports no SDK)."""
    return ConnectorRegistry.discover()


@functools.cache
def installed_status_vocabulary() -> StatusVocabulary:
    """The status words every installed connector declares, pooled (read once: loading a connector imports no SDK)."""
    return installed_registry().status_vocabulary()


class ConnectorRegistry:
    """Finds connectors by type name; a connector that fails to import is disabled, not fatal."""

    def __init__(self, entries: dict[str, _Entry]) -> None:
        self._entries = entries

    @classmethod
    def discover(cls) -> ConnectorRegistry:
        found: dict[str, _Entry] = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            # The first registration of a name wins; a duplicate is reported, never merged.
            if ep.name in found:
                log.warning(
                    "connector %r registered twice; keeping %s, ignoring %s",
                    ep.name,
                    getattr(found[ep.name].entry_point, "value", None),
                    ep.value,
                )
                continue
            found[ep.name] = _Entry(ep.name, ep)
        return cls(found)

    @classmethod
    def of(cls, *connectors: type[Connector]) -> ConnectorRegistry:
        """A registry over given classes (for embedding and for tests of third-party connectors)."""
        return cls({c.type_name: _Entry(c.type_name, None, loaded=c) for c in connectors})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, type_name: str) -> type[Connector]:
        entry = self._entries.get(type_name)
        if entry is None:
            raise ConnectorUnavailable(
                f"unknown source type {type_name!r} (available: {', '.join(self.names()) or 'none'})"
            )
        if entry.loaded is None and entry.error is None:
            try:
                loaded = entry.entry_point.load()  # type: ignore[union-attr]
            except Exception as exc:  # an import failure disables this connector only
                entry.error = f"{type(exc).__name__}: {exc}"
                log.warning("connector %r is disabled: it failed to load (%s)", type_name, entry.error)
            else:
                if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
                    entry.error = f"{entry.entry_point.value} is not a Connector subclass"  # type: ignore[union-attr]
                else:
                    entry.loaded = loaded
        if entry.loaded is None:
            raise ConnectorUnavailable(f"connector {type_name!r} is unavailable: {entry.error}")
        return entry.loaded

    def load_sdks(self, type_names: Iterable[str]) -> None:
        """Import the SDKs of these source types now, one after another, before any thread collects.

        A type that cannot load is left for the run to report (as a failed source), not raised here.
        """
        for type_name in sorted(set(type_names)):
            try:
                self.get(type_name).load_sdk()
            except ConnectorUnavailable:
                continue

    def default_sources(self) -> list[SourceConfig]:
        """What every loadable connector offers when no config file exists."""
        offered: list[SourceConfig] = []
        for name in self.names():
            try:
                offered.extend(self.get(name).default_sources())
            except ConnectorUnavailable:
                continue
            except Exception as exc:  # a connector's probe must not break a config-less start
                log.warning("connector %r could not offer a default source: %s", name, exc)
        return offered

    def loadable(self, type_names: Iterable[str] | None = None) -> list[type[Connector]]:
        """Every connector that loads, or of ``type_names`` only (one that does not is logged once, by ``get``)."""
        loaded = []
        for name in self.names() if type_names is None else sorted(set(type_names)):
            try:
                loaded.append(self.get(name))
            except ConnectorUnavailable:
                continue
        return loaded

    def status_vocabulary(self) -> StatusVocabulary:
        """The status words of every loadable connector, pooled."""
        pooled = StatusVocabulary()
        for connector in self.loadable():
            pooled |= connector.statuses
        return pooled

    def runtime_types(self) -> frozenset[str]:
        """The source types that see a machine as one runtime on it (``Connector.runtime``)."""
        return frozenset(connector.type_name for connector in self.loadable() if connector.runtime)

    def machine_kinds(self) -> tuple[str, ...]:
        """Every workload kind that is a machine (``Connector.machine_kinds``), pooled."""
        return tuple(sorted({kind for connector in self.loadable() for kind in connector.machine_kinds}))

    def provider_keys(self, type_names: Iterable[str] | None = None) -> tuple[str, ...]:
        """The host attribute keys any connector's ``provider_id`` reads; with ``type_names``, only those types'
        (loading no other connector: a sync of one static source need not import the Kubernetes one)."""
        return tuple(sorted({key for connector in self.loadable(type_names) for key in connector.provider_keys}))

    def provider_id(self, type_name: str, attributes: Mapping[str, Any]) -> str | None:
        """A host's provider id, as its source's connector reads it (None for a type that is not installed)."""
        try:
            return self.get(type_name).provider_id(attributes)
        except ConnectorUnavailable:
            return None

    def kind_vocabulary(self) -> KindVocabulary:
        """The kind words of every loadable connector, pooled."""
        pooled = KindVocabulary()
        for connector in self.loadable():
            pooled |= connector.kinds
        return pooled

    def status(self) -> list[dict[str, Any]]:
        """Load every connector and say which work (for `inventory connectors`)."""
        rows = []
        for name in self.names():
            try:
                cls = self.get(name)
                rows.append({"type": name, "status": "ok", "module": cls.__module__, "error": None})
            except ConnectorUnavailable as exc:
                rows.append({"type": name, "status": "disabled", "module": None, "error": str(exc)})
        return rows
