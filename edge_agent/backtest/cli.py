"""`edge-agent backtest --config FILE RECORDING [--json PATH]`: what the agent would have filed.

Runs the live decoder, rules, anomaly tracker and incident grouper over a recorded CSV or JSON-lines
file at full speed, prints the incidents and the test-step outcomes, and with `--json` writes them in
the stable shape of `report.py`. No network, no state directory, no Atlas; secrets in the config are
not read.

Exit status: 0 done (incidents or not), 2 bad options (no time column and no --rate, a --rate that is
not a finite number > 0, an unknown --source), 65 the recording does not fit the config (its columns
lack the time column, no row has a time), 66 the recording cannot be read, 69 numpy is missing (the
`backtest` extra), 73 the --json file cannot be written, 78 a configuration error (the field is named).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from edge_agent.config import EX_CONFIG, config_path_from, load_config

EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_CANTCREAT = 73


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="RECORDING", help="a recorded CSV or JSON-lines file")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the result as JSON to PATH ('-': stdout only)"
    )
    parser.add_argument("--source", metavar="NAME", help="the [[serial]] port whose decoder settings apply"
                        " (default: the first)")  # fmt: skip
    parser.add_argument("--time-column", metavar="NAME", help="the device time column (default: the port's"
                        " device_time)")  # fmt: skip
    parser.add_argument("--time-unit", choices=("s", "ms", "us", "ns"), help="its unit (default: the"
                        " port's, else the column name's suffix: t_ms, time_s)")  # fmt: skip
    parser.add_argument("--rate", type=rows_per_second, metavar="HZ",
                        help="no time column: rows this many per second")  # fmt: skip
    parser.add_argument("--format", choices=("csv", "jsonl", "kv"), help="the recording's format (default:"
                        " the port's)")  # fmt: skip


def rows_per_second(text: str) -> float:
    """`--rate`: a finite number > 0 (0, nan and inf would put every row at the same or no time)."""
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(rate) and rate > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 of rows per second, not {text!r}")
    return rate


def main(args: argparse.Namespace) -> int:
    try:
        import numpy  # noqa: F401
    except ModuleNotFoundError:
        print(
            "edge-agent backtest needs numpy: pip install 'edge-agent[backtest]' (or pip install numpy)",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    from edge_agent.backtest.recording import RecordingError
    from edge_agent.backtest.report import to_json, to_text
    from edge_agent.backtest.runner import BacktestOptions, run_backtest
    from edge_agent.detect.rules import RuleConfigError
    from edge_agent.state_files import dump_json, write_atomic

    path = config_path_from(args.config)
    config = load_config(path, secrets=False)  # a ConfigError exits 78 in edge_agent.cli
    recording = Path(args.recording)
    options = BacktestOptions(
        source=args.source, time_column=args.time_column, time_unit=args.time_unit, rate=args.rate,
        format=args.format,
    )  # fmt: skip
    try:
        result = run_backtest(config, recording, options)
    except RuleConfigError as exc:
        print(f"configuration error in {path}:\n  {exc}", file=sys.stderr)
        return EX_CONFIG
    except RecordingError as exc:
        print(f"edge-agent backtest: {exc}", file=sys.stderr)
        return exc.exit_code
    report = to_json(result, config, path)
    if args.json == "-":
        sys.stdout.buffer.write(dump_json(report) + b"\n")
        return 0
    sys.stdout.write(to_text(report))
    if args.json:
        try:
            write_atomic(Path(args.json), dump_json(report) + b"\n")
        except OSError as exc:
            print(f"edge-agent backtest: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return EX_CANTCREAT
    return 0
