"""`/api/v1/inventory/...`, `/api/v1/changes`, `/api/v1/sources`, impact, report, status: the CLI's queries over HTTP.

The list routes are generated from the declared list queries (inventory/query_params.py): their
query string is validated by the query's model (unknown parameters refused) and run by
inventory/listing.py, as MCP and the web run them.
"""

# No `from __future__ import annotations`: FastAPI reads the generated routes' annotations as objects.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from inventory import listing, queries
from inventory.query_params import LIST_QUERIES, ListQuery
from inventory.server.auth import Permission, Principal
from inventory.server.models import ImpactOut, InventoryOut, ReportOut, SourceOut, StatusOut
from inventory.server.pagination import json_response
from inventory.server.state import ServerState, current_state, require

router = APIRouter(prefix="/api/v1")
reader = Depends(require(Permission.READ))
OBJECT_TYPES = {"hosts": "host", "workloads": "workload", "services": "service"}


def _list_route(query: ListQuery) -> None:
    model = listing.params_model(query.name)

    def list_rows(
        params: Annotated[model, Query()],  # type: ignore[valid-type]
        state: ServerState = Depends(current_state),
        _principal: Principal = reader,
    ) -> Response:
        checked: Any = params
        values = checked.model_dump() if isinstance(checked, BaseModel) else {}
        with state.db.read_session() as session:
            return json_response(listing.run_list(session, query.name, values))

    path = "/changes" if query.row == "change" else f"/inventory/{query.name}"
    description = f"Sortable by: {', '.join(query.sortable)} (sort=-name,status). Pages by keyset cursor."
    router.add_api_route(
        path,
        list_rows,
        methods=["GET"],
        response_model=listing.page_model(query.row),
        summary=query.summary,
        description=description,
        name=f"list_{query.name}",
    )


def _show_route(plural: str) -> None:
    object_type = OBJECT_TYPES[plural]

    def show_object(
        ident: str,
        source: str | None = Query(None, description="The object of this source (two share the name)."),
        state: ServerState = Depends(current_state),
        _principal: Principal = reader,
    ) -> Response:
        with state.db.read_session() as session:
            return json_response(queries.show_object(session, object_type, ident, source=source))

    router.add_api_route(
        f"/inventory/{plural}/{{ident:path}}",
        show_object,
        methods=["GET"],
        response_model=listing.detail_model(object_type),
        summary=f"One {object_type} with links and recent changes",
        name=f"show_{object_type}",
    )


for _query in LIST_QUERIES.values():
    _list_route(_query)
for _plural in OBJECT_TYPES:
    _show_route(_plural)


@router.get(
    "/inventory", response_model=InventoryOut, summary="Counts per source and object type, last sync per source"
)
def inventory_counts(state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    with state.db.read_session() as session:
        sources = queries.list_sources(session)
    totals = {plural: sum(s[plural] for s in sources) for plural in OBJECT_TYPES}
    return json_response({"totals": totals, "sources": sources})


@router.get("/sources", response_model=list[SourceOut], summary="Sources with their last run and live object counts")
def sources(state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    with state.db.read_session() as session:
        return json_response(queries.list_sources(session))


@router.get(
    "/impact/{target:path}",
    response_model=ImpactOut,
    summary="What goes with a host or workload (as `inventory impact TARGET -o json`)",
)
def impact(target: str, state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    from inventory.documents import impact_document

    with state.db.read_session() as session:
        return json_response(impact_document(session, target, state.logical_services))


@router.get("/report", response_model=ReportOut, summary="`inventory report -o json`: counts, changes, problems")
def report(
    since: str = Query("1d", description="Changes in this period: a duration (1h, 7d) or an ISO time."),
    state: ServerState = Depends(current_state),
    _principal: Principal = reader,
) -> Response:
    from inventory.documents import report_document

    with state.db.read_session() as session:
        return json_response(report_document(session, since, state.logical_services))


@router.get("/status", response_model=list[StatusOut], summary="`inventory status -o json`: per source freshness")
def status(state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    from inventory.report import source_status

    configured: list[tuple[str, str]] = []
    if state.refresher is not None:
        configured = [(s.name, s.type) for s in state.refresher.config.sources if s.enabled]
    with state.db.read_session() as session:
        return json_response(source_status(session, configured))


@router.get(
    "/sd/prometheus",
    summary="Prometheus http_sd: one target group per host address (as `inventory export prometheus-sd`)",
)
def prometheus_sd(
    port: int = Query(9100, description="The exporter's port on every target."),
    source: list[str] = Query([], description="Only hosts of these sources (repeatable)."),
    kind: list[str] = Query([], description="Only hosts of these kinds (repeatable)."),
    state: ServerState = Depends(current_state),
    _principal: Principal = reader,
) -> Response:
    from inventory.exports.prometheus import target_groups

    with state.db.read_session() as session:
        return json_response(target_groups(session, port=port, sources=source, kinds=kind))
