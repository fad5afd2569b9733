"""Helpers of the reporter and step tests (a plain module: conftest files are not for importing)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.atlas import AtlasClient, AtlasRetryPolicy
from edge_agent.atlas.evidence_files import limits_from_checks
from edge_agent.atlas.reporter import Reporter
from edge_agent.config import EdgeAgentConfig, OutboxSection, load_config
from edge_agent.detect import AnomalyEvent, Detector
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.evidence import EvidenceRings
from edge_agent.frames import Frame
from edge_agent.incidents import IncidentEvent, IncidentGrouper, IncidentOpened
from edge_agent.outbox import Outbox

TOKEN = "reporter-test-token-9d3e71"
SYSTEM_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
T0_WALL = 1_780_000_000.0


@dataclass
class Clock:
    """The agent's two clocks, moved by the test: frames, detector and reporter all read them."""

    mono: float = 1000.0
    wall_offset: float = T0_WALL - 1000.0

    def now_mono(self) -> float:
        return self.mono

    def now_wall(self) -> float:
        return self.mono + self.wall_offset


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def to_toml(data: dict[str, Any]) -> str:
    """Enough TOML for a test config: tables, arrays of tables, nested values as inline tables."""
    lines: list[str] = []
    for name, section in data.items():
        tables = section if isinstance(section, list) else [section]
        for table in tables:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def make_config(state_dir: Path, *, plots: bool = False, **sections: Any) -> EdgeAgentConfig:
    """`plots`: the PNG plot with the final evidence (a child process drawing for seconds on a loaded
    machine): on only for the tests about it."""
    data: dict[str, Any] = {
        "agent": {"bench": "bench-07", "state_dir": str(state_dir)},
        "rules": [
            {"channel": "supply_v", "kind": "limits", "min": 11.4, "max": 12.6, "severity": "high",
             "clear_after": "0.5s"},
            {"channel": "temp_c", "kind": "limits", "min": 0, "max": 80, "severity": "low",
             "clear_after": "0.5s"},
        ],
        "evidence": {"ring_seconds": "60s", "pre": "2s", "post": "1s", "max_duration": "30s"},
        "incidents": {"join_window": "1s", "update_after": "0.5s"},
        "outbox": {"retry_base": "50ms", "retry_cap": "500ms", "drain_deadline": "10s"},
    }  # fmt: skip
    data.update(sections)
    data["evidence"] = {"plots": plots, **data["evidence"]}
    path = state_dir.parent / f"{state_dir.name}.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return load_config(path, {}, state_dir.parent)


def make_client(emulator: AtlasEmulator, read_timeout: float = 5.0) -> AtlasClient:
    return AtlasClient(
        emulator.api_url,
        emulator.token,
        connect_timeout=1.0,
        read_timeout=read_timeout,
        upload_timeout=5.0,
        retry=AtlasRetryPolicy(attempts=2, base=0.05, cap=0.2, max_retry_after=0.5),
    )


@dataclass
class Bench:
    """One agent's reporting half: rings, detector, incident grouper, outbox, reporter, on one state dir."""

    config: EdgeAgentConfig
    clock: Clock
    outbox: Outbox
    client: AtlasClient
    reporter: Reporter
    rings: EvidenceRings
    detector: Detector
    incidents: IncidentGrouper
    frames: list[Frame] = field(default_factory=list)
    incident_events: list[IncidentEvent] = field(default_factory=list)

    async def feed(
        self, values: Sequence[dict[str, float]], period: float = 0.1, source: str = "bench"
    ) -> list[AnomalyEvent]:
        """Frames of `source` one `period` apart; the detector's events go through the incident grouper
        to the reporter as the agent would send them."""
        events: list[AnomalyEvent] = []
        for row in values:
            self.clock.mono += period
            frame = Frame(source, self.clock.mono, self.clock.now_wall(), dict(row))
            self.frames.append(frame)
            self.rings.add(frame)
            got = list(self.detector.on_frame(frame))
            got += self.detector.tick(self.clock.mono, self.clock.now_wall())
            grouped = self.incidents.on_events(got)
            grouped += self.incidents.tick(lambda source: self.clock.mono, self.clock.now_wall())
            if grouped:
                await self.reporter.on_events(grouped)
                self.incident_events += grouped
            events += got
        await self.reporter.tick()
        return events

    def opened_incidents(self) -> list[str]:
        return [e.incident.id for e in self.incident_events if isinstance(e, IncidentOpened)]

    async def idle(self, seconds: float, period: float = 0.1, source: str = "bench") -> list[AnomalyEvent]:
        return await self.feed([NORMAL] * max(1, round(seconds / period)), period, source)

    async def stop(self, clean: bool = True) -> None:
        closing = list(self.detector.close_all(self.clock.mono, self.clock.now_wall()))
        grouped = self.incidents.on_events(closing)
        grouped += self.incidents.close_all(self.clock.mono, self.clock.now_wall())
        await self.reporter.on_events(grouped)
        await self.reporter.close(clean)
        await self.outbox.drain(10.0)
        await self.outbox.close()
        await self.client.close()


NORMAL = {"supply_v": 12.0, "temp_c": 25.0}


def fault(supply_v: float = 13.5, temp_c: float = 25.0) -> dict[str, float]:
    return {"supply_v": supply_v, "temp_c": temp_c}


async def make_bench(
    emulator: AtlasEmulator,
    state_dir: Path,
    clock: Clock | None = None,
    *,
    read_timeout: float = 5.0,
    concurrency: int = 4,
    plots: bool = False,
    **sections: Any,
) -> Bench:
    clock = clock or Clock()
    config = make_config(state_dir, plots=plots, **sections)
    outbox = Outbox(
        state_dir, OutboxSection.model_validate(config.outbox.model_dump()), concurrency=concurrency
    )
    await outbox.start()
    client = make_client(emulator, read_timeout)
    rings = EvidenceRings.from_config(config.evidence)
    detector = Detector(config.rules)
    incidents = IncidentGrouper.from_config(
        config, clearing_since=detector.clearing_since, lateness=detector.report_lateness
    )
    reporter = Reporter(
        config=config, outbox=outbox, client=client, rings=rings, state_dir=state_dir,
        mono=clock.now_mono, wall=clock.now_wall,
        limits_of=lambda sources: limits_from_checks(detector.value_checks(), sources),
        close_margin=incidents.close_margin,
    )  # fmt: skip
    await reporter.start()
    return Bench(config, clock, outbox, client, reporter, rings, detector, incidents)


async def wait_for(predicate: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    """Poll `predicate` every 20 ms for at most `within` seconds (bounded: asserts at the end)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(0.02)


def issues(emulator: AtlasEmulator) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = emulator.state()["issues"]
    return result


def sessions(emulator: AtlasEmulator) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = emulator.state()["sessions"]
    return result


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file below `root` whose bytes contain `needle` (the secrets check)."""
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]
