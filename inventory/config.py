"""Loading and validating the YAML config.

Where it is looked for: ``--config`` / ``INVENTORY_CONFIG``, then
``./inventory.yaml``, then ``<user config dir>/inventory/inventory.yaml``.

Every string may reference the environment as ``${VAR}`` or ``${VAR:-default}``.
A key ``X_file`` in a source reads the secret ``X`` from that file (trailing
newline stripped). Every error names the file and the key path, e.g.
``inventory.yaml: sources[2].token: Field required``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from inventory.connector import ConnectorRegistry, Duration, SourceConfig
from inventory.errors import ConfigError, ConnectorUnavailable, did_you_mean
from inventory.logical.spec import LogicalService, LogicalServices
from inventory.notify import NotifySettings
from inventory.principals import PrincipalSettings
from inventory.redact import register_secret
from inventory.yaml_text import load_yaml

log = logging.getLogger(__name__)

DATABASE_ENV = "INVENTORY_DATABASE_URL"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def default_config_paths() -> list[Path]:
    from platformdirs import user_config_path

    return [Path("inventory.yaml"), user_config_path("inventory") / "inventory.yaml"]


def default_database_url() -> str:
    from platformdirs import user_data_path

    return f"sqlite:///{user_data_path('inventory') / 'inventory.db'}"


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None


class SyncSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Seconds between two syncs of a source in loop mode ("5m", "30s" or a number).
    interval: Duration = Field(default=300.0, gt=0)
    # Fraction of the interval added or removed at random so that sources do not march in step.
    jitter: float = Field(default=0.1, ge=0, le=1)
    # Sources collected at once (writes stay one source at a time per database).
    concurrency: int = Field(default=4, ge=1, le=64)
    # How long a source's collection may take before it is abandoned and the run is partial.
    deadline: Duration = Field(default=600.0, gt=0)


def _keep_for(value: Any) -> Any:
    """A retention window: a duration, or ``0`` / ``never`` to keep for ever (stored as 0)."""
    if isinstance(value, str) and value.strip().lower() in ("never", "forever", "0"):
        return 0.0
    return value


# Seconds a thing is kept; 0 keeps it for ever.
KeepFor = Annotated[Duration, BeforeValidator(_keep_for), Field(ge=0)]


class RetentionSettings(BaseModel):
    """How long history is kept (inventory/retention.py prunes it; the audit log is never pruned, only archived)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A removed object (with its change rows and service memberships) this long after its removal.
    removed_objects: KeepFor = 30 * 86400.0
    # Change rows older than this, of every object (a live object keeps its row and first_seen_at).
    changes: KeepFor = 180 * 86400.0
    # Sync runs older than this; each source's latest run and latest success are always kept.
    sync_runs: KeepFor = 30 * 86400.0
    # How often the sync loop (and `serve --sync`) prunes; 0: never (run `inventory db prune` instead).
    interval: KeepFor = 3600.0
    # Rows deleted per transaction: short locks, on every engine.
    batch_size: int = Field(default=5000, ge=1, le=20_000)


