"""A whole agent (in this process) fed by the simulated bench on a real pty, reporting to the Atlas
emulator on 127.0.0.1, with its control API (and so the live page) on an ephemeral loopback port; and
Debian's Chromium driven by Playwright."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chromium import INSTALL_HINT, chromium_path
from e2e_helpers import TOKEN, Sim, agent_config_toml, fault_toml, get_json, step_toml, wait_until
from playwright.async_api import Browser, Page

from edge_agent.agent import Agent
from edge_agent.config import EmulatorSection, load_config
from edge_agent.emulators.atlas import AtlasEmulator


def chromium_or_fail() -> str:
    """The browser's path; a failure that says how to install it when it is missing (CI always has it)."""
    path = chromium_path()
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


STEPS = [("power_on", 0.3, 2.0), ("load_test", 2.6, 5.4)]
FAULT_AT, FAULT_FOR = 4.5, 1.2  # inside load_test: an over-voltage that fails it


def scenario(tmp: Path, duration: float = 8.5) -> Path:
    path = tmp / "scenario.toml"
    body = f'name = "live"\nduration = "{duration}s"\n' + "".join(step_toml(*s) for s in STEPS)
    body += fault_toml("supply_v", FAULT_AT, FAULT_FOR, 1.8, "high", "overvoltage")
    path.write_text(body, encoding="utf-8")
    return path


@dataclass
class LiveBench:
    agent: Agent
    sim: Sim
    atlas: AtlasEmulator
    token: str | None
    stopped: bool = False

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.agent.stop(time.monotonic() + 5)

    @property
    def url(self) -> str:
        assert self.agent.control is not None
        return self.agent.control.url

    async def status(self) -> dict[str, Any]:
        data: dict[str, Any] = await get_json(self.url + "/status", self.token)
        return data

    async def opened_anomaly(self, channel: str, within: float) -> dict[str, Any]:
        """The agent's own record of the first anomaly on `channel` (from /status, while open)."""
        found: dict[str, Any] = {}

        async def opened() -> bool:
            for anomaly in (await self.status())["open_anomalies"]:
                if anomaly["channel"] == channel:
                    found.update(anomaly)
                    return True
            return False

        await wait_until(opened, within, f"an anomaly on {channel} in /status", interval=0.02)
        return found


@asynccontextmanager
async def live_bench(
    tmp: Path,
    *,
    control_token: str | None = None,
    extra: str = "",
    agent_text: Callable[[Path, Path, str], str] | None = None,
    scenario_text: str | None = None,
) -> AsyncIterator[LiveBench]:
    """`agent_text(state_dir, link, atlas_url)`: the agent's TOML instead of `agent_config_toml`'s
    (then `extra` and `control_token` are the caller's); `scenario_text`: the bench's scenario instead of
    `scenario`'s."""
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=13, report_delay=60.0) as atlas:
        link = tmp / "ttyBENCH0"
        control = extra
        if control_token is not None:
            control += f'\ntoken = "{control_token}"\n'
        config_path = tmp / "agent.toml"
        if agent_text is None:
            text = agent_config_toml(tmp / "state", link, atlas.base_url, extra=control)
        else:
            text = agent_text(tmp / "state", link, atlas.base_url)
        config_path.write_text(text, encoding="utf-8")
        agent = Agent(load_config(config_path, environ={}))
        if scenario_text is None:
            scenario_path = scenario(tmp)
        else:
            scenario_path = tmp / "scenario.toml"
            scenario_path.write_text(scenario_text, encoding="utf-8")
        sim = Sim(scenario_path, link, tmp / "oracle.jsonl")
        await agent.start()
        bench = LiveBench(agent, sim, atlas, control_token)
        try:
            yield bench
        finally:
            if sim.task is not None and not sim.task.done():
                await sim.stop()
            await bench.stop()


async def open_page(
    browser: Browser, url: str, errors: list[str], viewport: tuple[int, int] = (1400, 1300)
) -> Page:
    """The live page in a new tab of `viewport` (width, height) px; its script errors go to `errors`."""
    page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    await page.goto(url + "/")
    return page
