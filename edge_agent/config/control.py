"""`[control]`: the local HTTP API (and the live page it serves): where it listens, its token and the
host names it answers to.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from edge_agent.config.values import Section

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class ControlSection(Section):
    enabled: bool = True
    listen: str = Field("127.0.0.1:8321", description="HOST:PORT; port 1-65535, or 0 for any free port.")
    token: SecretStr | None = None
    token_file: Path | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="DNS names clients may use to reach the API, besides IP addresses, localhost and the"
        " listen host; any other Host header is refused (DNS rebinding).",
    )
    live_page: bool = Field(
        True,
        description="The live bench page at the API's `/` (same address and token); false serves no page"
        " and feeds no frame to its tap.",
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _hostnames(cls, names: list[str]) -> list[str]:
        cleaned = [name.strip().lower().rstrip(".") for name in names]
        bad = [name for name in cleaned if not _HOSTNAME_RE.match(name)]
        if bad:
            raise ValueError(f"not host names (no scheme, port or wildcard): {bad}")
        return cleaned

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8321")
        if int(port) > 65535:
            raise ValueError(f"port {int(port)} is out of range 1-65535 (0: any free port)")
        return value
