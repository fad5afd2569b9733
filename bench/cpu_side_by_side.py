"""Whole-agent CPU of two agents measured side by side: what a change costs, through the host's noise.

On a VM the CPU one agent uses at 3 Mbaud moves by more than a point from one run to the next (the
host's load moves the cost of every wake-up: bench/RESULTS.md), so a change worth half a point cannot be
seen by running one tree and then the other. Here two agents run at once, each `edge-agent run` against
its own emulators and its own pty written at 5,000 lines/s (bench/soak_lib/agent_bench.py), and their
CPU is taken from /proc over the same window: the host's noise hits both alike, and their difference is
the change's. Which one starts first alternates from round to round. The same tree against itself
differed by 0 to -0.15 point over 4 rounds of 20 s (2026-12-03). Not part of bench/run.

Run: .venv/bin/python bench/cpu_side_by_side.py [--a TREE] [--b TREE] [--b-config EDIT]
                                                [--rounds 3] [--seconds 20]
`--b-config` changes B's config (the tree is the same unless --b says otherwise): `no-lens`,
`no-recorder`, or `lens-step-5120` (windows every 5,120 samples instead of the bench's 128).
`--b-deployed` runs B as deployed (soak_lib.agent_bench.deployed_venv: a venv of /usr/bin/python3 with
B's tree installed, run from outside the tree): what the interpreter a bench PC runs changes. Prints
each round's two figures and the median of B - A.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from soak_lib.agent_bench import AgentBench, _cpu_seconds, deployed_venv  # noqa: E402

LINES_PER_S = 5000.0  # 8-channel CSV at 3 Mbaud equivalent
SETTLE_S = 4.0  # after READY=1: the lens session up, the first Atlas writes done


def _no_lens(config: str) -> str:
    return re.sub(r"\[lens\].*?(?=\[atlas\])", "[lens]\nenabled = false\n", config, flags=re.S)


def _no_recorder(config: str) -> str:
    return config.replace("[steps]", "[recorder]\nenabled = false\n[steps]")


def _lens_step_5120(config: str) -> str:
    return config.replace("step_size = 128", "step_size = 5120")


EDITS: dict[str, Callable[[str], str]] = {
    "none": str,
    "no-lens": _no_lens,
    "no-recorder": _no_recorder,
    "lens-step-5120": _lens_step_5120,
}


async def _start(
    workdir: Path, tree: Path, edit: Callable[[str], str], venv: Path | None = None
) -> tuple[AgentBench, asyncio.subprocess.Process]:
    bench = AgentBench(workdir)
    bench.repo = tree
    if venv is not None:  # as deployed: the venv's python, run from outside the tree
        bench.python, bench.cwd = str(venv / "bin" / "python"), workdir
    await bench.start_peers()
    proc, _ = await bench._spawn("side", edit=edit)
    return bench, proc


async def _stop(bench: AgentBench, proc: asyncio.subprocess.Process) -> None:
    await bench._stop(proc)
    await bench.stop_peers()


async def one_round(
    workdir: Path,
    a: Path,
    b: Path,
    edit_b: Callable[[str], str],
    seconds: float,
    b_first: bool,
    b_venv: Path | None = None,
) -> tuple[float, float]:
    """% of a core of A and of B over the same `seconds` at LINES_PER_S each (`workdir` holds the
    folders `a` and `b`; B runs from `b_venv` if given)."""
    plan: list[tuple[str, Path, Callable[[str], str], Path | None]] = [
        ("a", a, str, None),
        ("b", b, edit_b, b_venv),
    ]
    if b_first:
        plan.reverse()
    started = {name: await _start(workdir / name, tree, edit, venv) for name, tree, edit, venv in plan}
    (bench_a, proc_a), (bench_b, proc_b) = started["a"], started["b"]
    pid_a, pid_b = proc_a.pid, proc_b.pid
    try:
        await asyncio.sleep(SETTLE_S)
        cpu_a, cpu_b, t0 = _cpu_seconds(pid_a), _cpu_seconds(pid_b), time.perf_counter()
        await asyncio.gather(
            asyncio.to_thread(bench_a.writer.stream, LINES_PER_S, seconds),
            asyncio.to_thread(bench_b.writer.stream, LINES_PER_S, seconds),
        )
        await asyncio.sleep(0.2)  # the last lines read
        wall = time.perf_counter() - t0
        return (
            100.0 * (_cpu_seconds(pid_a) - cpu_a) / wall,
            100.0 * (_cpu_seconds(pid_b) - cpu_b) / wall,
        )
    finally:
        for bench, proc in started.values():
            await _stop(bench, proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--a", type=Path, default=HERE.parent, help="the tree whose agent is A")
    parser.add_argument("--b", type=Path, default=HERE.parent, help="the tree whose agent is B")
    parser.add_argument("--b-config", choices=sorted(EDITS), default="none", help="a change of B's config")
    parser.add_argument("--b-deployed", action="store_true", help="run B as deployed (/usr/bin/python3)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    differences = []
    with tempfile.TemporaryDirectory(prefix="edge-side-venv-") as venv_dir:
        b_venv = deployed_venv(args.b.resolve(), Path(venv_dir) / "venv") if args.b_deployed else None
        if args.b_deployed and b_venv is None:
            sys.exit(
                "--b-deployed: no deployed venv (no /usr/bin/python3 of 3.11 or later, or its install failed)"
            )
        for index in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="edge-side-") as tmp:
                for name in ("a", "b"):
                    (Path(tmp) / name).mkdir()
                cpu_a, cpu_b = asyncio.run(
                    one_round(
                        Path(tmp), args.a, args.b, EDITS[args.b_config], args.seconds, index % 2 == 1, b_venv
                    )
                )
            differences.append(cpu_b - cpu_a)
            print(
                f"round {index + 1}: A {cpu_a:.2f} %  B {cpu_b:.2f} %  B - A {cpu_b - cpu_a:+.2f}", flush=True
            )
    print(
        f"B - A: median {statistics.median(differences):+.2f} point of a core"
        f" ({', '.join(f'{d:+.2f}' for d in sorted(differences))})"
    )


if __name__ == "__main__":
    main()
