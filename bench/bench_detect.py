"""Detection throughput: frames/s through every rule kind for 8 channels (no anomalies, and with some).

Run: .venv/bin/python bench/bench_detect.py [--frames N]. Prints the figures and writes bench/out/detect.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from edge_agent.config import LensSection, RuleSection
from edge_agent.detect import Detector
from edge_agent.frames import Frame

CHANNELS = [f"ch{i}" for i in range(8)]


def make_rules() -> list[RuleSection]:
    rules = []
    for channel in CHANNELS:
        for kwargs in (
            {"kind": "limits", "min": -5.0, "max": 5.0, "hold_samples": 3},
            {"kind": "rate", "max_rate": 5000.0},
            {"kind": "stuck", "stuck_for": 5.0},
            # A band learned after 1 s, then recomputed every 10 s (10,000-sample blocks at 1 kHz) from
            # the last 10 min: 12x more often than the default, so the cost of updates is in the figure.
            {
                "kind": "baseline",
                "baseline_warmup": 1.0,
                "baseline_update": 10.0,
                "baseline_window": 600.0,
                "baseline_k": 8.0,
                "hold": 0.05,
            },
            {"kind": "dropout", "dropout_after": 1.0},
        ):
            rules.append(RuleSection.model_validate({"channel": channel, **kwargs}))
    return rules


def make_frames(count: int, rate_hz: float, spike_every: int) -> list[Frame]:
    rng = random.Random(1)
    frames = []
    for n in range(count):
        t = n / rate_hz
        values = {ch: float(i) * 0.5 + rng.gauss(0.0, 0.05) for i, ch in enumerate(CHANNELS)}
        if spike_every and n % spike_every < 20:
            values["ch3"] = 9.0
        frames.append(Frame("bench", t, 1.7e9 + t, values))
    return frames


def run(frames: list[Frame]) -> dict[str, float]:
    detector = Detector(make_rules(), LensSection(anomaly_labels=["fault"]))
    events = 0
    tick_every = 100
    start = time.perf_counter()
    for n, frame in enumerate(frames):
        events += len(detector.on_frame(frame))
        if n % tick_every == 0:
            events += len(detector.tick(frame.mono, frame.wall))
    elapsed = time.perf_counter() - start
    return {
        "frames": len(frames),
        "seconds": elapsed,
        "frames_per_s": len(frames) / elapsed,
        "events": events,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200_000)
    args = parser.parse_args()
    results = {
        "what": "Detector.on_frame (+ tick every 100 frames), 8 channels x 5 rules (limits, rate, stuck, "
        "baseline, dropout); 1 kHz frames; best of 3",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "note": "measured on a shared 2-core machine under contention from other jobs",
        "scenarios": {},
    }
    for name, spike_every in (("quiet", 0), ("spiky (20-frame excursion every 5000 frames)", 5000)):
        frames = make_frames(args.frames, 1000.0, spike_every)
        best = max((run(frames) for _ in range(3)), key=lambda r: r["frames_per_s"])
        results["scenarios"][name] = best  # type: ignore[index]
        print(f"{name:50s} {best['frames_per_s']:>12,.0f} frames/s  events={best['events']:.0f}")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "detect.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'detect.json'}")


if __name__ == "__main__":
    main()
