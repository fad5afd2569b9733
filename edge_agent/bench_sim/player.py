"""Plays a Scenario over the BenchModel: samples at a fixed rate, step markers, faults, oracle records.

Sans-I/O: `advance(now)` returns everything due up to scenario time `now`. Sample k is at
`k / rate`, so pacing jitter in the adapter never shifts the device clock (`t_ms`).

Ordering at equal times: a step's END marker, then a START marker, then the sample (so a sample at
a step's start belongs to that step), then garbage bursts, then oracle records.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.outputs import OracleEntry, Output, Unplug, Write, WriteKind
from edge_agent.bench_sim.scenario import FaultSpec, Scenario, StepSpec

_END_MARKER, _START_MARKER, _UNPLUG, _GARBAGE, _RECORD = 0, 1, 2, 4, 5
_SAMPLE = 3


def device_ms(t: float) -> int:
    return round(t * 1000.0)


@dataclass(slots=True)
class _ActiveFault:
    spec: FaultSpec
    start: float
    end: float
    run: int
    channel: int  # index into the model's channels; -1 = the whole device
    frozen: float | None = None
    samples: int = 0


@dataclass(slots=True)
class _ActiveStep:
    spec: StepSpec
    start: float
    end: float
    baselines: dict[int, float] = field(default_factory=dict)


def expected_outcome(step: StepSpec, faults: list[FaultSpec], sample_period: float) -> tuple[str, list[str]]:
    """(`passed` | `passed_with_exception` | `failed`, ids of the anomalous faults overlapping the step).

    A step overlapping an anomalous high-severity fault fails; lower severities pass with an exception.
    """
    hits = [f for f in faults if f.anomalous and f.start < step.end and f.end(sample_period) > step.start]
    if any(f.severity == "high" for f in hits):
        outcome = "failed"
    elif hits:
        outcome = "passed_with_exception"
    else:
        outcome = "passed"
    return outcome, [f.id for f in hits]


class ScenarioPlayer:
    """`duration`: stop after this many seconds (None = the scenario's length, or forever with `loop`).
    Past the scenario's end, without `loop`, normal data keeps flowing until `duration`."""

    def __init__(
        self,
        scenario: Scenario,
        model: BenchModel,
        rate: float,
        seed: int,
        duration: float | None = None,
        loop: bool = False,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (lines per second)")
        self.scenario = scenario.with_ids()
        self.model = model
        self.rate = rate
        self.period = 1.0 / rate
        self.loop = loop
        self.length = max(self.scenario.length, self.period)
        self.end_time: float | None = duration if duration is not None else (None if loop else self.length)
        self._check_channels()
        self._garbage_rng = random.Random(f"garbage-{seed}")
        self._k = 0  # next sample index
        self._run = -1  # scenario repetitions started
        self._seq = 0
        self._agenda: list[tuple[float, int, int, Any]] = []
        self._pending_faults: list[_ActiveFault] = []  # sorted by start, not yet active
        self._pending_steps: list[_ActiveStep] = []
        self._faults: list[_ActiveFault] = []
        self._steps: list[_ActiveStep] = []
        self._header_sent = False
        self._counts = {"samples": 0, "markers": 0, "garbage_bursts": 0, "silent_samples": 0}
        self._fmt = ",".join(["{}"] + [f"{{:.{c.decimals}f}}" for c in model.channels]) + "\n"
        self._start_run(0)

    def _check_channels(self) -> None:
        known = set(self.model.names)
        for f in self.scenario.faults:
            if f.channel is not None and f.channel not in known and f.kind not in ("garbage", "unplug"):
                raise ValueError(
                    f"fault {f.id}: unknown channel {f.channel!r} (channels: {', '.join(known)})"
                )
        for s in self.scenario.steps:
            unknown = set(s.set) - known
            if unknown:
                raise ValueError(f"step {s.name}: unknown channel(s) {', '.join(sorted(unknown))}")

    def _push(self, t: float, prio: int, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._agenda, (t, prio, self._seq, item))

    def _start_run(self, run: int) -> None:
        """Schedule the markers, bursts and records of repetition `run` of the scenario."""
        self._run = run
        offset = run * self.length
        sc = self.scenario
        for step in sc.steps:
            s, e = offset + step.start, offset + step.end
            outcome, hits = expected_outcome(step, sc.faults, self.period)
            expected = "FAIL" if outcome == "failed" else "PASS"
            verdict = expected if step.verdict == "auto" else step.verdict
            baselines = {self.model.index[c]: v for c, v in step.set.items()}
            self._pending_steps.append(_ActiveStep(step, s, e, baselines))
            self._push(s, _START_MARKER, Write(s, f"#STEP START {step.name}\n".encode(), WriteKind.MARKER))
            self._push(
                e, _END_MARKER, Write(e, f"#STEP END {step.name} {verdict}\n".encode(), WriteKind.MARKER)
            )
            record = {
                "record": "step", "name": step.name, "run": run, "start_s": s, "end_s": e,
                "start_device_ms": device_ms(s), "end_device_ms": device_ms(e), "marker_verdict": verdict,
                "expected_verdict": expected, "expected_outcome": outcome, "faults": hits,
            }  # fmt: skip
            self._push(e, _RECORD, OracleEntry(e, record))
        for spec in sc.faults:
            s, e = offset + spec.start, offset + spec.end(self.period)
            record = {
                "record": "fault", "id": spec.id, "run": run, "kind": spec.kind, "channel": spec.channel,
                "start_s": s, "end_s": e, "start_device_ms": device_ms(s), "end_device_ms": device_ms(e),
                "magnitude": spec.magnitude, "severity": spec.severity, "expected_rule": spec.rule,
                "expect_anomaly": spec.anomalous,
            }  # fmt: skip
            if spec.kind == "unplug":
                self._push(s, _UNPLUG, Unplug(s, e, record))
                continue
            if spec.kind == "garbage":
                self._push(s, _GARBAGE, (spec, record))
                continue
            channel = -1 if spec.channel is None else self.model.index[spec.channel]
            active = _ActiveFault(spec, s, e, run, channel)
            self._pending_faults.append(active)
            self._push(e, _RECORD, active)
        self._pending_faults.sort(key=lambda a: a.start)
        self._pending_steps.sort(key=lambda a: a.start)

    def _sample_time(self) -> float:
        return self._k / self.rate  # not k * period: 650 * 0.02 != 13.0 in floating point

    def next_due(self) -> float | None:
        if not self._header_sent:
            return 0.0
        candidates = []
        ts = self._sample_time()
        if self.end_time is None or ts < self.end_time:
            candidates.append(ts)
        if self._agenda and (self.end_time is None or self._agenda[0][0] <= self.end_time):
            candidates.append(self._agenda[0][0])
        return min(candidates) if candidates else None

    def advance(self, now: float) -> list[Output]:
        out: list[Output] = []
        if not self._header_sent:
            self._header_sent = True
            out.append(Write(0.0, self.model.header(), WriteKind.HEADER))
        end = self.end_time
        while True:
            ts = self._sample_time()
            if self.loop and ts >= (self._run + 1) * self.length:
                self._start_run(self._run + 1)
            sample_due = ts <= now and (end is None or ts < end)
            if self._agenda:
                ta, prio = self._agenda[0][0], self._agenda[0][1]
                agenda_due = ta <= now and (end is None or ta <= end)
                if agenda_due and (not sample_due or (ta, prio) < (ts, _SAMPLE)):
                    self._emit_agenda(heapq.heappop(self._agenda)[3], ta, out)
                    continue
            if not sample_due:
                return out
            self._emit_sample(ts, out)
            self._k += 1

    def _emit_agenda(self, item: Any, t: float, out: list[Output]) -> None:
        if isinstance(item, Write):
            self._counts["markers"] += 1
            out.append(item)
        elif isinstance(item, OracleEntry | Unplug):
            out.append(item)
        elif isinstance(item, _ActiveFault):
            out.append(OracleEntry(t, self._fault_record(item)))
        else:
            spec, record = item
            self._counts["garbage_bursts"] += 1
            data = garbage_bytes(self._garbage_rng, spec.size)
            out.append(Write(t, data, WriteKind.GARBAGE))
            out.append(OracleEntry(t, {**record, "bytes": len(data)}))

    def _fault_record(self, fault: _ActiveFault, truncated_at: float | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "record": "fault", "id": fault.spec.id, "run": fault.run, "kind": fault.spec.kind,
            "channel": fault.spec.channel, "start_s": fault.start, "end_s": fault.end,
            "start_device_ms": device_ms(fault.start), "end_device_ms": device_ms(fault.end),
            "magnitude": fault.spec.magnitude, "severity": fault.spec.severity,
            "expected_rule": fault.spec.rule, "expect_anomaly": fault.spec.anomalous,
            "samples_affected": fault.samples,
        }  # fmt: skip
        if fault.frozen is not None:
            record["stuck_value"] = fault.frozen
        if truncated_at is not None:
            record.update(end_s=truncated_at, end_device_ms=device_ms(truncated_at), truncated=True)
        return record

    def _activate(self, t: float) -> None:
        pending = self._pending_faults
        while pending and pending[0].start <= t:
            self._faults.append(pending.pop(0))
        if self._faults and any(f.end <= t for f in self._faults):
            self._faults = [f for f in self._faults if f.end > t]
        steps = self._pending_steps
        while steps and steps[0].start <= t:
            self._steps.append(steps.pop(0))
        if self._steps and any(s.end <= t for s in self._steps):
            self._steps = [s for s in self._steps if s.end > t]

    def _emit_sample(self, t: float, out: list[Output]) -> None:
        self._activate(t)
        baselines: dict[int, float] | None = None
        for step in self._steps:
            if step.baselines:
                baselines = {**(baselines or {}), **step.baselines}
        values = self.model.values(t, baselines)
        if not self._faults:
            self._counts["samples"] += 1
            out.append(Write(t, self._fmt.format(device_ms(t), *values).encode(), WriteKind.SAMPLE))
            return
        # A channel dropout prints "nan": the decoders' missing-sample value (an empty field would make
        # the CSV decoder skip the whole line, i.e. a dropout of every channel).
        empty: list[int] = []
        for fault in self._faults:
            fault.samples += 1
            kind, ch = fault.spec.kind, fault.channel
            if kind == "step" or kind == "spike":
                values[ch] += fault.spec.magnitude
            elif kind == "drift":
                share = (t - fault.start) / fault.spec.duration if fault.spec.duration else 1.0
                values[ch] += fault.spec.magnitude * min(1.0, share)
            elif kind == "stuck":
                if fault.frozen is None:
                    # Freeze the value as printed, so every later line repeats the same text exactly.
                    fault.frozen = round(values[ch], self.model.channels[ch].decimals)
                values[ch] = fault.frozen
            elif kind == "dropout":
                if ch < 0:
                    self._counts["silent_samples"] += 1
                    return
                empty.append(ch)
        self._counts["samples"] += 1
        line = self._fmt.format(device_ms(t), *values)
        if empty:
            fields = line.rstrip("\n").split(",")
            for ch in empty:
                fields[ch + 1] = "nan"
            line = ",".join(fields) + "\n"
        out.append(Write(t, line.encode(), WriteKind.SAMPLE))

    def close(self, now: float) -> list[Output]:
        """Oracle records of the faults and steps in progress at `now` (an early stop)."""
        out: list[Output] = []
        for _, _, _, item in sorted(self._agenda):
            if isinstance(item, _ActiveFault) and item.start <= now:
                out.append(OracleEntry(now, self._fault_record(item, truncated_at=now)))
            elif isinstance(item, OracleEntry) and item.record["start_s"] <= now:
                out.append(OracleEntry(now, {**item.record, "end_s": now, "truncated": True}))
        self._agenda.clear()
        return out

    def stats(self) -> dict[str, int]:
        return dict(self._counts)


def garbage_bytes(rng: random.Random, size: int) -> bytes:
    """`size` random bytes then a newline. Never a newline inside, and the first byte is 0xFF
    (never valid UTF-8), so the burst is exactly one line that no decoder can take for data or a
    marker."""
    body = bytearray(rng.randrange(256) for _ in range(max(size, 1)))
    body[0] = 0xFF
    for i, b in enumerate(body):
        if b in (0x0A, 0x0D):
            body[i] = 0xFE
    return bytes(body) + b"\n"
