"""Where the whole agent's CPU goes at 3 Mbaud equivalent (8-channel CSV, 5,000 lines/s): the real
`edge-agent run` against the emulators and a pty (bench/soak_lib/agent_bench.py), its event-loop thread
under cProfile with the thread's own CPU clock (`time.thread_time`: waiting in epoll costs nothing, so
the figures are CPU, not wall time), and every thread's CPU from /proc. Not part of bench/run.

Run: .venv/bin/python bench/profile_agent.py [--seconds 20] [--top 25] [--tree DIR]
Prints the per-thread CPU and the loop thread's functions by their own CPU (tottime) and with what
they call (cumtime), as % of one core over the run. cProfile's own overhead inflates every figure
(about 2x on small functions): read the shares, not the sum; the unprofiled CPU is the first line.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pstats
import shutil
import signal
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from soak_lib.agent_bench import AgentBench  # noqa: E402

# Runs `python -m edge_agent <args>`; SIGUSR1 starts profiling the main thread on its own CPU clock,
# SIGUSR2 stops it and writes the stats (so only the run under load is in them, not the start-up).
RUNNER = """
import cProfile, os, runpy, signal, sys, time
sys.path.insert(0, os.getcwd())  # the tree's edge_agent, as `python -m` run in it would find
out = sys.argv.pop(1)
profile = cProfile.Profile(time.thread_time)
signal.signal(signal.SIGUSR1, lambda *_: profile.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profile.disable(), profile.dump_stats(out)))
sys.argv[0] = "edge_agent"
runpy.run_module("edge_agent", run_name="__main__", alter_sys=True)
"""


async def run(workdir: Path, tree: Path, seconds: float, profiled: bool) -> tuple[float, dict[str, float]]:
    bench = AgentBench(workdir)
    bench.repo = tree
    if profiled:
        runner = workdir / "profiled_runner.py"
        runner.write_text(RUNNER)
        bench.launcher = [str(runner), str(workdir / "loop.prof")]  # run from `tree`: its edge_agent
    await bench.start_peers()
    try:
        proc, _ = await bench._spawn("profile")
        await asyncio.sleep(5.0)  # lens session up, first Atlas writes done
        if profiled:
            proc.send_signal(signal.SIGUSR1)
        cpu, _frames = await bench._cpu_during(proc.pid, seconds, 5000.0)
        if profiled:
            proc.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1.0)  # the stats written
        threads = dict(bench.last_threads)
        await bench._stop(proc)
    finally:
        await bench.stop_peers()
    return cpu, threads


def report(stats_path: Path, wall: float, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=out)
    entries = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    rows = [
        (tt, ct, nc, f"{Path(file).name}:{line}({name})")
        for (file, line, name), (_, nc, tt, ct, _) in entries.items()
    ]
    lines = [f"{'own %':>7} {'with callees %':>15} {'calls':>8}  function"]
    for by in (0, 1):
        lines.append("-- by own CPU --" if by == 0 else "-- with what they call --")
        for tt, ct, nc, name in sorted(rows, key=lambda r: r[by], reverse=True)[:top]:
            lines.append(f"{100 * tt / wall:7.2f} {100 * ct / wall:15.2f} {nc:8d}  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the tree whose agent runs")
    parser.add_argument("--keep", type=Path, help="copy the loop thread's cProfile stats here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edge-profile-") as tmp:
        for label in ("unprofiled", "profiled"):
            workdir = Path(tmp) / label
            workdir.mkdir()
            cpu, threads = asyncio.run(run(workdir, args.tree, args.seconds, profiled=label == "profiled"))
            print(
                f"{label}: {cpu:.2f} % of a core (loop thread {threads['main_thread']:.2f},"
                f" other threads {threads['other_threads']:.2f})"
            )
        print(report(Path(tmp) / "profiled" / "loop.prof", args.seconds, args.top))
        if args.keep:
            shutil.copy(Path(tmp) / "profiled" / "loop.prof", args.keep)


if __name__ == "__main__":
    main()
