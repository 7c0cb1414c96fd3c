"""The configuration of a Kubernetes source: which cluster, how to authenticate, what to read."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from inventory.connector import ConfigPath, Duration, SourceConfig

TYPE_NAME = "kubernetes"
# The value of ``context`` that stands for every context of the kubeconfig.
ALL_CONTEXTS = "*"


class KubernetesConfig(SourceConfig):
    type: str = TYPE_NAME
    # Auth, one of three ways: a kubeconfig context (the default), the in-cluster service
    # account, or a server URL with a bearer token.
    kubeconfig: ConfigPath | None = None
    context: str | list[str] | None = None
    in_cluster: bool = False
    # Where the pod's service account is mounted (token, ca.crt); the Kubernetes default if unset.
    service_account_dir: ConfigPath | None = None
    server: str | None = None
    token: SecretStr | None = None
    ca_file: ConfigPath | None = None
    verify_tls: bool = True
    # Namespaces to read (exact names are read one by one; globs filter a cluster-wide list)
    # and namespaces to skip (globs).
    namespaces: list[str] = Field(default_factory=list)
    exclude_namespaces: list[str] = Field(default_factory=list)
    # Annotation keys kept (globs); annotations are otherwise dropped, since some are huge.
    annotation_allowlist: list[str] = Field(default_factory=list)
    # Client-side rate limit and per-call timeout (seconds or "30s").
    qps: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)
    timeout: Duration = Field(default=30.0, gt=0)
    page_size: int = Field(default=500, ge=1, le=10_000)

    @field_validator("context")
    @classmethod
    def _contexts(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one context, or leave context out for the current one")
            if ALL_CONTEXTS in value:
                raise ValueError(f'"{ALL_CONTEXTS}" stands alone, not in a list')
            if len(set(value)) != len(value):
                raise ValueError("a context is listed twice")
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> KubernetesConfig:
        kubeconfig_keys = [k for k in ("kubeconfig", "context") if getattr(self, k) is not None]
        if self.in_cluster and (self.server or kubeconfig_keys):
            raise ValueError("in_cluster: true cannot be combined with server, kubeconfig or context")
        if self.server and kubeconfig_keys:
            raise ValueError(f"server cannot be combined with {' or '.join(kubeconfig_keys)}")
        if self.service_account_dir is not None and not self.in_cluster:
            raise ValueError("service_account_dir goes with in_cluster: true")
        if (self.token is not None or self.ca_file is not None) and not self.server:
            raise ValueError("token and ca_file go with server (a kubeconfig carries its own credentials)")
        if self.server and not re.match(r"^https?://", self.server):
            raise ValueError("server must be a URL such as https://10.0.0.5:6443")
        return self
