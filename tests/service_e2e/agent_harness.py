"""Helpers for the `edge-agent run` end-to-end tests (imported by name: the conftest puts this folder
on sys.path, since pytest runs with --import-mode=importlib).

The agent runs as a real subprocess (`python -m edge_agent run`); the test process owns its peers:
the Archetype and Atlas emulators on 127.0.0.1 ephemeral ports, a pseudo-terminal whose device side
the test writes, and a unix datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[1] / "serial"))  # the pty with a link of its own is serial's
sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from linked_pty import LinkedPty
from soak_lib.unit_env import unit_runtime_env

COLUMNS = ["t_ms", "supply_v", "temp_c"]
LENS_ID = "lns-emulated-machine-state"
SYSTEM_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
# Environment that could leak a developer's settings into the agent's config.
_ENV_PREFIXES = ("EDGE_AGENT_", "ATLAS_", "ATAI_", "NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_")


async def wait_for(predicate: Callable[[], bool], within: float, what: str, step: float = 0.05) -> None:
    """Poll `predicate` on the event loop until it holds; AssertionError after `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(step)


async def wait_for_status(
    agent: AgentProcess, predicate: Callable[[dict[str, Any]], Any], within: float, what: str
) -> dict[str, Any]:
    """Poll the agent's /status until `predicate` holds on it, and return that status; AssertionError
    (with the last status) after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        status = await agent.status()
        if predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}; /status: {status}")
        await asyncio.sleep(0.1)


async def wait_for_port_up(agent: AgentProcess, within: float = 10.0) -> None:
    await wait_for_status(agent, lambda s: s["ports"]["bench"]["up"], within, "the serial port open")


class NotifySocket:
    """What systemd would be: a unix datagram socket that records every notify message with its
    arrival time (monotonic)."""

    def __init__(self) -> None:
        # A short directory of our own: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path is long.
        self.dir = Path(tempfile.mkdtemp(prefix="ea-notify-"))
        self.path = self.dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def times(self, key: str, value: str | None = None) -> list[float]:
        return [t for t, m in self.messages if key in m and (value is None or m[key] == value)]

    def values(self, key: str) -> list[str]:
        return [m[key] for _, m in self.messages if key in m]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self.dir.rmdir()


class Pty(LinkedPty):
    """The bench's side of a serial cable: the agent opens `path`, the test writes `master`."""

    def __init__(self) -> None:
        super().__init__()
        self.lines_written = 0
        self._task: asyncio.Task[None] | None = None
        self.supply_v = 12.0  # the test changes it to make a limits anomaly

    def _line(self, n: int) -> bytes:
        # temp_c moves so that a stuck rule never fires by accident.
        return b"%d,%.3f,%.3f\n" % (n * 10, self.supply_v, 25.0 + math.sin(n / 7.0))

    def write_now(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # a full tty buffer: the line is lost, like on a cable
            os.write(self.master, data)

    def start_writing(self, rate_hz: float = 100.0) -> None:
        """Lines at about `rate_hz` in small batches, until `stop_writing`."""
        if self._task is None:
            self._task = asyncio.create_task(self._write(rate_hz))

    async def _write(self, rate_hz: float) -> None:
        batch = 5
        while True:
            self.write_now(b"".join(self._line(self.lines_written + i) for i in range(batch)))
            self.lines_written += batch
            await asyncio.sleep(batch / rate_hz)

    async def stop_writing(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop_writing()
        self.unlink_and_close()


def config_toml(
    *,
    state_dir: Path,
    serial_url: str,
    lens_url: str | None,
    lens_key: str,
    atlas_url: str,
    atlas_token: str,
    bench: str = "e2e-bench",
    supply_max: float = 12.6,
    drain_deadline: str = "10s",
    control_token: str | None = None,
    extra: str = "",
) -> str:
    """The config of a healthy bench. `control_token`: the control API's; `extra`: TOML appended after
    the last table (more tables, e.g. `[analysis]`)."""
    lens = (
        f"""
[lens]
api_url = {json.dumps(lens_url)}
api_key = {json.dumps(lens_key)}
lens_id = "{LENS_ID}"
channels = ["supply_v", "temp_c"]
window_size = 20
step_size = 20
max_windows_per_second = 5.0
read_interval = "200ms"
status_poll_interval = "100ms"
ready_timeout = "10s"
connect_timeout = "2s"
read_timeout = "5s"
"""
        if lens_url is not None
        else "\n[lens]\nenabled = false\n"
    )
    return f"""
[agent]
bench = {json.dumps(bench)}
state_dir = {json.dumps(str(state_dir))}

[[serial]]
name = "bench"
url = {json.dumps(serial_url)}
columns = {json.dumps(COLUMNS)}
device_time = "t_ms"
reconnect_min = "100ms"
reconnect_max = "500ms"
{lens}
[atlas]
url = {json.dumps(atlas_url)}
token = {json.dumps(atlas_token)}
connect_timeout = "1s"
read_timeout = "3s"

[[rules]]
channel = "supply_v"
kind = "limits"
min = 11.4
max = {supply_max}
hold = "100ms"
severity = "high"

[evidence]
# No PNG: these tests are not about plots (tests/e2e/test_sequence.py is), and drawing one takes a
# child process seconds of CPU on a loaded machine, inside the drain deadlines these tests bound.
plots = false

[steps]
source = "api"
system_id = "{SYSTEM_ID}"

[outbox]
retry_base = "100ms"
retry_cap = "1s"
drain_deadline = {json.dumps(drain_deadline)}

[control]
listen = "127.0.0.1:0"
{"" if control_token is None else f"token = {json.dumps(control_token)}"}
{extra}
"""


class AgentProcess:
    """`edge-agent run` as a subprocess, its JSON log lines collected as they come."""

    def __init__(self, config_path: Path, notify: NotifySocket, home: Path, watchdog_usec: int = 1_000_000):
        self.config_path = config_path
        self.notify = notify
        self.home = home
        self.watchdog_usec = watchdog_usec
        self.proc: asyncio.subprocess.Process | None = None
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self.http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
        env.update(
            NOTIFY_SOCKET=str(self.notify.path),
            WATCHDOG_USEC=str(self.watchdog_usec),
            HOME=str(self.home),  # no ~/.atlas of the developer's
            PYTHONUNBUFFERED="1",
        )
        env.update(unit_runtime_env(Path(__file__).parents[2]))  # as the systemd unit runs it: -OO, malloc
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(self.config_path),
            "--log-format", "json", "--log-level", "info",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=self.home,
        )  # fmt: skip
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self.proc.stdout)),
            asyncio.create_task(self._read(self.proc.stderr)),
        ]
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip("\n")
            self.raw.append(text)
            with contextlib.suppress(ValueError):
                entry = json.loads(text)
                if isinstance(entry, dict):
                    self.logs.append(entry)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e.get("event") == name]

    def output(self) -> str:
        """For assertion messages: the agent's last log lines."""
        return "\n".join(self.raw[-40:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def control_url(self) -> str:
        listening = self.events("control_api_listening")
        assert listening, "control API not listening yet"
        last = listening[-1]  # a reload starts a new control server (port 0: a new port)
        return f"http://{last['host']}:{last['port']}"

    async def wait_ready(self, within: float = 20.0) -> None:
        await wait_for(
            lambda: bool(self.notify.times("READY", "1")) or self.exited,
            within,
            "READY=1 from the agent",
        )
        assert not self.exited, f"agent exited early ({self.returncode}):\n{self.output()}"
        # READY=1 comes over the notify socket, the listening line over the stdout pipe: under load the
        # datagram can win the race, and `control_url` needs the line.
        await wait_for(
            lambda: bool(self.events("control_api_listening")) or self.exited,
            10,
            "control_api_listening in the log",
        )

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), within)
        await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 5)
        return code

    async def get(self, path: str) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.get(self.control_url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.post(self.control_url + path, json=body) as response:
            return response.status, await response.json()

    async def status(self) -> dict[str, Any]:
        code, body = await self.get("/status")
        assert code == 200, body
        assert isinstance(body, dict)
        return body

    async def close(self) -> None:
        """Teardown: whatever the test did, no agent outlives it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self.http is not None:
            await self.http.close()


def outbox_jobs(state_dir: Path) -> dict[tuple[str, str], int]:
    """(kind, state) -> number of jobs, read straight from the agent's outbox database (after it exited)."""
    con = sqlite3.connect(f"file:{state_dir / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT kind, state, count(*) FROM jobs GROUP BY kind, state").fetchall()
    finally:
        con.close()
    return {(kind, state): count for kind, state, count in rows}


# What the `run_agent` fixture yields: start an agent subprocess with a config and optional env.
AgentFactory = Callable[..., Awaitable[AgentProcess]]
