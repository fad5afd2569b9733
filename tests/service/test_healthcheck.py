"""The container health probe, run as the HEALTHCHECK runs it (a subprocess), against a real control
server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edge_agent.control import ControlServer, create_control_app
from edge_agent.metrics import Metrics
from edge_agent.service.healthcheck import url_from_listen


class IdleBackend:
    def status(self) -> Mapping[str, Any]:
        return {}

    def readiness(self) -> tuple[bool, Mapping[str, str]]:
        return False, {"serial": "not open"}

    async def start_step(self, name: str, card: str | None) -> Mapping[str, Any]:
        return {}

    async def end_step(self, name: str, verdict: str | None, note: str | None) -> Mapping[str, Any]:
        return {}

    async def end_run(self, note: str | None) -> Mapping[str, Any]:
        return {}


@pytest.fixture
async def server() -> AsyncIterator[ControlServer]:
    # With a token: the probe must still pass, liveness is open.
    srv = ControlServer(create_control_app(IdleBackend(), Metrics(), "secret-token"), "127.0.0.1:0")
    await srv.start()
    yield srv
    await srv.stop()


async def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.service.healthcheck", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_healthy_server_exits_0(server: ControlServer) -> None:
    code, out = await probe("--url", server.url + "/healthz")
    assert code == 0 and "healthy" in out


async def test_listen_address_from_the_config_environment(server: ControlServer, tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "EDGE_AGENT_CONTROL__LISTEN": f"0.0.0.0:{server.port}",
    }
    code, out = await probe("--config", str(tmp_path / "absent.toml"), env=env)
    assert code == 0, out


async def test_nothing_listening_exits_1() -> None:
    code, out = await probe("--url", f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "2")
    assert code == 1 and "unhealthy" in out


async def test_a_non_200_exits_1(server: ControlServer) -> None:
    code, out = await probe("--url", server.url + "/readyz")  # 401 without the token
    assert code == 1 and "HTTP 401" in out


def test_wildcard_listen_addresses_are_probed_on_loopback() -> None:
    assert url_from_listen("127.0.0.1:8321") == "http://127.0.0.1:8321/healthz"
    assert url_from_listen("0.0.0.0:9000") == "http://127.0.0.1:9000/healthz"
    assert url_from_listen("[::]:9000") == "http://[::1]:9000/healthz"
    assert url_from_listen("::1:9000") == "http://[::1]:9000/healthz"
