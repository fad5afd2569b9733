"""Helpers for lens tests (imported by name: the conftest puts this folder on sys.path, since
pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
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
