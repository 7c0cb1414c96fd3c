"""A starter config from what this machine has: kubeconfig contexts and a reachable local Docker engine.

Used by `inventory init`. Discovery reads files and connects to a local socket;
it never imports an SDK and never calls a remote API.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import yaml

from inventory.connector import ConnectorRegistry

log = logging.getLogger(__name__)

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.:@-]+")


@dataclass(frozen=True)
class FoundSource:
    """One source to write into the starter config, with where it came from (a YAML comment)."""

    name: str
    type: str
    settings: dict[str, str]
    found_in: str


def source_name(raw: str) -> str:
    """A context name made fit for a source name (EKS contexts are ARNs with `/`)."""
    name = _UNSAFE_NAME.sub("-", raw).strip("-._:@")
    return name or "cluster"


def discover_sources(registry: ConnectorRegistry) -> list[FoundSource]:
    """What each installed connector finds on this machine (``Connector.starter_sources``): the contexts of the
    kubeconfig kubectl would read, the Docker engine the docker CLI would use, and what other connectors offer."""
    found: list[FoundSource] = []
    taken: set[str] = set()
    for connector in registry.loadable():
        try:
            offered = connector.starter_sources()
        except Exception as exc:  # a connector's probe must not break `inventory init`
            log.warning("connector %r could not offer a starter source: %s", connector.type_name, exc)
            continue
        for starter in offered:
            name = source_name(starter.name)
            while name in taken:
                name += "-2"
            taken.add(name)
            found.append(FoundSource(name, connector.type_name, starter.settings, starter.found_in))
    return found


_PROXMOX_EXAMPLE = """\
  # A Proxmox VE cluster: an API token with the PVEAuditor role is enough to read.
  # - type: proxmox
  #   name: pve
  #   url: https://pve.example.lan:8006
  #   token_id: inventory@pve!sync          # user@realm!tokenname (no secret here)
  #   token_secret_file: /etc/inventory/proxmox_token
"""


# Written only when nothing was found: every other way to start, commented (`sources: []` stays valid).
_OTHER_EXAMPLES = """\
  # Machines you declare by hand:
  # - type: static
  #   name: homelab
  #   hosts:
  #     - {id: nas1, name: nas, hostname: nas.lan, addresses: [192.168.1.10]}
  # A Kubernetes cluster (a context of ~/.kubeconfig):
  # - type: kubernetes
  #   name: k3s
  #   context: k3s
  # A Docker engine elsewhere:
  # - type: docker
  #   name: nas
  #   url: ssh://admin@nas.lan
"""


def starter_config(found: list[FoundSource]) -> str:
    """The YAML text of the starter config: the sources found, and commented examples of the rest."""
    lines = [
        "# inventory config, written by `inventory init`. Check it with `inventory check`.",
        "# database:",
        "#   url: sqlite:///inventory.db                  # default: the user data dir; or postgresql+psycopg://...",
        "sync:",
        "  interval: 5m",
        "sources:" if found else "sources: []   # nothing found on this machine: replace [] with the examples below",
    ]
    for source in found:
        entry = {"type": source.type, "name": source.name, **source.settings}
        lines.append(f"  # found: {source.found_in}")
        dumped = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False).rstrip("\n")
        lines.extend("  " + line for line in dumped.splitlines())
    text = "\n".join(lines) + "\n" + ("" if found else _OTHER_EXAMPLES) + _PROXMOX_EXAMPLE
    return text
