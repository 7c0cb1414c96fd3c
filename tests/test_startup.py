"""What one-shot commands load: a static `sync --once`, `--help` and `hosts list` import none of the heavy packages.

Start-up cost is CPU time (benchmarks/bench_startup.py prints it); a test timing it would fail on a slow
machine, so these read ``sys.modules`` at the exit of a real ``inventory`` process instead. Each test also
checks something that must be loaded, so that a wrapper seeing nothing cannot pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# Never loaded by a static one-shot sync, --help or hosts list; each comment says who loads it.
HEAVY = (
    "alembic",  # only to migrate: the schema gate compares the stored revision with a constant
    "rich",  # the live progress on a terminal; tables measure printable ASCII without it
    "fastapi",  # `inventory serve` and `inventory mcp`, with the next five
    "starlette",
    "uvicorn",
    "mcp",
    "jinja2",
    "httpx",
    "kubernetes",  # the SDKs, when a source of theirs runs, with the next four
    "docker",
    "proxmoxer",
    "requests",
    "urllib3",
    "prometheus_client",  # only with --metrics-textfile or --metrics-port
    "filelock",  # no longer used: the SQLite sync lock is an fcntl.flock
    "inventory.policy",  # tools are listed or run by the tool commands only
    "inventory.server",
    "inventory.loop",
)
# The other connectors: a sync relinks machines with the provider keys of the stored sources' types only.
OTHER_CONNECTORS = ("connectors.docker.connector", "connectors.kubernetes.connector", "connectors.proxmox.connector")
# SQLAlchemy's PostgreSQL dialect (and its driver) load with a PostgreSQL engine only.
POSTGRES_ONLY = ("sqlalchemy.dialects.postgresql", "psycopg")

# Runs the real command line, then writes the names in sys.modules as the process exits.
_WRAPPER = """
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "inventory"
from inventory.cli import main
main()
"""

CONFIG = """\
sources:
  - type: static
    name: homelab
    hosts:
      - {id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10]}
    workloads:
      - {id: plex, name: plex, host: nas1, status: running}
    services:
      - {id: plex, name: Plex, members: [plex]}
"""


def loaded_by(tmp_path: Path, *args: str) -> tuple[set[str], str]:
    """The modules an ``inventory *args`` process had loaded when it exited, and its stdout."""
    out = tmp_path / "modules.json"
    out.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(out), *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text(encoding="utf-8"))), done.stdout


def static_config(tmp_path: Path, database_url: str) -> list[str]:
    config = tmp_path / "inventory.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return ["-c", str(config), "--database-url", database_url]


def test_sync_once_of_a_static_source_loads_nothing_heavy(tmp_path: Path, database_url: str) -> None:
    options = static_config(tmp_path, database_url)
    migrating, _ = loaded_by(tmp_path, *options, "db", "upgrade")
    assert "alembic" in migrating  # the one command here that needs it

    loaded, output = loaded_by(tmp_path, *options, "sync", "--once")
    assert "homelab: success, 3 objects (3 created" in output
    assert {"sqlalchemy", "pydantic", "inventory.sync", "connectors.static.connector"} <= loaded
    # The sync engine writes the Core tables: the ORM and its mapped classes (~90 ms of a start) stay unloaded.
    assert sorted(loaded & {"sqlalchemy.orm", "inventory.storage.models", "inventory.audit.models"}) == []
    assert sorted(loaded & set(HEAVY)) == []
    assert sorted(loaded & set(OTHER_CONNECTORS)) == []
    on_postgres = database_url.startswith("postgresql")
    assert sorted(loaded & set(POSTGRES_ONLY)) == (sorted(POSTGRES_ONLY) if on_postgres else [])


# Counts the cyclic collections the command made before the sync's modules were all imported (inventory.sync
# ends with sync_all), and after.
_GC_WRAPPER = """
import atexit, gc, json, sys
out = sys.argv.pop(1)
counts = {"starting": 0, "working": 0}
def count(phase, info):
    if phase == "start":
        imported = hasattr(sys.modules.get("inventory.sync"), "sync_all")
        counts["working" if imported else "starting"] += 1
atexit.register(lambda: open(out, "w").write(json.dumps({**counts, "enabled": gc.isenabled()})))
sys.argv[0] = "inventory"
from inventory.cli import main
gc.callbacks.append(count)
main()
"""


def test_sync_once_collects_no_garbage_while_it_imports_and_collects_again_once_it_works(tmp_path: Path) -> None:
    options = static_config(tmp_path, f"sqlite:///{tmp_path / 'inventory.db'}")
    out = tmp_path / "gc.json"
    done = subprocess.run(
        [sys.executable, "-c", _GC_WRAPPER, str(out), *options, "sync", "--once"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    counts = json.loads(out.read_text(encoding="utf-8"))
    # Before, ~150 collections scanned the modules being imported (~20 ms of the command's CPU).
    assert counts["starting"] == 0
    # The work after the imports (a large source's, the loop's) runs with the collector on again.
    assert counts["working"] > 0 and counts["enabled"]


def test_hosts_list_and_metrics_load_only_what_they_use(tmp_path: Path, sqlite_url: str) -> None:
    options = static_config(tmp_path, sqlite_url)
    loaded_by(tmp_path, *options, "sync", "--once")  # creates the database

    loaded, output = loaded_by(tmp_path, *options, "hosts", "list")
    assert "nas.lan" in output and "inventory.queries" in loaded
    assert sorted(loaded & {*HEAVY, *POSTGRES_ONLY}) == []

    textfile = tmp_path / "sync.prom"
    loaded, _ = loaded_by(tmp_path, *options, "sync", "--once", "--metrics-textfile", str(textfile))
    assert "prometheus_client" in loaded and textfile.is_file()
    assert sorted(loaded & ({*HEAVY, *POSTGRES_ONLY} - {"prometheus_client"})) == []


def test_help_loads_no_database_and_no_config_machinery(tmp_path: Path) -> None:
    loaded, output = loaded_by(tmp_path, "--help")
    assert "sync" in output and "inventory.cli.sync" in loaded
    unwanted = {*HEAVY, *POSTGRES_ONLY, "sqlalchemy", "pydantic", "yaml", "inventory.config"}
    assert sorted(loaded & unwanted) == []
