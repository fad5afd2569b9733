"""Backtest throughput: frames/s of `edge-agent backtest` over a recording of 10 channels with 5 rules on
each (limits, rate, stuck, dropout, baseline), quiet and with faults.

Run: .venv/bin/python bench/bench_backtest.py [--rows N] [--repeat R]. Prints the figures and writes
bench/out/backtest.json. The recording is a CSV written to a temporary directory (1 kHz device time in
`t_ms`); the figure is data rows / CPU seconds of this process in `run_backtest` (reading and decoding
the file, the rules, the tracker, the incidents), best of `--repeat` runs: the backtest runs on one
core, and on a shared machine its wall time says more about the neighbours than about it (the wall-time
rate is reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import update_results

from edge_agent.backtest.runner import BacktestOptions, run_backtest
from edge_agent.config import EdgeAgentConfig, load_config

CHANNELS = [f"ch{i}" for i in range(10)]
RATE_HZ = 1000.0


def config(tmp: Path) -> EdgeAgentConfig:
    rules: list[dict[str, Any]] = []
    for i, channel in enumerate(CHANNELS):
        level = float(i)
        rules += [
            {"channel": channel, "kind": "limits", "min": level - 5.0, "max": level + 5.0, "hold_samples": 3},
            {"channel": channel, "kind": "rate", "max_rate": 5000.0},
            {"channel": channel, "kind": "stuck", "stuck_for": 5.0},
            {"channel": channel, "kind": "dropout", "dropout_after": 1.0},
            {
                "channel": channel,
                "kind": "baseline",
                "baseline_warmup": 10.0,
                "baseline_k": 8.0,
                "hold": 0.05,
            },
        ]
    env = {
        "EDGE_AGENT_SERIAL": json.dumps([{"name": "bench", "url": "loop://", "device_time": "t_ms"}]),
        "EDGE_AGENT_RULES": json.dumps(rules),
    }
    return load_config(None, environ=env, home=tmp)


def recording(path: Path, rows: int, faults: bool, seed: int = 1) -> None:
    """Gaussian noise around each channel's level; with faults, every 50,000 rows a 200-row excursion on
    three channels, a 2 s silence on one and a 6 s stuck value on another."""
    rng = np.random.default_rng(seed)
    t_ms = np.arange(rows, dtype=np.int64)
    values = np.arange(len(CHANNELS), dtype=np.float64) + rng.normal(0.0, 0.05, (rows, len(CHANNELS)))
    values = np.round(values, 4)
    keep = np.ones(rows, dtype=bool)
    if faults:
        for start in range(20_000, rows - 10_000, 50_000):
            values[start : start + 200, 0:3] += 20.0
            values[start + 1000 : start + 7000, 5] = values[start + 1000, 5]
            keep[start + 8000 : start + 10_000] = False
    lines = [f"{t},{','.join(row)}" for t, row in zip(t_ms[keep], values[keep].astype(str), strict=True)]
    path.write_text("t_ms," + ",".join(CHANNELS) + "\n" + "\n".join(lines) + "\n")


def measure(cfg: EdgeAgentConfig, path: Path, repeat: int) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for _ in range(repeat):
        cpu_started = time.process_time()
        result = run_backtest(cfg, path, BacktestOptions())
        cpu = time.process_time() - cpu_started
        rate = result.frames / cpu
        if not best or rate > best["frames_per_s"]:
            members = sum(len(r.closed.incident.members) for r in result.incidents)
            best = {
                "frames": result.frames,
                "seconds": result.seconds,
                "cpu_seconds": cpu,
                "frames_per_s": rate,
                "frames_per_wall_s": result.frames / result.seconds,
                "incidents": len(result.incidents),
                "anomalies": result.anomalies_opened,
                "incident_members": members,
            }
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "what": f"run_backtest over a CSV of {args.rows:,} rows x {len(CHANNELS)} channels at 1 kHz,"
        " 5 rules per channel (limits, rate, stuck, dropout, baseline); frames/s = rows / wall seconds,"
        f" best of {args.repeat}, one process (one core)",
        "cpu_count_used": 1,
        "pid": os.getpid(),
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp))
        for name, faults in (("quiet", False), ("faults", True)):
            path = Path(tmp) / f"{name}.csv"
            recording(path, args.rows, faults)
            best = measure(cfg, path, args.repeat)
            results["scenarios"][name] = best
            print(
                f"{name:8s} {best['frames_per_s']:>12,.0f} frames/s  ({best['frames']:,} frames in"
                f" {best['seconds']:.2f} s; {best['incidents']} incidents, {best['anomalies']} anomalies)"
            )
    out = update_results("backtest", "backtest", results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
