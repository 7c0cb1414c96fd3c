"""`inventory serve`: the REST API, the MCP endpoint and the web UI over the library API.

FastAPI, uvicorn, jinja2 and the ``mcp`` SDK are imported only from this package, which only
``inventory serve`` and ``inventory mcp`` load.
"""

from inventory.server.app import create_app

__all__ = ["create_app"]
