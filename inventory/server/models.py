"""Typed shapes of the API's answers (the OpenAPI document); the rows are the CLI's `-o json` rows.

Models allow extra keys: a field the library adds to its rows reaches API clients unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from inventory.listing import detail_model, row_model

Item = TypeVar("Item")


class Row(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = None


# The rows of hosts, workloads, services and changes derive from the object-type table (inventory/schema.py)
# and the changes' CHANGE_OUTPUT: every stored field is there, and a field added there reaches these models.
HostOut = row_model("host")
WorkloadOut = row_model("workload")
ServiceOut = row_model("service")
ChangeOut = row_model("change")
HostDetail = detail_model("host")
WorkloadDetail = detail_model("workload")
ServiceDetail = detail_model("service")


class ErrorBody(BaseModel):
    type: str  # the error's class: NotFound, UsageError, NotAuthenticated, Forbidden, DatabaseUnavailable, ...
    message: str


class ErrorOut(BaseModel):
    """Every error the server answers, whatever its status: ``{"error": {"type", "message"}}``."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


class SourceOut(Row):
    name: str
    type: str
    hosts: int
    workloads: int
    services: int
    last_status: str | None = None
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    # The latest run's warnings (a node down, a kind the account may not list), one a line.
    warnings: list[str] = []
    # Followed live (inventory/live.py): since when its watch session runs; None when polled.
    watching_since: datetime | None = None
    # The last periodic full sync of a source followed live: objects its change stream had missed.
    drift_repaired: int | None = None


class StatusOut(Row):
    """A source's freshness as `inventory status -o json` has it."""

    source: str
    type: str | None = None
    configured: bool
    last_status: str | None = None
    last_success_at: datetime | None = None
    age_seconds: float | None = None
    age: str
    last_error: str | None = None
    warnings: list[str] = []
    hosts: int
    workloads: int
    services: int


class ImpactOut(Row):
    """`inventory impact TARGET -o json`."""

    target: dict[str, Any]
    summary: str
    hosts: list[dict[str, Any]]
    workloads: list[dict[str, Any]]
    services: list[dict[str, Any]]


class ReportOut(Row):
    """`inventory report -o json`."""

    generated_at: datetime
    since: datetime
    sources: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    problem_workloads: list[dict[str, Any]]
    hosts_without_workloads: list[dict[str, Any]]


class InventoryOut(Row):
    totals: dict[str, int]
    sources: list[SourceOut]


class HealthOut(Row):
    status: str
    # Only with a token of a principal allowed to read:
    process: dict[str, Any] | None = None
    database: dict[str, Any] | None = None
    sources: list[dict[str, Any]] | None = None


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[str] | None = None


class RefreshOut(Row):
    id: str
    status: str
    sources: list[dict[str, Any]]


class ToolOut(Row):
    name: str
    summary: str
    annotations: dict[str, bool]


class ToolCallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str | None = None
    arguments: dict[str, Any] = {}
    dry_run: bool = False
    # Act for this principal (recorded as on behalf of); only where the config's principals.act_for allows it.
    actor: str | None = None


class CallOut(Row):
    tool: str
    outcome: str
    audit_seq: int
    approval_id: int | None = None


class ApprovalOut(Row):
    id: int
    requester: str
    tool: str
    status: str


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str  # approve | reject
    reason: str | None = None


class AuditOut(Row):
    seq: int
    at: datetime
    actor: str
    event: str


class VerifyOut(Row):
    ok: bool
    checked: int
    archived: int = 0
    starts_after: int = 0
    last_seq: int | None = None
    last_hash: str | None = None
    problem: dict[str, Any] | None = None
    restores: list[str] = []


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    groups: list[str] = []
    # Lifetime as `tokens create --expires` takes it ("90d", "12h"); none: never expires.
    expires: str | None = None


class TokenOut(Row):
    name: str
    groups: list[str]
    state: str


class CreatedTokenOut(Row):
    name: str
    token: str
