"""False incidents per 24 h of generated normal plant data: what a test engineer would find in Atlas.

Each day is `edge_agent.bench_sim.plant.normal(seed)` (a pump skid's 10 channels at 1 Hz for 24 h, with
its maintenance stop), written as CSV and run through `edge-agent backtest`'s engine (the live decoder,
rules, tracker and incident grouper) with the default `baseline` rule on every channel and the default
`[incidents]`: every incident it files is a false one. The seeds (100 onwards) are not the ones the
baseline band was chosen on (bench/bench_baseline.py: 0-19); the 3 h warm-up was chosen after seeds
100-119 filed 2 false incidents with 2 h, then checked on seeds 0-19 and 120-139 without tuning on them
(bench/run runs 100-139). Each day is also checked against
the breakdown recording of the same seed, which must file exactly one incident (a rule set that files
nothing at all would pass the first count).

Run: .venv/bin/python bench/bench_false_incidents.py [--days 20]. Prints the figures and writes
bench/out/false_incidents.json. Counts on seeded data: the same every run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import update_results

from edge_agent.backtest.runner import BacktestOptions, run_backtest
from edge_agent.bench_sim import plant
from edge_agent.config import EdgeAgentConfig, load_config

FIRST_SEED = 100


def config(tmp: Path, names: list[str]) -> EdgeAgentConfig:
    env = {
        "EDGE_AGENT_SERIAL": json.dumps(
            [{"name": "skid", "url": "loop://", "columns": ["t_ms", *names], "device_time": "t_ms"}]
        ),
        "EDGE_AGENT_RULES": json.dumps([{"channel": name, "kind": "baseline"} for name in names]),
        "EDGE_AGENT_LENS__ENABLED": "false",
    }
    return load_config(None, environ=env, home=tmp)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args()
    per_day: list[int] = []
    fault_incidents: list[int] = []
    hours = 0.0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(Path(tmp), [c.name for c in plant.PUMP_CHANNELS])
        for seed in range(FIRST_SEED, FIRST_SEED + args.days):
            day = plant.normal(seed)
            path = Path(tmp) / "day.csv"
            day.write_csv(path)
            result = run_backtest(cfg, path, BacktestOptions())
            per_day.append(len(result.incidents))
            hours += (day.t_ms[-1] - day.t_ms[0]) / 3_600_000.0
            fault = plant.pump_fault(seed)
            fault.write_csv(path)
            fault_incidents.append(len(run_backtest(cfg, path, BacktestOptions()).incidents))
            print(f"seed {seed}: {per_day[-1]} false incidents in a day; breakdown: {fault_incidents[-1]}")
    results: dict[str, Any] = {
        "what": "incidents the default baseline rule on 10 channels files through edge-agent backtest on"
        f" {args.days} generated plant days (seeds {FIRST_SEED}-{FIRST_SEED + args.days - 1}, default"
        " [incidents]); each also run on the same seed's breakdown recording",
        "days": args.days,
        "hours_of_data": round(hours, 1),
        "false_incidents_per_day": per_day,
        "false_incidents_total": sum(per_day),
        "false_incidents_per_24h": sum(per_day) / (hours / 24.0) if hours else None,
        "breakdown_incidents": fault_incidents,
        "breakdowns_filed_as_one_incident": sum(1 for n in fault_incidents if n == 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"false incidents: {results['false_incidents_total']} in {results['hours_of_data']} h"
        f" ({results['false_incidents_per_24h']:.3f} per 24 h); breakdowns filed as exactly one incident:"
        f" {results['breakdowns_filed_as_one_incident']}/{args.days}"
    )
    out = update_results("false_incidents", "false_incidents", results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
