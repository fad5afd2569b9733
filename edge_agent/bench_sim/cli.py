"""`edge-agent simulate`: the simulated bench on a pseudo-terminal.

Prints `pty=/dev/pts/N link=PATH` when the pty is ready (again after every replug), then writes CSV
lines until the scenario ends. Run length: by default the scenario plays once and the simulator
exits; `--duration S` stops after S seconds (normal data continues past the scenario's end, or the
scenario repeats with `--loop`); `--loop` alone repeats until SIGINT/SIGTERM. SIGUSR1 unplugs the
"cable" for --unplug-for seconds and replugs it on a new /dev/pts/N behind the same link.

`--scenario list` prints the built-in scenarios.

`--write plant-day|plant-fault --out FILE.csv` writes a long plant recording instead of running
(`edge_agent/bench_sim/plant.py`: a pump skid's 10 channels; `--hours` of normal data with a
maintenance stop, or a breakdown with its rows in the `--oracle` file), for `--replay` and `backtest`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_agent.bench_sim import plant
from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.pty_port import LinkPathError, PtyPort
from edge_agent.bench_sim.replay import ReplayError, ReplayPlayer
from edge_agent.bench_sim.runner import BenchRunner, OracleWriter
from edge_agent.bench_sim.scenario import BUILTIN_DESCRIPTIONS, ScenarioError, builtin, load_scenario
from edge_agent.logs import get_logger

DEFAULT_LINK = "/tmp/edge-agent-sim/ttyBENCH0"
DEFAULT_RATE = 50.0
PLANT_RECORDINGS = ("plant-day", "plant-fault")
EX_USAGE = 2
log = get_logger(__name__)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate", type=_positive, default=None, help="sample lines per second (default 50; --write: 1)"
    )
    parser.add_argument(
        "--scenario", default="demo", metavar="NAME|FILE",
        help=f"built-in ({', '.join(BUILTIN_DESCRIPTIONS)}), a TOML file, or 'list' (default demo)",
    )  # fmt: skip
    parser.add_argument("--replay", metavar="FILE", help="replay this CSV instead of simulating")
    parser.add_argument("--time-column", metavar="NAME", help="replay: the time column (default: detected)")
    parser.add_argument("--speed", type=_positive, default=1.0, help="time runs X times faster (default 1)")
    parser.add_argument(
        "--link", default=DEFAULT_LINK, help=f"stable symlink to the pty (default {DEFAULT_LINK})"
    )
    parser.add_argument("--seed", type=int, default=0, help="noise, garbage and soak faults seed (default 0)")
    parser.add_argument(
        "--duration", type=_positive, metavar="S",
        help="stop after S (scenario) seconds; default: play the scenario once and stop",
    )  # fmt: skip
    parser.add_argument("--loop", action="store_true", help="repeat the scenario or the replay file")
    parser.add_argument(
        "--oracle", metavar="PATH", help="write every injected fault and step to this JSONL file"
    )
    parser.add_argument(
        "--unplug-every", type=_positive, metavar="S", help="unplug the cable every S seconds"
    )
    parser.add_argument(
        "--unplug-for", type=_positive, default=2.0, metavar="S",
        help="how long an unplug lasts (SIGUSR1, --unplug-every; default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--write", choices=PLANT_RECORDINGS, metavar="KIND",
        help=f"write a plant recording ({', '.join(PLANT_RECORDINGS)}) to --out and exit",
    )  # fmt: skip
    parser.add_argument("--out", metavar="FILE", help="--write: the CSV file to write")
    parser.add_argument(
        "--hours", type=_positive, default=24.0, help="--write plant-day: hours of data (default 24)"
    )
    parser.add_argument(
        "--lead-in", type=_positive, default=4 * 3600.0, metavar="S",
        help="--write plant-fault: seconds of normal data before the fault (default 14400)",
    )  # fmt: skip


def _list_scenarios() -> int:
    for name, description in BUILTIN_DESCRIPTIONS.items():
        length = f"{builtin(name).length:.0f} s" if name != "soak" else "--duration"
        print(f"{name:8} {length:>10}  {description}")
    return 0


def build_feed(args: argparse.Namespace) -> tuple[Feed, dict[str, Any]]:
    """The sans-I/O side of a run, from the command line. Raises ScenarioError/ReplayError/ValueError."""
    if args.replay:
        path = Path(args.replay)

        def open_lines() -> Iterator[bytes]:
            with path.open("rb") as file:
                yield from file

        if not path.is_file():
            raise ReplayError(f"{path}: no such file")
        replay = ReplayPlayer(open_lines, speed=1.0, time_column=args.time_column, loop=args.loop)
        info: dict[str, Any] = {"mode": "replay", "file": str(path), "time_column": replay.time_column}
        return Feed(replay, replay.header), info
    scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
    model = BenchModel(args.seed)
    rate = args.rate or DEFAULT_RATE
    player = ScenarioPlayer(scenario, model, rate, args.seed, duration=args.duration, loop=args.loop)
    info = {
        "mode": "simulate", "scenario": scenario.name, "seed": args.seed, "rate": rate,
        "scenario_length_s": player.length, "duration_s": player.end_time, "loop": args.loop,
        "columns": ["t_ms", *model.names],
    }  # fmt: skip
    return Feed(player, model.header()), info


async def _run(args: argparse.Namespace, feed: Feed, info: dict[str, Any]) -> dict[str, Any]:
    oracle = OracleWriter(Path(args.oracle)) if args.oracle else None
    runner = BenchRunner(
        feed, PtyPort(Path(args.link) if args.link else None), speed=args.speed, oracle=oracle,
        run_info=info, unplug_every=args.unplug_every, unplug_for=args.unplug_for, status=sys.stdout,
    )  # fmt: skip
    runner.install_signal_handlers()
    try:
        return await runner.run()
    finally:
        runner.remove_signal_handlers()
        if oracle is not None:
            oracle.close()


def _write_recording(args: argparse.Namespace) -> int:
    """`--write`: a plant recording at `--rate` rows/s (1 unless given), its oracle records beside it."""
    if not args.out:
        print("edge-agent simulate: --write needs --out FILE", file=sys.stderr)
        return EX_USAGE
    rate = args.rate or 1.0
    if args.write == "plant-day":
        recording = plant.normal(args.seed, hours=args.hours, rate=rate)
    else:
        recording = plant.pump_fault(
            args.seed, lead_in_s=args.lead_in, precursor_s=min(600.0, args.lead_in / 2), rate=rate
        )
    out = Path(args.out)
    try:
        recording.write_csv(out)
        if args.oracle:
            Path(args.oracle).write_text(
                "".join(json.dumps(r) + "\n" for r in recording.oracle_records()), encoding="utf-8"
            )
    except OSError as exc:
        print(f"edge-agent simulate: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EX_USAGE
    print(f"wrote {out}: {len(recording)} rows x {len(recording.names)} channels, seed {args.seed}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.scenario == "list":
        return _list_scenarios()
    if args.write:
        return _write_recording(args)
    try:
        feed, info = build_feed(args)
    except (ScenarioError, ReplayError, ValueError) as exc:
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return EX_USAGE
    try:
        summary = asyncio.run(_run(args, feed, info))
    except LinkPathError as exc:
        print(f"edge-agent simulate: {exc}", file=sys.stderr)
        return EX_USAGE
    log.info("simulate_done", **{k: v for k, v in summary.items() if k != "record"})
    return 0
