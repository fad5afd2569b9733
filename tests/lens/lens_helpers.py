"""Helpers for lens tests (imported by name: the conftest puts this folder on sys.path, since
pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.config import EmulatorSection, LensSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.frames import Frame

LENS_ID = "lns-emulated-machine-state"


def fast_emulator_settings(**overrides: Any) -> EmulatorSection:
    base: dict[str, Any] = {
        "warmup": 0.2,
        "inference_interval": 0.02,
        "baseline_windows": 2,
        "runner_slots": 2,
    }
    base.update(overrides)
    return EmulatorSection.model_validate(base)


def lens_config(emu: ArchetypeEmulator, **overrides: Any) -> LensSection:
    base: dict[str, Any] = {
        "api_url": emu.base_url,
        "api_key": emu.api_key,
        "lens_id": LENS_ID,
        "channels": ["a", "b"],
        "window_size": 8,
        "step_size": 8,
        "max_windows_per_second": 50,
        "read_interval": "50ms",
        "status_poll_interval": "50ms",
        "ready_timeout": 10,
        "connect_timeout": 2,
        "read_timeout": 5,
        "heartbeat_interval": 5,
    }
    base.update(overrides)
    return LensSection.model_validate(base)


def frames(start: int, count: int, source: str = "bench") -> list[Frame]:
    now_wall, now_mono = time.time(), time.monotonic()
    return [
        Frame(
            source=source,
            mono=now_mono + i * 0.001,
            wall=now_wall + i * 0.001,
            values={"a": math.sin((start + i) / 5.0), "b": math.cos((start + i) / 7.0)},
        )
        for i in range(count)
    ]


async def admin(emu: ArchetypeEmulator, path: str, body: dict[str, Any] | None = None) -> Any:
    url = emu.server.base_url + "/_emulator" + path
    async with aiohttp.ClientSession() as http:
        if body is None:
            async with http.get(url) as response:
                return await response.json()
        async with http.post(url, json=body) as response:
            return await response.json()


async def wait_for(predicate: Callable[[], bool], within: float, what: str, step: float = 0.02) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(step)


def live_sessions(emu: ArchetypeEmulator) -> list[dict[str, Any]]:
    return [
        s
        for s in emu.state()["sessions"]
        if s["status"] not in ("SESSION_STATUS_DESTROYED", "SESSION_STATUS_STALE")
    ]


def runner_toml(emu_base_url: str, api_key: str, state_dir: str, **lens: Any) -> str:
    """A config file for `python -m edge_agent.lens.runner` against the emulator."""
    settings: dict[str, Any] = {
        "api_url": emu_base_url,
        "api_key": api_key,
        "lens_id": LENS_ID,
        "channels": ["a", "b"],
        "window_size": 8,
        "step_size": 8,
        "max_windows_per_second": 20.0,
        "read_interval": "100ms",
        "status_poll_interval": "100ms",
        "ready_timeout": "10s",
        "connect_timeout": "2s",
        "read_timeout": "5s",
    }
    settings.update(lens)
    lines = ["[agent]", f"state_dir = {json.dumps(state_dir)}", "", "[lens]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


REPO = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_") and k != "ATAI_API_KEY"}
    env["PYTHONPATH"] = str(REPO)
    return env


async def start_runner(config: Path, log_file: Path) -> asyncio.subprocess.Process:
    """`python -m edge_agent.lens.runner` on generated frames, its output appended to `log_file`."""
    out = log_file.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "edge_agent.lens.runner", "--config", str(config)],
            *["--generate", "--rate", "400"],
            stdout=out, stderr=out, env=clean_env(), cwd=str(REPO),
        )  # fmt: skip
    finally:
        out.close()


def session(emu: ArchetypeEmulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emu.state()["sessions"] if s["session_id"] == session_id)


def recorded(state_dir: Path) -> list[str]:
    """The session ids the runner's record (`lens_sessions.json`) holds."""
    path = state_dir / "lens_sessions.json"
    if not path.exists():
        return []
    return [s["session_id"] for s in json.loads(path.read_text())["sessions"]]


@dataclass
class KilledRunner:
    """A runner SIGKILLed while it streamed: its emulator, key, config, state and log, and the session
    it left open (`orphan`). `start` starts the next runner on the same config."""

    emu: ArchetypeEmulator
    key: str
    config: Path
    state_dir: Path
    log_file: Path
    orphan: str = ""
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start(self) -> asyncio.subprocess.Process:
        proc = await start_runner(self.config, self.log_file)
        self.procs.append(proc)
        return proc


@asynccontextmanager
async def runner_killed_streaming(
    tmp_path: Path, *, seed: int, emulator: dict[str, Any] | None = None, **lens: Any
) -> AsyncIterator[KilledRunner]:
    """The lens emulator (`fast_emulator_settings(**emulator)`, a fresh key) and a runner (a real
    subprocess, `runner_toml(**lens)`) streaming on one session with a record of it, then SIGKILLed.
    At exit every runner still alive is killed and the emulator stopped."""
    key = "atai-test-" + secrets.token_hex(12)
    emu = ArchetypeEmulator(fast_emulator_settings(api_key=key, **(emulator or {})), port=0, seed=seed)
    await emu.start()
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emu.base_url, key, str(state_dir), **lens))
    run = KilledRunner(emu, key, config, state_dir, tmp_path / "runner.log")
    try:
        first = await run.start()

        def first_streaming() -> bool:
            live = live_sessions(emu)
            return len(live) == 1 and live[0]["counts"]["windows_accepted"] >= 3 and bool(recorded(state_dir))

        await wait_for(first_streaming, 30, "the first run to stream")
        run.orphan = live_sessions(emu)[0]["session_id"]
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        yield run
    finally:
        for proc in run.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await emu.stop()
