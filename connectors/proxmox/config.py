"""The configuration of a Proxmox VE source: the URL, how to log in, TLS trust, timeouts and concurrency."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from inventory.connector import ConfigPath, Duration, SourceConfig

TYPE_NAME = "proxmox"


class ProxmoxConfig(SourceConfig):
    type: str = TYPE_NAME
    url: str = Field(min_length=1)
    # API token (recommended): "user@realm!tokenname" + its secret (token_secret_file works too).
    token_id: str | None = Field(default=None, pattern=r"^[^!@\s]+@[^!\s]+![A-Za-z0-9][A-Za-z0-9._-]*$")
    token_secret: SecretStr | None = None
    # Or user + password (a ticket is taken at every poll).
    user: str | None = Field(default=None, pattern=r"^[^!@\s]+@[^!\s]+$")
    password: SecretStr | None = None
    verify_tls: bool = True
    ca_file: ConfigPath | None = None
    # sha256 of the server certificate, "AB:CD:..." (as `pvenode cert info` prints it).
    fingerprint: str | None = None
    timeout: Duration = Field(default=10.0, gt=0, le=300)
    retries: int = Field(default=2, ge=0, le=10)
    # Calls in flight at once. Per-node calls spread over the nodes (guests are taken round-robin
    # by node), so 16 is about two per node on an 8-node cluster; a lone node's pveproxy simply
    # queues what its workers cannot take at once.
    concurrency: int = Field(default=16, ge=1, le=64)
    # Ask guest agents and containers for their addresses (one call per running guest).
    addresses: bool = True
    # Following changes (``events``): seconds between two reads of /cluster/resources and /cluster/tasks.
    # A change shows within about one interval; an idle cluster costs two calls per interval.
    poll_interval: Duration = Field(default=5.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        # The API's own path, as the web UI and the API viewer show it: the client adds it itself.
        if value.endswith("/api2/json"):
            value = value[: -len("/api2/json")].rstrip("/")
        if "://" not in value:
            value = f"https://{value}"
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL of a Proxmox VE node, e.g. https://pve.lan:8006")
        if parts.username or parts.password:
            raise ValueError("must not carry credentials; use token_id/token_secret or user/password")
        return value

    @field_validator("fingerprint")
    @classmethod
    def _sha256_fingerprint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(":", "").strip().lower()
        if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
            raise ValueError("must be a sha256 fingerprint: 32 hex bytes, with or without colons")
        return digits

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> ProxmoxConfig:
        token = self.token_id is not None or self.token_secret is not None
        password = self.user is not None or self.password is not None
        if token and password:
            raise ValueError("give either token_id + token_secret or user + password, not both")
        if token and (self.token_id is None or self.token_secret is None):
            raise ValueError("token_id and token_secret go together")
        if password and (self.user is None or self.password is None):
            raise ValueError("user and password go together")
        if not token and not password:
            raise ValueError("give token_id + token_secret (recommended) or user + password")
        if self.fingerprint and password:
            # proxmoxer posts the password for a ticket outside the session that carries the pin.
            raise ValueError("fingerprint pinning works with an API token only; with user + password use ca_file")
        return self
