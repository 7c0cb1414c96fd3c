"""Tell people when something needs them: a source failed, objects were removed, a DESTRUCTIVE tool call,
a tool call waits for approval.

Targets (config ``notify.targets``):

- ``webhook``: POST of one JSON document (``event``, ``title``, ``message``, ``source``, ``details``, ``at``);
- ``ntfy``: POST of the message text to ``<server>/<topic>`` with Title / Priority / Tags headers
  (ntfy's publish API), optional access token sent as ``Authorization: Bearer``;
- ``slack`` / ``discord``: the incoming-webhook payloads (``{"text": ...}`` / ``{"content": ...}``);
  Mattermost, Rocket.Chat and others that accept the Slack shape use ``slack``.

Sent with httpx, with a timeout and one retry on a network error or a 5xx/429 answer. A
notification that fails is logged (target named by type and host, never by its URL, since
a Slack or Discord webhook URL is itself the secret) and never fails the sync.

    notify:
      events: [source_failed, objects_removed, destructive_tool, approval_pending]
      targets:
        - {type: ntfy, server: https://ntfy.sh, topic: homelab-inventory, token_file: /run/secrets/ntfy}
        - {type: slack, url_file: /run/secrets/slack_webhook, events: [source_failed]}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from inventory.connector import Duration
from inventory.outcome import SourceOutcome, SyncStatus
from inventory.redact import redact_text, register_secret
from inventory.timeutil import utcnow

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

EventName = Literal["source_failed", "objects_removed", "destructive_tool", "approval_pending"]
ALL_EVENTS: tuple[EventName, ...] = ("source_failed", "objects_removed", "destructive_tool", "approval_pending")
# ntfy priorities 1..5: a failure, a destructive call or a call someone must approve is "high", a removal "default".
_NTFY_PRIORITY = {
    "source_failed": "high",
    "objects_removed": "default",
    "destructive_tool": "high",
    "approval_pending": "high",
}
_NTFY_TAGS = {
    "source_failed": "warning",
    "objects_removed": "wastebasket",
    "destructive_tool": "rotating_light",
    "approval_pending": "hourglass",
}


class NotifyTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "ntfy", "slack", "discord"]
    # webhook / slack / discord: the full URL (a Slack or Discord URL is a secret: give it as url_file).
    url: SecretStr | None = None
    # ntfy: server and topic (the topic name is the only protection of a public topic).
    server: str = "https://ntfy.sh"
    topic: str | None = None
    token: SecretStr | None = None
    # Only these events go to this target; None means the section's events.
    events: list[EventName] | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> NotifyTarget:
        if self.type == "ntfy":
            if not self.topic and self.url is None:
                raise ValueError("an ntfy target needs topic (or the full topic url)")
        elif self.url is None:
            raise ValueError(f"a {self.type} target needs url (or url_file)")
        return self

    def endpoint(self) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        return f"{self.server.rstrip('/')}/{self.topic}"

    def label(self) -> str:
        """How logs name the target: its type and host, never the URL (it may embed the secret)."""
        host = urlsplit(self.endpoint()).hostname or "?"
        return f"{self.type} target at {host}"


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    events: list[EventName] = Field(default_factory=lambda: list(ALL_EVENTS))
    targets: list[NotifyTarget] = Field(default_factory=list)
    # Seconds per HTTP attempt ("5s" or a number); one retry follows a network error or a 5xx.
    timeout: Duration = Field(default=5.0, gt=0)
    retries: int = Field(default=1, ge=0, le=5)
    # Removals below this count in one sync are not worth a message.
    min_removed: int = Field(default=1, ge=1)


@dataclass(frozen=True)
class Notification:
    event: EventName
    title: str
    message: str
    source: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "title": self.title,
            "message": self.message,
            "source": self.source,
            "details": dict(self.details),
            "at": utcnow().isoformat(),
        }


def build_request(
    target: NotifyTarget, note: Notification
) -> tuple[str, dict[str, str], dict[str, Any] | None, bytes | None]:
    """(url, headers, json body, raw body) of one notification to one target."""
    headers = dict(target.headers)
    if target.type == "ntfy":
        headers.update({"Title": note.title, "Priority": _NTFY_PRIORITY[note.event], "Tags": _NTFY_TAGS[note.event]})
        if target.token is not None:
            headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
        return target.endpoint(), headers, None, note.message.encode()
    if target.type == "slack":
        return target.endpoint(), headers, {"text": f"*{note.title}*\n{note.message}"}, None
    if target.type == "discord":
        # Discord refuses content over 2000 characters.
        return target.endpoint(), headers, {"content": f"**{note.title}**\n{note.message}"[:2000]}, None
    return target.endpoint(), headers, note.as_json(), None


class Notifier:
    """Sends notifications; every failure is logged and swallowed, so the sync goes on."""

    def __init__(self, settings: NotifySettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._transport = transport
        self._client: httpx.Client | None = None
        for target in settings.targets:
            # Slack/Discord webhook URLs are credentials, and an ntfy topic is the only protection of a
            # public topic: keep them out of every log line.
            if target.url is not None and target.type != "webhook":
                register_secret(target.url.get_secret_value())
            if target.type == "ntfy":
                register_secret(target.endpoint())
        # httpx logs every request's full URL at INFO (`-v`): a topic or webhook path is a secret.
        logging.getLogger("httpx").setLevel(logging.WARNING)

    @property
    def enabled(self) -> bool:
        return bool(self.settings.targets)

    def _http(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.settings.timeout, transport=self._transport, follow_redirects=True)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, note: Notification) -> int:
        """Deliver to every target that wants this event; returns how many accepted it."""
        delivered = 0
        for target in self.settings.targets:
            wanted = target.events if target.events is not None else self.settings.events
            if note.event in wanted and self._deliver(target, note):
                delivered += 1
        return delivered

    def _deliver(self, target: NotifyTarget, note: Notification) -> bool:
        import httpx

        url, headers, body, content = build_request(target, note)
        problem = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                time.sleep(min(0.5 * attempt, 2.0))
            try:
                response = self._http().post(url, headers=headers, json=body, content=content)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
                continue
            if response.status_code < 300:
                return True
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the target refuses this request; asking again changes nothing
        log.warning("%s", redact_text(f"notification {note.event!r} to the {target.label()} failed: {problem}"))
        return False

    # What the sync engine and the policy engine report.

    def source_outcome(self, outcome: SourceOutcome) -> None:
        if not self.enabled:
            return
        if SyncStatus(outcome.status).failing:
            self.send(
                Notification(
                    "source_failed",
                    f"inventory: source {outcome.source} failed",
                    outcome.error or "the sync failed",
                    source=outcome.source,
                    details={"type": outcome.type, "status": outcome.status},
                )
            )
        removed = outcome.result.removed if outcome.result is not None else 0
        if removed >= self.settings.min_removed:
            self.send(
                Notification(
                    "objects_removed",
                    f"inventory: {removed} objects removed from {outcome.source}",
                    f"The last sync of {outcome.source} no longer found {removed} objects; see `inventory changes "
                    f"--action removed --source {outcome.source}`.",
                    source=outcome.source,
                    details={"removed": removed, "run_id": outcome.run_id},
                )
            )

    def destructive_tool(
        self,
        *,
        tool: str,
        target: str,
        actor: str,
        stage: Literal["requested", "run"],
        decision: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """For the policy engine: a DESTRUCTIVE tool call was requested (before approval) or has run."""
        if not self.enabled:
            return
        text = f"{actor} {'requested' if stage == 'requested' else 'ran'} {tool} on {target}"
        if decision:
            text += f" (decision: {decision})"
        if outcome:
            text += f": {outcome}"
        self.send(
            Notification(
                "destructive_tool",
                f"inventory: DESTRUCTIVE {tool} {stage}",
                redact_text(text),
                details={
                    "tool": tool,
                    "target": target,
                    "actor": actor,
                    "stage": stage,
                    "decision": decision,
                    "outcome": outcome,
                },
            )
        )

    def approval_pending(
        self,
        *,
        approval_id: int,
        tool: str,
        target: str,
        requester: str,
        tool_class: str,
        rule: str | None,
        expires_at: datetime,
    ) -> None:
        """For the policy engine: a tool call waits for an approver (until ``expires_at``)."""
        if not self.enabled:
            return
        text = (
            f"{requester} asks to run {tool} ({tool_class}) on {target}"
            + (f"; {rule} requires approval" if rule else "")
            + f". Approve or reject before {expires_at.isoformat(timespec='minutes')}: "
            f"`inventory approvals approve {approval_id}` or the web UI's approvals page."
        )
        self.send(
            Notification(
                "approval_pending",
                f"inventory: approval {approval_id} waits ({tool} on {target})",
                redact_text(text),
                details={
                    "approval_id": approval_id,
                    "tool": tool,
                    "target": target,
                    "requester": requester,
                    "class": tool_class,
                    "rule": rule,
                    "expires_at": expires_at.isoformat(),
                },
            )
        )
