"""Bad input gets a clear message and an exit code, never a traceback; config errors come all at once, with hints."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import POSTGRES_ADMIN_URL, require_postgres

from inventory.cli import cli


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture
def lab(tmp_path: Path, sqlite_url: str) -> Path:
    (tmp_path / "lab.yaml").write_text(
        "hosts:\n  - {id: nas1, name: nas}\nworkloads:\n  - {id: w, name: w, host: nas1}\n"
    )
    path = tmp_path / "inventory.yaml"
    path.write_text(f"database: {{url: '{sqlite_url}'}}\nsources:\n  - {{type: static, name: lab, path: lab.yaml}}\n")
    assert invoke("-c", str(path), "sync", "--once").exit_code == 0
    return path


def test_every_config_error_at_once_each_naming_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "databse: {url: x}\n"
        "sync: {interval: soon}\n"
        "sources:\n"
        "  - {type: static, name: lab, colour: blue}\n"
        "  - {type: nosuch, name: other}\n"
        "  - {type: proxmox, name: pve, url: 'https://pve:8006', user: root, password: pw}\n"
    )
    result = invoke("-c", str(path), "sources")
    assert result.exit_code == 2
    lines = [line.removeprefix("Error: ") for line in result.output.splitlines()]
    for key in (
        "databse: unknown key",
        "sync.interval:",
        "sources[0].colour: unknown key",
        "sources[1].type: unknown source type",
        "sources[2].user needs a realm",
    ):
        assert any(line.startswith(f"{path}: {key}") for line in lines), (key, lines)


def test_a_secret_pasted_into_token_id_gets_a_hint_and_is_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "sources:\n  - {type: proxmox, name: pve, url: 'https://pve:8006',"
        " token_id: 'root@pam!inventory=0b4d5ec7-canary-secret'}\n"
    )
    result = invoke("-c", str(path), "sources")
    assert result.exit_code == 2
    assert "sources[0].token_id holds the token secret too" in result.output
    assert "token_secret_file" in result.output
    assert "canary" not in result.output


def test_user_without_realm_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("sources:\n  - {type: proxmox, name: pve, url: 'https://pve:8006', user: root, password: pw}\n")
    result = invoke("-c", str(path), "sources")
    assert result.exit_code == 2
    assert "sources[0].user needs a realm, e.g. root@pam" in result.output


def test_no_config_points_at_init_not_at_a_repository_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")  # no default Docker source either
    monkeypatch.setenv("INVENTORY_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    result = invoke("sync", "--once")
    assert result.exit_code == 2
    assert "inventory init" in result.output and "example" not in result.output


def test_unsupported_database_engine_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("database: {url: 'mysql://root@db/inventory'}\n")
    result = invoke("-c", str(path), "sources")
    assert result.exit_code == 2
    assert f"{path}: database.url: unsupported database 'mysql'" in result.output
    result = invoke("--database-url", "oracle://x/y", "sources")
    assert result.exit_code == 2 and "unsupported database 'oracle'" in result.output


def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = invoke("--database-url", f"sqlite:///{tmp_path}/a-file/sub/inventory.db", "sources")
    assert result.exit_code == 1
    assert "cannot create the directory of the SQLite database" in result.output


def test_missing_postgres_database_says_so(tmp_path: Path) -> None:
    require_postgres()
    from sqlalchemy.engine import make_url

    url = (
        make_url(POSTGRES_ADMIN_URL)
        .set(database="inventory_no_such_database_xyz")
        .render_as_string(hide_password=False)
    )
    result = invoke("--database-url", url, "sources")
    assert result.exit_code == 1
    assert "does not exist on its server" in result.output and "empty" not in result.output


def test_since_too_far_back(lab: Path) -> None:
    result = invoke("-c", str(lab), "changes", "--since", "99999999d")
    assert result.exit_code == 2
    assert "'99999999d' reaches before the year 1" in result.output


def test_show_an_id_too_large_for_the_database(lab: Path) -> None:
    result = invoke("-c", str(lab), "workloads", "show", "99999999999999999999")
    assert result.exit_code in (1, 2)
    assert "99999999999999999999" in result.output


def test_metrics_textfile_that_cannot_be_written_after_a_committed_sync(lab: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    result = invoke("-c", str(lab), "sync", "--once", "--metrics-textfile", str(tmp_path / "not-a-dir" / "x.prom"))
    assert result.exit_code == 1
    assert "cannot write --metrics-textfile" in result.output and "the sync itself was committed" in result.output
    assert "lab: success" in result.output
