"""`/api/v1/inventory/...`, `/api/v1/changes`, `/api/v1/sources`: the CLI's queries over HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from inventory import queries
from inventory.errors import UsageError
from inventory.server.auth import Permission, Principal
from inventory.server.models import ChangeOut, HostOut, InventoryOut, Page, ServiceOut, SourceOut, WorkloadOut
from inventory.server.pagination import DEFAULT_PAGE, MAX_PAGE, decode_cursor, json_response, page_response
from inventory.server.state import ServerState, current_state, require

router = APIRouter(prefix="/api/v1")
reader = Depends(require(Permission.READ))

LIMIT = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Rows per page.")
CURSOR = Query(None, description="next_cursor of the previous page.")
OBJECT_TYPES = {"hosts": "host", "workloads": "workload", "services": "service"}


async def object_filter(
    source: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    name: str | None = Query(None, description="Name glob, e.g. web-*"),
    label: list[str] = Query([], description="kubectl label selector: k=v, k!=v, k in (a,b), k, !k (repeatable)"),
    namespace: str | None = Query(None, description="Namespace or glob, e.g. app-*"),
    host: str | None = Query(None, description="Workloads on this host (name or id)"),
    include_removed: bool = False,
) -> dict[str, Any]:
    return {
        "source": source,
        "kind": kind,
        "status": status,
        "name": name,
        "labels": queries.parse_labels(label),
        "namespace": namespace,
        "host": host,
        "include_removed": include_removed,
    }


def list_page(
    state: ServerState, plural: str, filters: dict[str, Any], limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], int]:
    """One page of hosts, workloads or services, fetched with one row more than the page to see if more follow."""
    offset = decode_cursor(cursor, {"list": plural, **filters})
    flt = queries.ObjectFilter(**filters, limit=limit + 1, offset=offset)
    with state.db.session() as session:
        rows: list[dict[str, Any]] = getattr(queries, f"list_{plural}")(session, flt)
    return rows, offset


def _list_route(plural: str, model: type) -> None:
    def list_objects(
        filters: dict[str, Any] = Depends(object_filter),
        limit: int = LIMIT,
        cursor: str | None = CURSOR,
        state: ServerState = Depends(current_state),
        _principal: Principal = reader,
    ) -> Response:
        if plural == "hosts" and (filters["namespace"] or filters["host"]):
            raise UsageError("hosts have no namespace or host filter")
        if plural == "services" and filters["host"]:
            raise UsageError("services have no host filter")
        rows, offset = list_page(state, plural, filters, limit, cursor)
        return page_response(rows, limit, offset, {"list": plural, **filters})

    def show_object(
        ident: str,
        source: str | None = Query(None, description="The object of this source (two share the name)."),
        state: ServerState = Depends(current_state),
        _principal: Principal = reader,
    ) -> Response:
        with state.db.session() as session:
            return json_response(queries.show_object(session, OBJECT_TYPES[plural], ident, source=source))

    router.add_api_route(
        f"/inventory/{plural}",
        list_objects,
        methods=["GET"],
        response_model=Page[model],  # type: ignore[valid-type]
        summary=f"List {plural}",
    )
    router.add_api_route(
        f"/inventory/{plural}/{{ident:path}}",
        show_object,
        methods=["GET"],
        response_model=model,
        summary=f"One {OBJECT_TYPES[plural]} with links and recent changes",
    )


_list_route("hosts", HostOut)
_list_route("workloads", WorkloadOut)
_list_route("services", ServiceOut)


@router.get(
    "/inventory", response_model=InventoryOut, summary="Counts per source and object type, last sync per source"
)
def inventory_counts(state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    with state.db.session() as session:
        sources = queries.list_sources(session)
    totals = {plural: sum(s[plural] for s in sources) for plural in OBJECT_TYPES}
    return json_response({"totals": totals, "sources": sources})


@router.get("/sources", response_model=list[SourceOut], summary="Sources with their last run and live object counts")
def sources(state: ServerState = Depends(current_state), _principal: Principal = reader) -> Response:
    with state.db.session() as session:
        return json_response(queries.list_sources(session))


@router.get("/changes", response_model=Page[ChangeOut], summary="What changed, oldest first")
def changes(
    since: str = Query("1d", description="A duration (1h, 7d) or an ISO time."),
    until: str | None = None,
    source: str | None = None,
    kind: str | None = None,
    type: str | None = Query(None, pattern="^(host|workload|service)$"),
    action: str | None = Query(None, pattern="^(created|updated|removed|revived)$"),
    limit: int = LIMIT,
    cursor: str | None = CURSOR,
    state: ServerState = Depends(current_state),
    _principal: Principal = reader,
) -> Response:
    rows, offset, filters = change_page(
        state, since, until, source=source, kind=kind, object_type=type, action=action, limit=limit, cursor=cursor
    )
    return page_response(rows, limit, offset, filters)


def change_page(
    state: ServerState, since: str, until: str | None, *, limit: int, cursor: str | None, **filters: Any
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    from inventory.timeutil import parse_period

    try:
        since_at, until_at = parse_period(since, until)
        assert since_at is not None  # since has a default
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fingerprint = {"list": "changes", "since": since, "until": until, **filters}
    offset = decode_cursor(cursor, fingerprint)
    with state.db.session() as session:
        rows = queries.list_changes(session, since=since_at, until=until_at, limit=limit + 1, offset=offset, **filters)
    return rows, offset, fingerprint


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

    with state.db.session() as session:
        return json_response(target_groups(session, port=port, sources=source, kinds=kind))
