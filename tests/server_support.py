"""Helpers shared by the server's tests: a synced static lab, tokens for each group, the app over it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inventory.config import Config, build_config
from inventory.connector import ConnectorRegistry
from inventory.principals import Principal
from inventory.storage.database import Database
from inventory.sync import sync_all

GROUPS = {
    "viewer": ["viewers"],
    "operator": ["operators"],
    "agent": ["agents"],
    "approver": ["approvers"],
    "admin": ["admins"],
    "nobody": [],
}


def write_lab(path: Path, hosts: int = 5, pods_per_host: int = 3) -> Path:
    data: dict[str, Any] = {
        "hosts": [
            {
                "id": f"h{i}",
                "name": f"node-{i}",
                "hostname": f"node-{i}.lan",
                "addresses": [f"10.0.0.{i}"],  # with the hostname, what links a lab's host to an extra's
                "labels": {"rack": "a" if i % 2 else "b"},
            }
            for i in range(hosts)
        ],
        "workloads": [
            {"id": f"w{i}-{j}", "name": f"app-{i}-{j}", "host": f"h{i}", "status": "stopped" if j == 0 else "running"}
            for i in range(hosts)
            for j in range(pods_per_host)
        ],
        "services": [{"id": "web", "name": "web", "members": [f"w0-{j}" for j in range(pods_per_host)]}],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def lab_config(tmp_path: Path, database_url: str, **sources: Path) -> Config:
    raw = {
        "database": {"url": database_url},
        "sources": [{"type": "static", "name": name, "path": str(file)} for name, file in sources.items()],
    }
    return build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.discover())


# Who creates the tests' tokens (as `inventory tokens create` run by this OS user would).
TOKEN_ISSUER = Principal.of("token-issuer", groups=["admins"])


@dataclass
class Tokens:
    by_name: dict[str, str]

    def header(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_name[name]}"}


def make_tokens(db: Database) -> Tokens:
    """One token per entry of GROUPS, created as `inventory tokens create NAME --group G` creates them."""
    from inventory.tokens import create_token

    return Tokens(
        {name: create_token(db, name, groups=tuple(groups), by=TOKEN_ISSUER) for name, groups in GROUPS.items()}
    )


def synced(db: Database, config: Config) -> None:
    outcomes = sync_all(db, config, ConnectorRegistry.discover())
    assert all(o.ok for o in outcomes), [o.describe() for o in outcomes]


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def kubernetes_lab(db: Database, tmp_path: Path, cluster: Any) -> tuple[Any, Config]:
    """A fake cluster synced through the real connector, and the ToolRunner the CLI would build over it."""
    from connectors.kubernetes.fake.server import write_kubeconfig
    from inventory.policy.execute import ToolRunner
    from inventory.policy.registry import ToolRegistry
    from inventory.policy.rules import load_policy

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", {"lab": cluster})
    raw = {
        "sources": [
            {"type": "kubernetes", "name": "lab", "kubeconfig": str(kubeconfig), "context": "lab", "timeout": 5}
        ]
    }
    config = build_config(raw, path=tmp_path / "inventory.yaml", registry=ConnectorRegistry.discover())
    synced(db, config)
    tools = ToolRegistry.discover()
    policy = load_policy(PROJECT_ROOT / "config" / "policy.yaml", known_tools=tools.names())
    return ToolRunner(db, policy, tools, source_config=config.source), config
