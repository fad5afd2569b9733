"""The plot in every issue: what one costs, and that the agent itself never pays for matplotlib.

Writes one incident's evidence (CSV + JSON, `--channels` channels x `--frames` frames, as the reporter
does) and draws its PNG `--plots` times the way the reporter does (`render_plot_async`: a child
process). Figures: wall time per plot p50/p99, the child's peak RSS, and this process's RSS before and
after (it imports the agent and draws every plot through it: matplotlib must never be loaded here).

Run: .venv/bin/python bench/bench_plot.py [--plots 20] [--channels 10] [--frames 20000].
Writes bench/out/plot.json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import update_results

import edge_agent.agent  # noqa: F401 - the agent's imports: the RSS baseline of an agent process
from edge_agent.evidence import write_evidence
from edge_agent.evidence.plot import plot_size, render_plot_async
from edge_agent.frames import Frame


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def measure(plots: int, channels: int, frames: int, tmp: Path) -> dict[str, Any]:
    rows = [
        Frame("bench", i * 0.01, 1_780_000_000.0 + i * 0.01,
              {f"ch{c}": math.sin(i / 50 + c) + (3.0 if c < 3 and frames // 3 < i < frames // 2 else 0.0)
               for c in range(channels)}, float(i * 10))
        for i in range(frames)
    ]  # fmt: skip
    members = [
        {"channel": f"ch{c}", "started_mono": frames // 3 * 0.01, "ended_mono": frames // 2 * 0.01,
         "peak_mono": frames * 0.004, "peak_value": 4.0}
        for c in range(3)
    ]  # fmt: skip
    summary = {"id": "bench", "kind": "incident", "title": "bench plot", "started_mono": frames // 3 * 0.01,
               "members": members, "limits": {f"ch{c}": {"max": 2.0} for c in range(channels)}}  # fmt: skip
    files = write_evidence(tmp, "bench", summary, rows, t0=frames // 3 * 0.01)
    before = rss_mb()
    seconds: list[float] = []
    for i in range(plots):
        started = time.perf_counter()
        png = await render_plot_async(files.csv_path, files.json_path, tmp / f"bench{i}.png")
        seconds.append(time.perf_counter() - started)
        assert png is not None, "a plot failed"
    after = rss_mb()
    child_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "plots": plots,
        "channels": channels,
        "frames": frames,
        "csv_bytes": files.csv_path.stat().st_size,
        "png_size_px": list(plot_size(channels)),
        "png_bytes_median": statistics.median((tmp / f"bench{i}.png").stat().st_size for i in range(plots)),
        "plot_ms_p50": round(statistics.median(seconds) * 1000, 1),
        "plot_ms_p99": round(percentile(seconds, 99) * 1000, 1),
        "plot_child_peak_rss_mb": round(child_peak_mb, 1),
        "agent_rss_before_mb": round(before, 1),
        "agent_rss_after_mb": round(after, 1),
        "matplotlib_in_agent_process": "matplotlib" in sys.modules,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plots", type=int, default=20)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--frames", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(measure(args.plots, args.channels, args.frames, Path(tmp)))
    for key, value in result.items():
        print(f"{key:32s} {value}")
    out = update_results("plot", "plot", {"what": "render_plot_async on one incident's evidence", **result})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
