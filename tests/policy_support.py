"""Putting a policy in force the way an operator does: `inventory policy apply` (the database's policy decides).

A config's policy file is only a draft; tests that need a policy to decide apply it, as the
audit key's owner (the first apply) or an admin of the policy applied before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from inventory.cli import cli
from inventory.principals import os_user_name, system_principal


def admin_principals(**extra: Any) -> dict[str, Any]:
    """``principals:`` making the OS user running the tests an admin (the default admins: the group admins)."""
    users = {os_user_name(): ["admins"], **extra.pop("users", {})}
    return {"users": users, **extra}


def apply_policy_file(config: Path, policy: Path) -> Result:
    """`inventory -c CONFIG policy apply POLICY`, asserted to succeed."""
    result = CliRunner().invoke(cli, ["--config", str(config), "policy", "apply", str(policy)])
    assert result.exit_code == 0, result.output
    return result


def apply_policy(config: Path, policy: bytes | str | dict[str, Any], *, name: str = "policy.yaml") -> Path:
    """Write ``policy`` next to the config (where the config finds it as its draft too) and apply it.

    Unless the policy names principals itself, the OS user running the tests is made its admin, so
    that it can apply the next one.
    """
    if isinstance(policy, dict):
        document = dict(policy)
        document.setdefault("principals", admin_principals())
        data = yaml.safe_dump(document, sort_keys=False).encode()
    else:
        data = policy.encode() if isinstance(policy, str) else policy
        document = yaml.safe_load(data) or {}
        if "principals" not in document:
            data += b"\nprincipals: " + yaml.safe_dump(admin_principals(), default_flow_style=True).encode()
    path = config.parent / name
    path.write_bytes(data)
    apply_policy_file(config, path)
    return path


def apply_to_database(db: Any, policy: bytes | str) -> Any:
    """Apply a policy through the library (as the key's owner, then as an admin it names): a runner built with
    ``ToolRunner.in_force`` is decided by it."""
    from inventory.policy.applied import apply_policy as apply

    data = policy.encode() if isinstance(policy, str) else policy
    document = yaml.safe_load(data) or {}
    if "principals" not in document:
        data += b"\nprincipals: " + yaml.safe_dump(admin_principals(), default_flow_style=True).encode()
    return apply(db, data, system_principal(), label="policy.yaml")
