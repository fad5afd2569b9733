"""A real bench for the monitoring tests: `edge-agent run` as a subprocess (service_e2e's harness) on a
pty, with the Archetype and Atlas emulators on 127.0.0.1, driven until every kind of series the rules
and the dashboard read exists: frames, a garbage line, lens inferences, an anomaly, a running step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_harness import AgentProcess, NotifySocket, Pty, config_toml
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

ATAI_KEY = "live-atai-key"
EMULATOR_ATLAS_CREDENTIAL = "emulator-only-atlas-credential"  # the loopback emulator's, not a real token
WAIT = 30.0


@dataclass(frozen=True)
class Exposition:
    text: str
    series: dict[str, dict[str, set[str]]]  # sample name -> label name -> the values seen


def parse(text: str) -> Exposition:
    series: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return Exposition(text, series)


def missing_series(expo: Exposition) -> list[str]:
    """What a scrape still lacks (labelled counters appear with their first event)."""
    checks = {
        "a frame": "edge_agent_serial_frames_total",
        "a decode error": "edge_agent_serial_decode_errors_total",
        "an inference": "edge_agent_lens_inferences_total",
        "an anomaly": "edge_agent_anomalies_opened_total",
        "the state disk": "edge_agent_state_dir_filesystem_avail_bytes",
        "the process collector": "process_resident_memory_bytes",
    }
    missing = [what for what, name in checks.items() if name not in expo.series]
    if "edge_agent_step_running 1.0" not in expo.text:
        missing.append("a running step")
    return missing


@dataclass
class LiveBench:
    agent: AgentProcess
    pty: Pty
    control_token: str | None

    @property
    def address(self) -> str:
        return self.agent.control_url.removeprefix("http://")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.control_token}"} if self.control_token else {}

    async def get_text(self, path: str) -> str:
        assert self.agent.http is not None
        async with self.agent.http.get(self.agent.control_url + path, headers=self._headers()) as response:
            assert response.status == 200, (path, response.status, await response.text())
            return await response.text()

    async def post(self, path: str, body: Any) -> None:
        assert self.agent.http is not None
        url = self.agent.control_url + path
        async with self.agent.http.post(url, json=body, headers=self._headers()) as response:
            assert response.status == 200, (path, response.status, await response.text())

    async def exercise(self) -> Exposition:
        """Frames, a running step, garbage lines and an out-of-limits supply until every series is
        there; returns that scrape."""
        self.pty.start_writing(rate_hz=100.0)
        await self.post("/steps/start", {"name": "soak"})
        deadline = time.monotonic() + WAIT
        expo = Exposition("", {})
        while missing := missing_series(expo):
            assert time.monotonic() < deadline, f"after {WAIT}s still no {missing}:\n{self.agent.output()}"
            self.pty.write_now(b"1,not-a-number,25\n")  # a decode error
            self.pty.supply_v = 13.5  # over the limits rule's max: an anomaly
            await asyncio.sleep(0.3)
            expo = parse(await self.get_text("/metrics"))
        return expo


@asynccontextmanager
async def live_bench(
    tmp: Path, *, bench: str = "bench-live", control_token: str | None = None
) -> AsyncIterator[LiveBench]:
    settings = EmulatorSection.model_validate(
        {"api_key": ATAI_KEY, "atlas_token": EMULATOR_ATLAS_CREDENTIAL, "atlas_port": 0, "warmup": 0.2,
         "inference_interval": 0.05, "baseline_windows": 2}
    )  # fmt: skip
    archetype = ArchetypeEmulator(settings, port=0, seed=7)
    await archetype.start()
    pty, notify = Pty(), NotifySocket()
    notify.start()
    agent: AgentProcess | None = None
    try:
        async with AtlasEmulator(settings, seed=7) as atlas:
            text = config_toml(
                state_dir=tmp / "state", serial_url=pty.path, lens_url=archetype.base_url,
                lens_key=ATAI_KEY, atlas_url=atlas.base_url, atlas_token=EMULATOR_ATLAS_CREDENTIAL,
                bench=bench,
            )  # fmt: skip
            if control_token is not None:
                text = text.replace("[control]\n", f'[control]\ntoken = "{control_token}"\n')
            config = tmp / "agent.toml"
            config.write_text(text)
            home = tmp / "home"
            home.mkdir()
            agent = AgentProcess(config, notify, home)
            await agent.start()
            await agent.wait_ready(within=WAIT)
            yield LiveBench(agent, pty, control_token)
    finally:
        if agent is not None:
            await agent.close()
        await pty.close()
        await notify.close()
        await archetype.stop()
