"""Typed shapes of the API's answers (the OpenAPI document); the rows are the CLI's `-o json` rows.

Models allow extra keys: a field the library adds to its rows reaches API clients unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

Item = TypeVar("Item")


class Row(BaseModel):
    model_config = ConfigDict(extra="allow")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = None


class ObjectRow(Row):
    id: int
    source: str
    kind: str
    external_id: str
    name: str
    status: str | None = None
    labels: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    first_seen_at: datetime | None = None
    changed_at: datetime | None = None
    removed_at: datetime | None = None


class HostOut(ObjectRow):
    hostname: str | None = None
    machine_uuid: str | None = None
    addresses: list[str] | None = None
    mac_addresses: list[str] | None = None
    backing_workload_id: int | None = None
    workloads: Any = None
    machine: int | None = None  # the machine's id (its lowest host id) when other sources see this host too


class WorkloadOut(ObjectRow):
    namespace: str | None = None
    host_id: int | None = None
    host: Any = None
    parent_id: int | None = None


class ServiceOut(ObjectRow):
    namespace: str | None = None
    members: Any = None


class ChangeOut(Row):
    id: int
    at: datetime
    source: str
    action: str
    object_type: str
    object_id: int
    kind: str | None = None
    namespace: str | None = None
    external_id: str | None = None
    name: str | None = None
    diff: dict[str, Any] | None = None
    fields: str = ""
    # Who or what made the change (inventory/cause.py's stored shape), and the same in one line.
    cause: dict[str, Any] | None = None
    by: str = "unknown"


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
