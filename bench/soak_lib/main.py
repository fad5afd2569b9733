"""`bench/soak` command line: plan, run, check, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import tempfile
import time
from pathlib import Path

from edge_agent.logs import setup_logging

from .checks import evaluate
from .harness import Harness
from .plan import build_plan

OUT = Path(__file__).resolve().parents[1] / "out"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="chaos phase, seconds (default 600)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--short", action="store_true", help="CI variant: ~60 s, one of each fault kind")
    parser.add_argument("--settle-max", type=float, default=None, help="longest settling phase (s)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs, oracle and state here")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--recheck", type=Path, metavar="WORKDIR", help="evaluate a finished run again")
    args = parser.parse_args(argv)
    if args.recheck is not None:
        with (args.recheck / "run.pickle").open("rb") as f:
            old = pickle.load(f)  # our own file, written by this script
        text = evaluate(old, 10.0 if old.plan.chaos < 120 else 30.0).render()
        print(text)
        return 0 if "RESULT: PASS" in text else 1
    if args.short and args.duration == 600.0:
        args.duration = 45.0
    settle_max = args.settle_max if args.settle_max is not None else (40.0 if args.short else 120.0)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edge-soak-"))
    setup_logging("warning", json=True)  # the emulators log in this process; keep the report readable
    plan = build_plan(args.duration, args.seed, settle_max, args.short)
    started = time.time()
    run = asyncio.run(Harness(plan, workdir, args.seed, verbose=not args.quiet).execute())
    with (workdir / "run.pickle").open("wb") as f:
        pickle.dump(run, f)
    warmup = 10.0 if args.short else 30.0
    report = evaluate(run, warmup)
    text = report.render()
    print(text, flush=True)
    (workdir / "report.txt").write_text(text + "\n")
    if not args.short:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "soak.json").write_text(json.dumps({
            "duration_s": args.duration, "seed": args.seed, "wall_s": round(time.time() - started, 1),
            "ok": report.ok, "checks": [c.__dict__ for c in report.checks], "lines": report.lines,
        }, indent=2) + "\n")  # fmt: skip
    return 0 if report.ok else 1