def _octal_mode(value: Any) -> Any:
    """A file mode written as YAML text ("0660") or as a number YAML read as octal (0o660)."""
    if isinstance(value, str):
        try:
            return int(value, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal file mode such as 0660") from None
    return value


class PolicySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The operator's draft (relative to this file; default: policy.yaml next to it): compared with the database's
    # applied policy (inventory/policy/applied.py), which alone decides; `inventory policy apply` puts it in force.
    path: str | None = None
    # After a tool call ran, how long to wait for a live watcher of its source to write the target's change, or,
    # where nobody follows the source, to re-read the target until it changed (inventory/reread.py); the call's
    # `observed` audit entry says what was seen; 0: never wait.
    observe: Duration = Field(default=30.0, ge=0)


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The audit key (created on first use, 0600); relative to this file. Default: one per database, named by
    # its id, under the user data dir (inventory/audit/<id>.key).
    key_file: str | None = None
    # The newest entry's seq and hash (default: the key file's name + ".head"); where the database role cannot write.
    head_file: str | None = None


class ServerSettings(BaseModel):
    """``server:``: where the service listens for local clients (README: "Server mode")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The Unix socket `inventory serve` listens on and the CLI's tool, approvals, tokens and audit commands
    # connect to (relative to this file); unset: direct mode. Conventionally /run/inventory/inventory.sock.
    socket: str | None = None
    # Who may connect: the socket file's mode (octal). Callers are told apart by their uid, never by a token.
    socket_mode: Annotated[int, BeforeValidator(_octal_mode), Field(ge=0, le=0o777)] = 0o666


class BackupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Where the loop writes scheduled backups (relative to this file); unset: no scheduled backups.
    dir: str | None = None
    # Time between two scheduled backups ("1d", "6h" or seconds).
    interval: Duration = Field(default=86400.0, gt=0)
    # Scheduled backups kept; older ones are deleted.
    keep: int = Field(default=30, ge=1)


class TopLevel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: DatabaseSettings = DatabaseSettings()
    policy: PolicySettings = PolicySettings()
    principals: PrincipalSettings = PrincipalSettings()
    audit: AuditSettings = AuditSettings()
    sync: SyncSettings = SyncSettings()
    backup: BackupSettings = BackupSettings()
    retention: RetentionSettings = RetentionSettings()
    server: ServerSettings = ServerSettings()
    notify: NotifySettings = NotifySettings()
    sources: list[dict[str, Any]] = Field(default_factory=list)
    services: LogicalServices = Field(default_factory=list)


@dataclass(frozen=True)
class Config:
    path: Path | None
    database_url: str
    sync: SyncSettings
    sources: list[SourceConfig] = field(default_factory=list)
    notify: NotifySettings = field(default_factory=NotifySettings)
    # Logical services declared in the config (inventory.logical).
    services: list[LogicalService] = field(default_factory=list)
    # The config's policy file: a draft (None: none named); the database's applied policy decides.
    policy_path: Path | None = None
    # After a tool call ran, seconds to watch or re-read its target for its change (policy.observe).
    observe_timeout: float = 30.0
    principals: PrincipalSettings = field(default_factory=PrincipalSettings)
    # None: the database's own key, named by its id (inventory/audit/keys.py database_secrets).
    audit_key_file: Path | None = None
    audit_head_file: Path | None = None
    backup: BackupSettings = field(default_factory=BackupSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # server.socket, anchored (None: direct mode) and server.socket_mode.
    server_socket: Path | None = None
    server_socket_mode: int = 0o666

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"no source named {name!r} (configured: {', '.join(s.name for s in self.sources) or 'none'})")


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError("config file not found", path=str(path))
        return path
    for candidate in default_config_paths():
        if candidate.is_file():
            return candidate
    return None


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    *,
    registry: ConnectorRegistry | None = None,
    database_url: str | None = None,
) -> Config:
    """Find, read and validate the config; raise ConfigError naming file and key on any problem."""
    path = find_config_file(explicit)
    if path is None:
        # No config anywhere: run with what the connectors find on this machine by themselves.
        registry = registry or ConnectorRegistry.discover()
        config = build_config({}, registry=registry, database_url=database_url)
        offered = registry.default_sources()
        for source in offered:
            log.info("no config file found: using the default source %r (%s)", source.name, source.type)
        return replace(config, sources=offered)
    return build_config(_read_yaml(path), path=path, registry=registry, database_url=database_url)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}malformed YAML: {problem}", path=str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping, not {type(data).__name__}", path=str(path))
    return data


def build_config(
    raw: dict[str, Any],
    *,
    path: Path | None = None,
    registry: ConnectorRegistry | None = None,
    database_url: str | None = None,
) -> Config:
    file_label = str(path) if path else "<config>"
    raw = _expand_env(raw, file_label, "")
    base_dir = path.parent if path else Path.cwd()
    raw = _read_notify_secret_files(raw, file_label, base_dir)
    # Every problem of the file is reported at once, not one per edit-and-retry.
    problems: list[ConfigError] = []
    top: TopLevel | None = None
    try:
        top = TopLevel.model_validate(raw)
    except ValidationError as exc:
        problems.append(_config_error(exc, file_label, prefix="", model=TopLevel))
    else:
        for target in top.notify.targets:
            _register_secrets(target)

    registry = registry or ConnectorRegistry.discover()
    sources: list[SourceConfig] = []
    seen: dict[str, str] = {}
    entries = top.sources if top is not None else raw.get("sources")
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        key = f"sources[{index}]"
        try:
            expanded_sources = _load_source(entry, key, file_label, base_dir, registry)
        except ConfigError as exc:
            problems.append(exc)
            continue
        for expanded in expanded_sources:
            if expanded.name in seen:
                message = f"duplicate source name {expanded.name!r} (also {seen[expanded.name]})"
                problems.append(ConfigError(message, path=file_label, key=f"{key}.name"))
                continue
            seen[expanded.name] = key
            expanded.declared_at(f"{file_label} {key}")
            sources.append(expanded)

    override = database_url or os.environ.get(DATABASE_ENV)
    if override:
        url = _anchor_sqlite_path(override, Path.cwd())
        url_problem = _unsupported_database(url, "--database-url / " + DATABASE_ENV, None)
    elif top is not None and top.database.url:
        url = _anchor_sqlite_path(top.database.url, base_dir)
        url_problem = _unsupported_database(url, file_label, "database.url")
    else:
        url = default_database_url()
        url_problem = None
    if url_problem is not None:
        problems.append(url_problem)
    if problems:
        raise _combined(problems)
    assert top is not None
    return Config(
        path=path,
        database_url=url,
        sync=top.sync,
        sources=sources,
        notify=top.notify,
        services=top.services,
        policy_path=_policy_path(top.policy, path, file_label),
        observe_timeout=top.policy.observe,
        principals=top.principals,
        audit_key_file=_anchor(top.audit.key_file, base_dir) if top.audit.key_file else None,
        audit_head_file=_anchor(top.audit.head_file, base_dir) if top.audit.head_file else None,
        backup=_anchored_backup(top.backup, base_dir),
        retention=top.retention,
        server_socket=_anchor(top.server.socket, base_dir) if top.server.socket else None,
        server_socket_mode=top.server.socket_mode,
    )


def _anchored_backup(settings: BackupSettings, base_dir: Path) -> BackupSettings:
    if settings.dir is None:
        return settings
    return settings.model_copy(update={"dir": str(_anchor(settings.dir, base_dir))})


def _anchor(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def _policy_path(settings: PolicySettings, config_path: Path | None, file_label: str) -> Path | None:
    """The policy the config names (it must exist), else policy.yaml next to the config file, else none."""
    if config_path is None:
        return None
    if settings.path:
        named = _anchor(settings.path, config_path.parent)
        if not named.is_file():
            raise ConfigError(f"policy file {named} not found", path=file_label, key="policy.path")
        return named
    beside = config_path.parent / "policy.yaml"
    return beside if beside.is_file() else None


def _load_source(
    entry: Any, key: str, file_label: str, base_dir: Path, registry: ConnectorRegistry
) -> list[SourceConfig]:
    if not isinstance(entry, dict):
        raise ConfigError(f"must be a mapping, not {type(entry).__name__}", path=file_label, key=key)
    type_name = entry.get("type")
    if not type_name:
        raise ConfigError("Field required", path=file_label, key=f"{key}.type")
    try:
        connector = registry.get(str(type_name))
    except ConnectorUnavailable as exc:
        raise ConfigError(str(exc), path=file_label, key=f"{key}.type") from None
    model = connector.config_model
    entry = _read_secret_files(entry, model, key, file_label, base_dir)
    try:
        config = model.model_validate(entry, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise _config_error(exc, file_label, prefix=key, model=model) from None
    _register_secrets(config)
    return connector.expand(config)


def _read_secret_files(
    entry: dict[str, Any], model: type[BaseModel], key: str, file_label: str, base_dir: Path
) -> dict[str, Any]:
    result = dict(entry)
    for name, value in entry.items():
        if not name.endswith("_file"):
            continue
        target = name[: -len("_file")]
        if target not in model.model_fields or name in model.model_fields:
            continue
        if target in entry:
            raise ConfigError(f"give either {target} or {name}, not both", path=file_label, key=f"{key}.{name}")
        secret_path = Path(str(value)).expanduser()
        if not secret_path.is_absolute():
            secret_path = base_dir / secret_path
        try:
            secret = secret_path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read secret file {secret_path}: {exc.strerror}", path=file_label, key=f"{key}.{name}"
            ) from None
        register_secret(secret)
        del result[name]
        result[target] = secret
    return result


def _read_notify_secret_files(raw: dict[str, Any], file_label: str, base_dir: Path) -> dict[str, Any]:
    """``url_file`` / ``token_file`` in notify targets, like ``*_file`` keys in sources."""
    from inventory.notify import NotifyTarget

    notify = raw.get("notify")
    if not isinstance(notify, dict) or not isinstance(notify.get("targets"), list):
        return raw
    targets = [
        _read_secret_files(t, NotifyTarget, f"notify.targets[{i}]", file_label, base_dir) if isinstance(t, dict) else t
        for i, t in enumerate(notify["targets"])
    ]
    return {**raw, "notify": {**notify, "targets": targets}}


def _register_secrets(config: BaseModel) -> None:
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr):
            register_secret(value.get_secret_value())
        elif isinstance(value, BaseModel):
            _register_secrets(value)


def _expand_env(value: Any, file_label: str, key: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set", path=file_label, key=key or None)

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, file_label, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, file_label, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _known_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The keys the model allows where ``loc`` (an unknown key's location) sits: its siblings."""
    import typing

    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        model = None
        pending = [field.annotation] if field else []
        while pending:  # Optional[X], list[X], dict[str, X]: the model inside
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
                break
            pending.extend(typing.get_args(annotation))
    if model is None:
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _config_error(
    exc: ValidationError, file_label: str, prefix: str, model: type[BaseModel] | None = None
) -> ConfigError:
    """Every error pydantic found, one per line, each naming the file and the key (an unknown key with the
    nearest known one)."""
    problems = []
    # The input is read only to choose a hint; it never goes into a message (it may be a secret).
    for error in exc.errors(include_url=False, include_input=True):
        loc = prefix
        for part in error["loc"]:
            loc = f"{loc}[{part}]" if isinstance(part, int) else (f"{loc}.{part}" if loc else str(part))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            loc_parts = tuple(error["loc"])
            message = "unknown key" + (
                did_you_mean(str(loc_parts[-1]), _known_keys(model, loc_parts)) if loc_parts else ""
            )
        elif error["type"] == "string_pattern_mismatch":
            hint = _pattern_hint(str(error["loc"][-1]) if error["loc"] else "", error.get("input"))
            if hint:
                # "key hint", not "key: hint": "token_id: <word>" reads as a secret to the redactor.
                problem = ConfigError(f"{loc} {hint}", path=file_label)
                problem.key = loc
                problems.append(problem)
                continue
        problems.append(ConfigError(message, path=file_label, key=loc or None))
    return _combined(problems)


def _pattern_hint(key: str, value: Any) -> str | None:
    """Plain words for the common mistakes that otherwise get a bare regex error."""
    if not isinstance(value, str):
        return None
    if key == "token_id" and "=" in value:
        # The secret was pasted after the id (as Proxmox shows "id=secret"); never echo it.
        return (
            "holds the token secret too (the part after '='): keep only user@realm!tokenname there, "
            "and put the secret in token_secret or token_secret_file (then rotate it if this file was shared)"
        )
    if key == "token_id" and "!" not in value:
        return "must look like user@realm!tokenname, e.g. inventory@pve!sync"
    if key == "user" and "@" not in value:
        return f"needs a realm, e.g. {value}@pam (Linux PAM) or {value}@pve (Proxmox VE users)"
    return None


def _combined(problems: list[ConfigError]) -> ConfigError:
    if len(problems) == 1:
        return problems[0]
    error = ConfigError("\n".join(str(p) for p in problems))
    error.path, error.key = problems[0].path, problems[0].key
    return error


SUPPORTED_DATABASES = ("sqlite", "postgresql")


def _unsupported_database(url: str, where: str, key: str | None) -> ConfigError | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        example = "sqlite:///inventory.db or postgresql+psycopg://user@host/inventory"
        return ConfigError(f"not a database URL (e.g. {example})", path=where, key=key)
    if backend not in SUPPORTED_DATABASES:
        message = f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://..."
        return ConfigError(message, path=where, key=key)
    return None


def _anchor_sqlite_path(url: str, base_dir: Path) -> str:
    """A relative SQLite path in the config file is relative to that file, not to the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        rest = url[len(prefix) :]
        return prefix + str((base_dir / rest).resolve())
    return url
