"""Decode throughput of each serial decoder on one core: 8-channel lines of about 60 bytes.

Feeds a pre-built stream in 1 KiB chunks (what a tty read returns at speed) through a fresh decoder,
best of several runs, and reports lines/s and samples/s (lines x channels). Target: csv >= 100,000 lines/s.

    .venv/bin/python bench/bench_decode.py [--lines 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import update_results

from edge_agent.config import SerialPort
from edge_agent.serial import make_decoder

CHANNELS = [f"ch{i}" for i in range(8)]
CSV_TARGET_LINES_PER_S = 100_000


def build_lines(fmt: str, count: int, rng: random.Random) -> list[bytes]:
    lines = []
    for n in range(count):
        values = [f"{rng.uniform(-50, 50):.2f}" for _ in CHANNELS]
        if fmt == "csv":
            text = f"{n * 10}," + ",".join(values)
        elif fmt == "kv":
            text = f"t={n * 10} " + " ".join(f"c{i}={v}" for i, v in enumerate(values))
        else:
            text = json.dumps({"t": n * 10, **{f"c{i}": float(v) for i, v in enumerate(values)}})
        lines.append(text.encode() + b"\n")
    return lines


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def measure(fmt: str, lines: list[bytes], repeat: int, chunk: int) -> dict[str, float]:
    columns = ["t", *CHANNELS] if fmt == "csv" else []
    port = SerialPort(
        name="bench", url="loop://", format=fmt, columns=columns, device_time="t", device_time_unit="ms"
    )
    chunks = chunked(b"".join(lines), chunk)
    best = float("inf")
    for _ in range(repeat):
        decoder = make_decoder(port)
        feed = decoder.feed
        start = time.process_time()
        for piece in chunks:
            feed(piece, 1.0, 2.0)
        elapsed = time.process_time() - start
        assert decoder.stats.frames == len(lines), decoder.stats
        best = min(best, elapsed)
    lines_per_s = len(lines) / best
    return {
        "line_bytes_avg": round(sum(map(len, lines)) / len(lines), 1),
        "lines_per_s": round(lines_per_s),
        "samples_per_s": round(lines_per_s * len(CHANNELS)),
        "us_per_line": round(1e6 / lines_per_s, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1024, help="bytes per feed() call")
    args = parser.parse_args()
    rng = random.Random(7)
    results: dict[str, dict[str, float]] = {}
    print(
        f"decode throughput, {len(CHANNELS)} channels/line, {args.chunk}-byte chunks, best of {args.repeat}"
    )
    for fmt in ("csv", "kv", "jsonl"):
        results[fmt] = measure(fmt, build_lines(fmt, args.lines, rng), args.repeat, args.chunk)
        r = results[fmt]
        print(
            f"  {fmt:6s} {r['line_bytes_avg']:5.1f} B/line  {r['lines_per_s']:>10,.0f} lines/s  "
            f"{r['samples_per_s']:>11,.0f} samples/s  {r['us_per_line']:.2f} us/line"
        )
    csv_ok = results["csv"]["lines_per_s"] >= CSV_TARGET_LINES_PER_S
    print(f"  csv target >= {CSV_TARGET_LINES_PER_S:,} lines/s: {'MET' if csv_ok else 'NOT MET'}")
    path = update_results(
        "serial",
        "decode",
        {"channels": len(CHANNELS), "chunk_bytes": args.chunk, "formats": results, "csv_target_met": csv_ok},
    )
    print(f"  written to {path}")
    return 0 if csv_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
