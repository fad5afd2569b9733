"""End to end from a real pty: lines/s read and decoded without loss, and the reader's CPU.

The device is a separate writer process on the pty master; this process runs the project's
SerialReader on the slave, exactly as the agent would, with a sink that checks every sequence number
(so "without loss" is verified, not assumed). CPU% is this process's `time.process_time()` (all its
threads, so the thread-mode reader thread counts) over wall time, in % of one core.

Cases, for each read mode (see edge_agent/serial/reader.py): `fd` (the default: the loop watches the
descriptor, reads paced by ReadPacer), `thread` (a reader thread, paced the same way) and
`asyncio_fast` (pyserial-asyncio-fast's transport as shipped: one read of <= 1 KiB per readable event):
- full speed: the writer blocks only on the pty's own flow control; lines/s until the last frame;
- 921,600 baud equivalent (~1,500 lines/s of ~60 bytes) and 3 Mbaud (~5,000 lines/s), paced in small
  bursts every `--tick` (1 ms: a full-speed USB UART delivers at most once per 1 ms USB frame);
- idle: port open, no bytes: shows there is no busy polling.
Targets: < 5 % of a core while streaming, < 0.5 % idle. Also printed: the CPU this machine charges
for one bare event-loop wake-up, the floor under every figure (large on a VM or a shared host).

    .venv/bin/python bench/bench_serial_e2e.py [--seconds 5] [--full-lines 200000] [--modes fd,thread]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import sys
import time
import tty
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import update_results

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, LinkEvent, SerialEvent
from edge_agent.serial.reader import IoMode, SerialReader

COLUMNS = ["seq", *(f"ch{i}" for i in range(1, 8))]  # 8 channels, ~60 bytes a line
RATES = {"921600_baud": 1_500, "3M_baud": 5_000}
CPU_TARGET = 5.0
IDLE_TARGET = 0.5


# --- the device: a separate process writing to the pty master ------------------------------------


def writer_main(fd: int, rate: float, total: int, tick: float) -> None:
    sys.stdin.buffer.read(1)  # "go": the parent starts its clocks, then releases us
    rng = random.Random(3)
    tails = [
        ",".join(f"{rng.uniform(-50, 50):.2f}" for _ in COLUMNS[1:]).encode() + b"\n" for _ in range(997)
    ]

    def line(seq: int) -> bytes:
        return b"%d," % seq + tails[seq % len(tails)]

    if rate <= 0:  # full speed: only the pty's flow control holds us back
        for start in range(0, total, 1000):
            os.write(fd, b"".join(line(s) for s in range(start, min(total, start + 1000))))
        return
    begin = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - begin) * rate) + 1)
        if due > sent:
            data = b"".join(line(s) for s in range(sent, due))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            sent = due
        time.sleep(tick)


# --- the agent side ------------------------------------------------------------------------------


class CheckingSink:
    """Counts frames and verifies the sequence numbers arrive complete and in order."""

    def __init__(self) -> None:
        self.frames = 0
        self.out_of_order = 0
        self.expected_total = -1
        self.done = asyncio.Event()
        self.up = asyncio.Event()

    def __call__(self, event: SerialEvent) -> None:
        if isinstance(event, LinkEvent):
            self.up.set()
        elif isinstance(event, Frame):
            if event.values["seq"] != self.frames:
                self.out_of_order += 1
            self.frames += 1
            if self.frames == self.expected_total:
                self.done.set()


async def run_case(
    mode: IoMode, rate: float, total: int, tick: float, idle_seconds: float = 0.0
) -> dict[str, Any]:
    master, slave = os.openpty()
    tty.setraw(slave)
    sink = CheckingSink()
    sink.expected_total = total
    port = SerialPort(name="bench", url=os.ttyname(slave), baudrate=921_600, columns=COLUMNS)
    reader = SerialReader(port, sink, io_mode=mode)
    task = asyncio.create_task(reader.run())
    try:
        await asyncio.wait_for(sink.up.wait(), 10)
        await asyncio.sleep(0.2)  # let the open settle before measuring
        if idle_seconds:
            cpu0, wall0, ru0 = (
                time.process_time(),
                time.perf_counter(),
                resource.getrusage(resource.RUSAGE_SELF),
            )
            await asyncio.sleep(idle_seconds)
        else:
            writer = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--writer", str(master), str(rate), str(total), str(tick),
                pass_fds=(master,), stdin=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(1.0)  # python start-up of the writer is not part of the measure
            assert writer.stdin is not None
            cpu0, wall0, ru0 = (
                time.process_time(),
                time.perf_counter(),
                resource.getrusage(resource.RUSAGE_SELF),
            )
            writer.stdin.write(b"g")
            await writer.stdin.drain()
            await asyncio.wait_for(sink.done.wait(), timeout=120 + total / max(rate, 1000))
            await writer.wait()
        cpu1, wall1, ru1 = time.process_time(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        os.close(master)
        os.close(slave)
    wall = wall1 - wall0
    stats = reader.decoder.stats
    result: dict[str, Any] = {
        "mode": reader.stats.mode,
        "seconds": round(wall, 3),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / wall, 3),
        "user_percent": round(100 * (ru1.ru_utime - ru0.ru_utime) / wall, 3),
        "system_percent": round(100 * (ru1.ru_stime - ru0.ru_stime) / wall, 3),
        "voluntary_context_switches": ru1.ru_nvcsw - ru0.ru_nvcsw,
        "frames": sink.frames,
        "lost": max(0, total - sink.frames) if not idle_seconds else 0,
        "out_of_order": sink.out_of_order,
        "skipped": stats.skipped_total,
        "reads": reader.stats.chunks,
    }
    if not idle_seconds:
        result["lines_per_s"] = round(sink.frames / wall)
        result["bytes_per_read_avg"] = round(reader.stats.bytes / max(1, reader.stats.chunks))
    return result


async def wakeup_cost_us(wakeups: int = 300, interval: float = 0.005) -> float:
    """CPU charged to this process per bare event-loop wake-up (timer, no work): the machine's floor.

    On a VM or a loaded host this is far from free, and it bounds what any reader can reach."""
    cpu0 = time.process_time()
    for _ in range(wakeups):
        await asyncio.sleep(interval)
    return round((time.process_time() - cpu0) / wakeups * 1e6, 1)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"wakeup_cost_us": await wakeup_cost_us()}
    print(f"  baseline: {out['wakeup_cost_us']} us of CPU per bare event-loop wake-up")
    for mode in args.modes:
        cases: dict[str, Any] = {}
        cases["full_speed"] = await run_case(mode, 0, args.full_lines, args.tick)
        for name, rate in RATES.items():
            cases[name] = await run_case(mode, rate, int(rate * args.seconds), args.tick)
            cases[name]["target_rate_lines_per_s"] = rate
        cases["idle"] = await run_case(mode, 0, 0, args.tick, idle_seconds=args.seconds)
        out[mode] = cases
        for name, r in cases.items():
            rate_text = f"{r['lines_per_s']:>9,} lines/s" if "lines_per_s" in r else " " * 17
            print(
                f"  {mode:6s} {name:12s} {rate_text}  cpu {r['cpu_percent_of_one_core']:6.2f} %  "
                f"lost {r['lost']}  out-of-order {r['out_of_order']}  reads {r['reads']}"
            )
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--writer":
        fd, rate, total, tick = sys.argv[2:6]
        writer_main(int(fd), float(rate), int(total), float(tick))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each paced and idle case")
    parser.add_argument("--full-lines", type=int, default=200_000)
    parser.add_argument("--tick", type=float, default=0.001, help="writer burst interval, seconds")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=["fd", "thread", "asyncio_fast"])
    args = parser.parse_args()
    print(
        f"serial end to end over a pty, {len(COLUMNS)}-channel csv lines, "
        f"writer burst every {args.tick * 1e3:g} ms"
    )
    results = asyncio.run(bench(args))
    verdicts = {
        mode: {
            "streaming_under_5pct": all(
                cases[name]["cpu_percent_of_one_core"] < CPU_TARGET for name in RATES
            ),
            "idle_under_0_5pct": cases["idle"]["cpu_percent_of_one_core"] < IDLE_TARGET,
            "no_loss": all(c["lost"] == 0 and c["out_of_order"] == 0 for c in cases.values()),
        }
        for mode, cases in results.items()
        if isinstance(cases, dict)
    }
    print(f"  verdicts: {verdicts}")
    path = update_results(
        "serial", "end_to_end", {"tick_seconds": args.tick, "modes": results, "verdicts": verdicts}
    )
    print(f"  written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
