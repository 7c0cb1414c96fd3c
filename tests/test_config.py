"""Config loading: where it is found, ${ENV}, *_file secrets, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from connectors.static.config import StaticConfig
from inventory.config import load_config
from inventory.errors import ConfigError
from inventory.redact import redact_text


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_minimal_static_source_and_default_database(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "inv.yaml", "sources:\n  - {type: static, name: lab}\n"))
    assert [s.name for s in cfg.sources] == ["lab"]
    assert cfg.database_url.startswith("sqlite:///")
    assert cfg.database_url.endswith("inventory/inventory.db")


def test_search_order_current_directory_then_user_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    user_dir = tmp_path / "xdg-config" / "inventory"
    user_dir.mkdir(parents=True)
    write(user_dir / "inventory.yaml", "sources: [{type: static, name: from-user-dir}]")
    assert load_config().sources[0].name == "from-user-dir"
    write(tmp_path / "inventory.yaml", "sources: [{type: static, name: from-cwd}]")
    assert load_config().sources[0].name == "from-cwd"


def test_no_config_file_anywhere_is_an_empty_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config()
    assert cfg.path is None and cfg.sources == []


def test_explicit_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_database_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "inv.yaml", "database: {url: 'sqlite:///relative.db'}\n")
    assert load_config(path).database_url == f"sqlite:///{tmp_path / 'relative.db'}"
    monkeypatch.setenv("INVENTORY_DATABASE_URL", "postgresql+psycopg://db.lan/inventory")
    assert load_config(path).database_url == "postgresql+psycopg://db.lan/inventory"
    assert load_config(path, database_url="sqlite:////x.db").database_url == "sqlite:////x.db"


def test_environment_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_NAME", "homelab")
    path = write(
        tmp_path / "inv.yaml",
        "sources:\n  - {type: static, name: '${LAB_NAME}', hosts: [{id: a, name: '${HOST:-fallback}'}]}\n",
    )
    cfg = load_config(path)
    assert cfg.sources[0].name == "homelab"
    assert cast(StaticConfig, cfg.sources[0]).hosts[0].name == "fallback"


def test_missing_environment_variable_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "inv.yaml", "sources:\n  - {type: static, name: '${NOT_SET_ANYWHERE}'}\n")
    with pytest.raises(
        ConfigError, match=r"inv.yaml: sources\[0\].name: environment variable NOT_SET_ANYWHERE is not set"
    ):
        load_config(path)


def test_durations_are_accepted_wherever_the_config_takes_seconds(tmp_path: Path) -> None:
    text = (
        "sync: {interval: 2m}\n"
        "notify: {timeout: 7s}\n"
        "sources:\n"
        "  - {type: static, name: lab, interval: 1h30m}\n"
        "  - {type: static, name: shed, interval: 45}\n"
    )
    cfg = load_config(write(tmp_path / "inv.yaml", text))
    assert (cfg.sync.interval, cfg.notify.timeout) == (120.0, 7.0)
    assert [s.interval for s in cfg.sources] == [5400.0, 45.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: [\n  {type: static,, }\n", r"inv.yaml: line \d+, column \d+: malformed YAML"),
        ("- just\n- a list\n", "inv.yaml: the top level must be a mapping, not list"),
        ("databse: {url: x}\n", "inv.yaml: databse: unknown key"),
        ("sources:\n  - {type: static, name: lab, colour: blue}\n", r"inv.yaml: sources\[0\].colour: unknown key"),
        (
            "sources:\n  - {type: static, name: lab}\n  - {type: static, name: lab2, hosts: [{id: a}]}\n",
            r"sources\[1\].hosts\[0\].name: Field required",
        ),
        ("sources:\n  - {name: lab}\n", r"sources\[0\].type: Field required"),
        (
            "sources:\n  - {type: nosuch, name: lab}\n",
            r"sources\[0\].type: unknown source type 'nosuch' \(available: .*static",
        ),
        (
            "sources:\n  - {type: static, name: lab, enabled: perhaps}\n",
            r"sources\[0\].enabled: Input should be a valid boolean",
        ),
        ("sync: {interval: soon}\n", r"sync.interval: Value error, not a duration|sync.interval: not a duration"),
        (
            "sources:\n  - {type: static, name: lab, interval: soon}\n",
            r"sources\[0\].interval: (Value error, )?not a duration",
        ),
        (
            "sources:\n  - {type: static, name: a}\n  - {type: static, name: a}\n",
            r"sources\[1\].name: duplicate source name 'a'",
        ),
        (
            "sources:\n  - {type: static, name: lab, workloads: [{id: w, name: w, host: ghost}]}\n",
            r"sources\[0\]: workloads\[0\].host: no declared host with id 'ghost'",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "inv.yaml", text))


def test_secret_file_is_read_and_registered_for_redaction(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from inventory.connector import Connector, ConnectorRegistry, SourceConfig

    class TokenConfig(SourceConfig):
        token: SecretStr

    class TokenConnector(Connector):
        type_name = "tokened"
        config_model = TokenConfig

    write(tmp_path / "token", "s3cr3t-canary-value\n")
    path = write(tmp_path / "inv.yaml", "sources:\n  - {type: tokened, name: t, token_file: token}\n")
    cfg = load_config(path, registry=ConnectorRegistry.of(TokenConnector))
    assert cast(TokenConfig, cfg.sources[0]).token.get_secret_value() == "s3cr3t-canary-value"
    assert "s3cr3t-canary-value" not in repr(cfg.sources[0])
    assert redact_text("GET failed with s3cr3t-canary-value") == "GET failed with ***"

    missing = write(tmp_path / "inv2.yaml", "sources:\n  - {type: tokened, name: t, token_file: /run/secrets/absent}\n")
    with pytest.raises(
        ConfigError, match=r"inv2.yaml: sources\[0\].token_file: cannot read secret file /run/secrets/absent"
    ):
        load_config(missing, registry=ConnectorRegistry.of(TokenConnector))
    absent = write(tmp_path / "inv3.yaml", "sources:\n  - {type: tokened, name: t}\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].token: Field required"):
        load_config(absent, registry=ConnectorRegistry.of(TokenConnector))
