"""Scenarios as data: a timeline of test steps and injected faults, plus the built-in ones.

A scenario is what a test engineer would script on a real bench: steps that a sequencer runs
(`#STEP START`/`#STEP END` markers) and faults that go wrong during them. Times are seconds from the
start of the run ("scenario time"); the simulator maps them to device time (`t_ms`) and the adapter
maps them to host monotonic/wall time for the oracle.

Scenario files are TOML with the same shape as the models below:

    name = "my-test"
    duration = "30s"              # optional: default = end of the last step or fault + 1 s
    [[steps]]
    name = "load_test"            # no whitespace (it is one token in the marker line)
    start = "2s"
    duration = "10s"
    set = { current_a = 2.2 }     # channel baselines while the step runs
    [[faults]]
    kind = "step"                 # step | drift | spike | stuck | dropout | garbage | unplug
    channel = "supply_v"
    start = "5s"
    duration = "3s"
    magnitude = 1.8
    severity = "high"
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.config import Duration, RuleKind, Severity, read_toml

FaultKind = Literal["step", "drift", "spike", "stuck", "dropout", "garbage", "unplug"]
StepVerdict = Literal["auto", "PASS", "FAIL"]

# Which local rule should catch each fault kind, when the scenario does not say. A drift is caught
# when it crosses a limit; a one-sample spike is usually shorter than a limit rule's hold, so the
# rate-of-change rule is the one expected to see it.
DEFAULT_EXPECTED_RULE: dict[str, RuleKind | None] = {
    "step": "limits",
    "drift": "limits",
    "spike": "rate",
    "stuck": "stuck",
    "dropout": "dropout",
    "garbage": None,
    "unplug": "dropout",
}
_NEEDS_CHANNEL = frozenset({"step", "drift", "spike", "stuck"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Model):
    """One injected fault. `magnitude` is in the channel's units (step offset, drift total, spike
    height); `size` is the byte count of a garbage burst. A `dropout` with a channel prints `nan`
    in that field (a missing sample); without one the whole device goes silent. `unplug` closes the
    pty and comes back on a new one after `duration`."""

    kind: FaultKind
    start: Duration
    duration: Duration = 0.0
    channel: str | None = None
    magnitude: float = 0.0
    size: int = Field(64, ge=1, le=1_000_000)
    severity: Severity = "medium"
    expected_rule: RuleKind | None = None
    expect_anomaly: bool | None = None
    id: str = ""

    @model_validator(mode="after")
    def _channel_when_needed(self) -> FaultSpec:
        if self.kind in _NEEDS_CHANNEL and not self.channel:
            raise ValueError(f"a '{self.kind}' fault needs a channel")
        return self

    @property
    def rule(self) -> RuleKind | None:
        return self.expected_rule if self.expected_rule is not None else DEFAULT_EXPECTED_RULE[self.kind]

    @property
    def anomalous(self) -> bool:
        """Whether the agent should raise an anomaly for it (garbage bytes are counted, not anomalies)."""
        return self.expect_anomaly if self.expect_anomaly is not None else self.kind != "garbage"

    def end(self, sample_period: float) -> float:
        # A zero-length spike still hits one sample: its window is at least one sample period.
        if self.kind == "spike":
            return self.start + max(self.duration, sample_period)
        return self.start + self.duration


class StepSpec(_Model):
    """One test step. `verdict` is what the END marker says; `auto` = the expected verdict (FAIL
    when a high-severity anomalous fault overlaps the step), as a bench's own checks would report."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^\S+$")
    start: Duration
    duration: Duration
    verdict: StepVerdict = "auto"
    set: dict[str, float] = Field(default_factory=dict)

    @property
    def end(self) -> float:
        return self.start + self.duration


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    duration: Duration | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)

    @property
    def length(self) -> float:
        """The scenario's own duration: given, or the end of its last step or fault plus one second."""
        if self.duration is not None:
            return self.duration
        ends = [s.end for s in self.steps] + [f.start + f.duration for f in self.faults]
        return max(ends, default=0.0) + 1.0

    def with_ids(self) -> Scenario:
        """A copy whose faults all have ids (`f1`, `f2`, ... in timeline order when not given)."""
        faults = sorted(self.faults, key=lambda f: f.start)
        named = [f if f.id else f.model_copy(update={"id": f"f{i}"}) for i, f in enumerate(faults, 1)]
        return self.model_copy(update={"faults": named})


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and the problem."""


def _clean() -> Scenario:
    return Scenario(
        name="clean",
        description="a short test sequence of three steps, no faults",
        duration=24.0,
        steps=[
            StepSpec(name="power_on", start=1.0, duration=5.0),
            StepSpec(name="load_test", start=7.0, duration=7.0, set={"current_a": 2.2}),
            StepSpec(name="thermal_check", start=15.0, duration=7.0),
        ],
    )


def _demo() -> Scenario:
    return Scenario(
        name="demo",
        description="~40 s: four steps; garbage burst, high-severity over-voltage, stuck sensor, spike",
        duration=40.0,
        steps=[
            StepSpec(name="power_on", start=1.0, duration=7.0),
            StepSpec(name="load_test", start=9.0, duration=11.0, set={"current_a": 2.2}),
            StepSpec(name="thermal_soak", start=21.0, duration=9.0),
            StepSpec(name="vibration_check", start=31.0, duration=7.0),
        ],
        faults=[
            FaultSpec(id="garbage-1", kind="garbage", start=4.0, size=48),
            FaultSpec(
                id="overvoltage-1",
                kind="step",
                channel="supply_v",
                start=13.0,
                duration=4.0,
                magnitude=1.8,
                severity="high",
            ),
            # What the demo's agent config (edge_agent/demo.py) files for them: the stuck sensor is a
            # low-severity stuck rule, and vibration_g has a limits rule (max 0.5, no hold) that its
            # one-sample spike crosses; it has no rate rule.
            FaultSpec(
                id="stuck-temp-1", kind="stuck", channel="temp_c", start=22.0, duration=6.0, severity="low"
            ),
            FaultSpec(
                id="spike-vib-1",
                kind="spike",
                channel="vibration_g",
                start=34.0,
                magnitude=1.5,
                expected_rule="limits",
            ),
        ],
    )


# Fault sizes for the random soak scenario, per channel: large enough for a limit rule set around
# the nominal values to see them (over-voltage 12 V -> 13.5 V, and so on).
_SOAK_MAGNITUDE = {
    "supply_v": 1.5,
    "current_a": 1.2,
    "temp_c": 20.0,
    "vibration_g": 1.0,
    "pressure_kpa": 10.0,
}
_SOAK_KINDS: tuple[FaultKind, ...] = ("step", "drift", "spike", "stuck", "dropout", "garbage", "unplug")


def soak(duration: float, seed: int) -> Scenario:
    """Steps of 20-60 s back to back and one fault at a time at random (seeded) moments.

    Faults never overlap each other, and keep 5 s apart, so the oracle can attribute each anomaly
    to exactly one fault.
    """
    rng = random.Random(f"soak-{seed}")
    steps: list[StepSpec] = []
    t = 1.0
    while t + 10.0 < duration:
        length = min(rng.uniform(20.0, 60.0), duration - t - 1.0)
        steps.append(
            StepSpec(name=f"step_{len(steps) + 1:03d}", start=round(t, 3), duration=round(length, 3))
        )
        t += length + 2.0
    faults: list[FaultSpec] = []
    t = rng.uniform(5.0, 15.0)
    while t + 10.0 < duration:
        kind = rng.choice(_SOAK_KINDS)
        channel = rng.choice(sorted(_SOAK_MAGNITUDE))
        length = 0.0 if kind in ("spike", "garbage") else round(rng.uniform(2.0, 8.0), 3)
        sign = rng.choice((-1.0, 1.0))
        high = kind == "step" and channel == "supply_v" and sign > 0
        faults.append(
            FaultSpec(
                kind=kind,
                start=round(t, 3),
                duration=length,
                channel=channel if kind in _NEEDS_CHANNEL else None,
                magnitude=sign * _SOAK_MAGNITUDE[channel] if kind in _NEEDS_CHANNEL else 0.0,
                size=rng.randint(16, 256),
                severity="high" if high else "medium",
            )
        )
        t += length + rng.uniform(8.0, 30.0)
    return Scenario(
        name="soak",
        description="random seeded faults over a long run",
        duration=duration,
        steps=steps,
        faults=faults,
    )


BUILTIN_DESCRIPTIONS = {
    "clean": _clean().description,
    "demo": _demo().description,
    "soak": "random seeded faults over --duration (default 10 min), one at a time",
}
SOAK_DEFAULT_DURATION = 600.0


def builtin(name: str, seed: int = 0, duration: float | None = None) -> Scenario:
    if name == "clean":
        return _clean()
    if name == "demo":
        return _demo()
    if name == "soak":
        return soak(duration if duration is not None else SOAK_DEFAULT_DURATION, seed)
    raise ScenarioError(f"no built-in scenario {name!r} (built-ins: {', '.join(BUILTIN_DESCRIPTIONS)})")


def load_scenario(name_or_path: str, seed: int = 0, duration: float | None = None) -> Scenario:
    """A built-in by name, else a TOML file; faults get ids. Raises ScenarioError with the reason."""
    if name_or_path in BUILTIN_DESCRIPTIONS:
        return builtin(name_or_path, seed, duration).with_ids()
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        raise ScenarioError(
            f"no built-in scenario {name_or_path!r} (built-ins: {', '.join(BUILTIN_DESCRIPTIONS)})"
        )
    try:
        document = read_toml(path)
    except Exception as exc:  # ConfigError renders file + reason; keep that text
        raise ScenarioError(str(exc)) from None
    document.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(document).with_ids()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise ScenarioError(f"scenario {path}: {problems}") from None
