"""The soak's two schedules, both fixed by the seed before anything runs.

1. The bench's: the built-in `soak` scenario (steps + one sensor fault at a time), generated for the
   chaos phase and written as a scenario file whose duration also covers the settling phase, so the
   simulator keeps sending clean data (and the serial link stays up) until the agent is stopped.
2. The harness's: agent SIGKILL + restart, extra unplugs (SIGUSR1 to the simulator), Atlas outages,
   5xx/429 bursts, Atlas slowed to a crawl, lens websocket drops and server-side session ends.

Kills and extra unplugs go only into "quiet" slots: no sensor fault, no step marker and no other
unplug within a margin. A fault or a marker while no agent is reading is lost by construction (the
pty drops what nobody reads; pyserial flushes input at open), so placing kills there would test
nothing but the schedule. The harness still records the real dead time of every kill and the checks
exclude (and report) any fault or step that overlapped it anyway.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.bench_sim.scenario import FaultSpec, Scenario, soak

# Seconds around a fault or marker that a kill's dead time must not touch: the fault's anomaly is
# opened and enqueued within a second of its start and closes `clear_after` after its end.
FAULT_MARGIN = 3.0
MARKER_MARGIN = 1.5
# A kill is dead for the restart delay plus the agent's start-up (imports, state, port open).
KILL_SLOT = 5.0
UNPLUG_SLOT = 2.0 + 2 * FAULT_MARGIN


@dataclass(frozen=True, slots=True)
class Action:
    t: float  # seconds from the simulator's start
    kind: str  # kill | unplug | atlas_outage | atlas_errors | atlas_slow | ws_drop | session_destroy | ...
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "kind": self.kind, "duration": self.duration}


@dataclass(frozen=True, slots=True)
class SoakPlan:
    scenario: Scenario
    chaos: float  # seconds of faults (the scenario's faults all end before this)
    total: float  # the simulator's duration (chaos + the longest settling allowed)
    actions: list[Action]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind] = out.get(a.kind, 0) + 1
        for f in self.scenario.faults:
            key = f"sim_{f.kind}"
            out[key] = out.get(key, 0) + 1
        return out

    def write_scenario(self, path: Path) -> None:
        """The scenario as TOML for `edge-agent simulate --scenario FILE`."""
        lines = ['name = "soak"', f'duration = "{self.total}s"']
        for s in self.scenario.steps:
            lines += [
                "[[steps]]",
                f'name = "{s.name}"',
                f'start = "{s.start}s"',
                f'duration = "{s.duration}s"',
            ]
        for f in self.scenario.faults:
            lines += ["[[faults]]", f'id = "{f.id}"', f'kind = "{f.kind}"', f'start = "{f.start}s"']
            lines += [f'duration = "{f.duration}s"', f"magnitude = {f.magnitude!r}", f"size = {f.size}"]
            lines += [f'severity = "{f.severity}"']
            if f.channel:
                lines.append(f'channel = "{f.channel}"')
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _busy(scenario: Scenario) -> list[tuple[float, float]]:
    spans = [(f.start - FAULT_MARGIN, f.start + f.duration + FAULT_MARGIN) for f in scenario.faults]
    for s in scenario.steps:
        spans.append((s.start - MARKER_MARGIN, s.start + MARKER_MARGIN))
        spans.append((s.end - MARKER_MARGIN, s.end + MARKER_MARGIN))
    return spans


def _free(spans: list[tuple[float, float]], t: float, length: float) -> bool:
    return all(t + length <= a or t >= b for a, b in spans)


def _place(
    spans: list[tuple[float, float]], rng: random.Random, count: int, lo: float, hi: float, length: float
) -> list[float]:
    """`count` start times in [lo, hi - length], spread evenly, each nudged to the nearest free slot."""
    placed: list[float] = []
    if count <= 0 or hi - lo < length:
        return placed
    step = (hi - lo - length) / count
    for i in range(count):
        want = lo + step * (i + rng.uniform(0.1, 0.9))
        for delta in sorted((d * 0.25 for d in range(-int(step * 4), int(step * 4) + 1)), key=abs):
            t = want + delta
            if lo <= t <= hi - length and _free(spans, t, length):
                placed.append(t)
                spans.append((t, t + length))
                break
    return placed


def _track(rng: random.Random, kinds: list[tuple[str, float]], lo: float, hi: float) -> list[Action]:
    """Actions of one track (say, Atlas) one after the other with gaps, spread over [lo, hi]."""
    total = sum(d for _, d in kinds)
    gap = max(1.0, (hi - lo - total) / (len(kinds) + 1))
    order = kinds[:]
    rng.shuffle(order)
    out = []
    t = lo + gap * rng.uniform(0.5, 1.0)
    for kind, duration in order:
        out.append(Action(round(t, 3), kind, duration))
        t += duration + gap * rng.uniform(0.7, 1.0)
    return out


def _with_every_serial_fault(scenario: Scenario, duration: float) -> Scenario:
    """A short run's random scenario may lack a garbage burst or an unplug: add one in a free spot."""
    faults = list(scenario.faults)
    for kind, length in (("garbage", 0.0), ("unplug", 2.0)):
        if any(f.kind == kind for f in faults):
            continue
        spans = [(f.start - FAULT_MARGIN, f.start + f.duration + FAULT_MARGIN) for f in faults]
        t = next((x / 2 for x in range(10, int(duration * 2) - 20) if _free(spans, x / 2, length)), None)
        if t is not None:
            faults.append(FaultSpec(id=f"extra-{kind}", kind=kind, start=t, duration=length, size=64))
    return scenario.model_copy(update={"faults": sorted(faults, key=lambda f: f.start)})


def build_plan(duration: float, seed: int, settle_max: float, short: bool) -> SoakPlan:
    """`duration` = the chaos phase. The counts scale with it and meet the acceptance floor at 600 s:
    >= 20 kills, 3 Atlas outages, 10 websocket drops, 10 unplugs (scenario + extra)."""
    rng = random.Random(f"soak-harness-{seed}")
    scenario = _with_every_serial_fault(soak(duration, seed), duration).with_ids()
    scale = duration / 600.0
    spans = _busy(scenario)
    warm = min(15.0, duration * 0.1)
    # Kills in the first 70 % so the last agent process lives long enough for the resource trend.
    kills = 2 if short else max(1, round(22 * scale))
    kill_hi = duration * 0.75 if not short else duration - 8.0
    kill_times = _place(spans, rng, kills, warm, kill_hi, KILL_SLOT)
    scenario_unplugs = sum(1 for f in scenario.faults if f.kind == "unplug")
    extra_unplugs = max(1, round(12 * scale) - scenario_unplugs) if not short else 1
    unplug_times = _place(spans, rng, extra_unplugs, warm, duration - 5.0, UNPLUG_SLOT)
    actions = [Action(round(t, 3), "kill", 1.0) for t in kill_times]
    actions += [Action(round(t + FAULT_MARGIN, 3), "unplug", 2.0) for t in unplug_times]
    outage = 60.0 if not short else 6.0
    atlas: list[tuple[str, float]] = [("atlas_outage", outage)] * max(1, round(3 * scale))
    atlas += [("atlas_errors", 15.0 if not short else 5.0)] * max(1, round(4 * scale))
    atlas += [("atlas_slow", 30.0 if not short else 5.0)] * max(1, round(2 * scale))
    actions += _track(rng, atlas, warm, duration - 5.0)
    lens: list[tuple[str, float]] = [("ws_drop", 0.0)] * max(1, round(12 * scale))
    lens += [("session_destroy", 0.0)] * max(1, round(4 * scale))
    lens += [("session_expire", 0.0)] * max(1, round(2 * scale))
    lens_actions = _track(rng, lens, warm, duration - 5.0)
    actions += lens_actions
    actions.sort(key=lambda a: a.t)
    return SoakPlan(scenario, duration, duration + settle_max + 30.0, actions)
