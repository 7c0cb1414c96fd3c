"""How much of an agent's context an MCP answer takes: characters per row and per default call.

    .venv/bin/python benchmarks/bench_mcp_sizes.py [--nodes 20] [--pods 600]

A fake Kubernetes cluster (the "realistic" profile: labels, annotations, owner references)
fills a scratch SQLite database through the real connector. Printed per list tool: the answer
as the MCP server gave it before compact rows (every key, 100 rows by default, ``json.dumps``
with ``default=str``) and as it gives it now (compact rows, 50 by default), and a ``fields=["*"]`` row;
then what the output schemas add to tools/list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_kubernetes import start_fake  # noqa: E402

from connectors.kubernetes.connector import KubernetesConfig, KubernetesConnector  # noqa: E402
from inventory import listing  # noqa: E402
from inventory.principals import Principal  # noqa: E402
from inventory.query_params import LIST_QUERIES  # noqa: E402
from inventory.server.auth import EVERY_PERMISSION, TokenAuthenticator  # noqa: E402
from inventory.server.mcp_server import InventoryMCP  # noqa: E402
from inventory.server.state import ServerState  # noqa: E402
from inventory.storage.database import open_database  # noqa: E402
from inventory.sync import sync_source  # noqa: E402

OLD_LIMIT = 100


def old_text(page: dict[str, Any]) -> str:
    """The answer of the MCP server before compact rows."""
    return json.dumps(page, default=str, ensure_ascii=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=600)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        fake = start_fake(options.nodes, options.pods, tmp / "kubeconfig")
        try:
            db = open_database(f"sqlite:///{tmp / 'inventory.db'}", migrate=True)
            connector = KubernetesConnector(KubernetesConfig(name="bench", kubeconfig=tmp / "kubeconfig"))
            outcome = sync_source(db, connector)
            assert outcome.ok, outcome.describe()
        finally:
            fake.terminate()
            fake.wait()
        state = ServerState(db=db, authenticator=TokenAuthenticator(db, None))
        mcp = InventoryMCP(state, lambda _ctx: Principal("bench"), grants=lambda _p: EVERY_PERMISSION)
        with db.session() as session:
            # The answers before compact rows: every key, a REST page of 100 rows, json.dumps(default=str).
            before = {
                query.tool: listing.run_list(session, query.name, listing.validate(query.name, {}))
                for query in LIST_QUERIES.values()
            }
        print(f"{options.nodes} nodes, {options.pods} pods (realistic profile)")
        print(f"{'tool':28} {'before: row':>12} {'call':>8} {'now: row':>9} {'call':>7} {'* row':>6}")
        examples: list[str] = []
        for tool, old_page in before.items():
            new = mcp.dispatch(Principal("bench"), tool, {})
            every = mcp.dispatch(Principal("bench"), tool, {"fields": "*", "limit": OLD_LIMIT})
            assert not new.is_error and not every.is_error
            new_text = new.content[0].text  # type: ignore[union-attr]
            every_text = every.content[0].text  # type: ignore[union-attr]
            new_rows = len(json.loads(new_text)["items"])
            every_rows = len(json.loads(every_text)["items"])
            old_rows = old_page["items"]
            old = old_text(old_page)
            examples.append(f"{tool}: {json.dumps(json.loads(new_text)['items'][0], ensure_ascii=False)}")
            print(
                f"{tool:28} {len(old) // max(len(old_rows), 1):>12} {len(old):>8} "
                f"{len(new_text) // max(new_rows, 1):>9} {len(new_text):>7} {len(every_text) // max(every_rows, 1):>6}"
            )

        print("\nA compact row of each:", *examples, sep="\n")
        listed = asyncio.run(mcp.list_tools(None, None)).tools
        with_schemas = sum(len(tool.model_dump_json(by_alias=True, exclude_none=True)) for tool in listed)
        without = sum(
            len(tool.model_copy(update={"output_schema": None}).model_dump_json(by_alias=True, exclude_none=True))
            for tool in listed
        )
        print(f"\ntools/list: {len(listed)} tools (no policy tools here), {without} characters without output schemas,")
        print(f"{with_schemas} with them")


if __name__ == "__main__":
    main()
