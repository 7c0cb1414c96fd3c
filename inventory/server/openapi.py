"""The OpenAPI document as the server answers, and Swagger UI served from the app (no CDN, no internet).

FastAPI's document says every route may answer 422 (we answer 400) and knows nothing of the bearer
token or of our error shape; here it is completed from what the handlers really send: the bearer
scheme on every /api/v1 operation, and the error responses (server/errors.py's one shape) each can give.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from inventory.server.models import ErrorOut

DOCS_URL = "/api/docs"
OPENAPI_URL = "/api/v1/openapi.json"
ASSETS_URL = f"{DOCS_URL}/assets"

_ERRORS = {
    "400": "Bad request: a parameter unknown, missing or malformed (named in the message)",
    "401": "No valid bearer token",
    "403": "The token's groups do not grant this (or the policy denies the call)",
    "404": "No such object, route or resource",
    "429": "Too many wrong tokens from this address (Retry-After)",
    "500": "Unexpected failure (details in the server's log, never in the answer)",
    "503": "The database is not reachable now",
}
# Only where a name is resolved (an object, a target, a tool call's target): two objects may share it.
_AMBIGUOUS = {"409": "The name matches several objects; the message lists them"}
_UPSTREAM = {"502": "The tool or the source it reaches failed"}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
    }


def complete_document(document: dict[str, Any]) -> dict[str, Any]:
    """Bearer security, real error responses and no 422, on every operation of the API."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorOut"] = error_schema
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token"}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            # The token is the security scheme's, not a header parameter of each operation.
            parameters = [p for p in operation.get("parameters", []) if p.get("name", "").lower() != "authorization"]
            if parameters:
                operation["parameters"] = parameters
            else:
                operation.pop("parameters", None)
            errors = dict(_ERRORS)
            if path == "/health":
                # No token: only the status; a token that is sent must be good. 503 is the health body itself.
                operation["security"] = [{}, {"bearer": []}]
                errors = {k: v for k, v in errors.items() if k in ("400", "401", "403", "429", "500")}
            else:
                operation["security"] = [{"bearer": []}]
            if "{ident" in path or "{target" in path or method == "post":
                errors.update(_AMBIGUOUS)
            if method == "post":
                errors.update(_UPSTREAM)
            for status, description in errors.items():
                responses.setdefault(status, _error_response(description))
    return document


def install_openapi(app: FastAPI) -> None:
    """The completed document at OPENAPI_URL, Swagger UI at DOCS_URL with its assets from the installed bundle."""
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = complete_document(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )
