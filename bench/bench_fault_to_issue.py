"""Fault-to-issue latency of the whole agent: from the first faulty sample written to the serial line
to the issue being visible in Atlas.

Setup: `edge-agent run` as a subprocess (lens disabled, limit rules on three channels); a pty owned by
this script, on which a small writer emits 50 normal CSV lines a second and, every FAULT_EVERY
seconds, a fault on the next channel in turn (several faulty samples, then normal again); the Atlas
emulator in this process. The start time is `time.time()` just before the first faulty line is
written; the end time is taken inside the emulator, when `POST /api/v1/issues` has stored the issue
and is about to answer (the moment a `GET /issues` would first show it). Both clocks are this host's
wall clock, so no clock offset enters. Each issue is resolved as soon as it is made, so the next
anomaly of the same rule is a new issue, not a repeat comment. Incidents are on (the grouper runs on
every anomaly); the faults are scripted 0.6 s apart as separate events, so the join window is 0 s
and each fault is the first anomaly of its own incident: the latency of filing an incident's issue.

Measured twice: with the rules' `hold = 0` (the pipeline alone) and with `hold = 200ms` (the debounce
of the shipped example rule): then the latency includes the hold by design, and the figure minus the
hold is reported too. The path measured: pty -> reader/decoder -> rule -> incident grouper ->
reporter (open record, snapshot of the last `evidence.pre` = 10 s written to disk) -> outbox (SQLite,
fsync) -> upload of the snapshot -> issue create.

Usage: .venv/bin/python bench/bench_fault_to_issue.py [--anomalies 60]
Writes bench/out/fault_to_issue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))  # the agent process's helpers
from common import update_results
from e2e_helpers import free_port, port_up, spawn_agent

from edge_agent.config import EmulatorSection
from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas import API_PREFIX, AtlasEmulator
from edge_agent.emulators.common import Handler

TOKEN = "bench-atlas-token"
RATE = 50.0
FAULT_EVERY = 0.6
CHANNELS = {  # channel -> (normal value, faulty value); limits below
    "supply_v": (12.0, 14.0),
    "vibration_g": (0.05, 1.2),
    "current_a": (1.5, 3.5),
}
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]


def config_toml(state_dir: Path, link: Path, atlas_url: str, control_port: int, hold: float) -> str:
    rules = "".join(
        f"""
[[rules]]
channel = "{channel}"
kind = "limits"
max = {limit}
hold = "{hold}s"
clear_after = "300ms"
severity = "high"
"""
        for channel, limit in (("supply_v", 12.6), ("vibration_g", 0.5), ("current_a", 2.8))
    )
    return f"""
[agent]
bench = "bench-latency"
state_dir = "{state_dir}"
[[serial]]
name = "bench"
url = "{link}"
columns = {json.dumps(COLUMNS)}
device_time = "t_ms"
[lens]
enabled = false
[incidents]
join_window = "0s"
[atlas]
url = "{atlas_url}"
token = "{TOKEN}"
[control]
listen = "127.0.0.1:{control_port}"
{rules}
"""


class IssueClock:
    """Emulator middleware: the wall time each issue became visible, by channel tag; resolves it."""

    def __init__(self, emulator: AtlasEmulator) -> None:
        self.emulator = emulator
        self.created: list[tuple[float, list[str]]] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and request.path == f"{API_PREFIX}/issues" and response.status == 201:
            stored = time.time()
            assert isinstance(response, web.Response) and isinstance(response.body, bytes)
            issue = json.loads(response.body)
            self.created.append((stored, list(issue["tags"])))
            self.emulator.store.update_issue(issue["uuid"], m.IssueUpdate(status="resolved"))
        return response


class Writer:
    """The bench's end of the serial cable, with exact timestamps of the fault lines."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.link = link
        link.symlink_to(os.ttyname(self.slave))
        self.t0 = time.monotonic()
        self.k = 0
        self.rng = random.Random(1)
        self.faults: list[tuple[float, str]] = []  # (wall time of the first faulty line, channel)

    def line(self, fault: str | None) -> bytes:
        values = {c: v[0] + self.rng.gauss(0, 0.005) for c, v in CHANNELS.items()}
        if fault is not None:
            values[fault] = CHANNELS[fault][1]
        t_ms = round(self.k * 1000 / RATE)
        self.k += 1
        fields = [str(t_ms), f"{values['supply_v']:.3f}", f"{values['current_a']:.3f}", "35.00"]
        fields += [f"{values['vibration_g']:.4f}", "101.30"]
        return (",".join(fields) + "\n").encode()

    async def run(self, seconds: float, faults: int, fault_samples: int, first_fault_at: float) -> None:
        """Normal lines for `seconds`, with `faults` faults (each `fault_samples` lines long)."""
        names = list(CHANNELS)
        start = time.monotonic()
        next_fault, fault_left, channel, done = start + first_fault_at, 0, "", 0
        next_line = start
        while time.monotonic() - start < seconds:
            now = time.monotonic()
            if fault_left == 0 and done < faults and now >= next_fault:
                channel = names[done % len(names)]
                fault_left = fault_samples
                done += 1
                next_fault += FAULT_EVERY
                self.faults.append((time.time(), channel))
            data = self.line(channel if fault_left > 0 else None)
            fault_left = max(0, fault_left - 1)
            with contextlib.suppress(BlockingIOError):
                os.write(self.master, data)
            next_line += 1 / RATE
            await asyncio.sleep(max(0.0, next_line - time.monotonic()))

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure(hold: float, anomalies: int, workdir: Path) -> dict[str, Any]:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    emulator = AtlasEmulator(settings, seed=3, report_delay=60.0)
    clock = IssueClock(emulator)
    emulator.app.middlewares.append(clock.middleware)
    run_dir = workdir / f"hold-{hold:g}"
    run_dir.mkdir()
    link = run_dir / "ttyBENCH0"
    writer = Writer(link)
    control_port = free_port()
    config = run_dir / "agent.toml"
    async with emulator:
        config.write_text(
            config_toml(run_dir / "state", link, emulator.base_url, control_port, hold), encoding="utf-8"
        )
        proc = await spawn_agent(config, run_dir / "agent.log")
        try:
            warm = asyncio.create_task(writer.run(3.0, 0, 0, 0.0))
            async with aiohttp.ClientSession() as http:
                if await port_up(http, f"http://127.0.0.1:{control_port}", proc) is None:
                    raise RuntimeError("the agent never opened the pty")
            await warm
            # A fault lasts the hold plus 0.3 s, so it is one anomaly that opens after the hold.
            samples = round((hold + 0.3) * RATE)
            await writer.run(anomalies * FAULT_EVERY + 3.0, anomalies, samples, 1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 30)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            writer.close()
    latencies: list[float] = []
    unmatched = 0
    for i, (written, channel) in enumerate(writer.faults):
        later = [f[0] for f in writer.faults[i + 1 :] if f[1] == channel]
        until = later[0] if later else float("inf")
        made = [t for t, tags in clock.created if channel in tags and written <= t < until]
        if made:
            latencies.append(made[0] - written)
        else:
            unmatched += 1
    ms = [x * 1000 for x in latencies]
    result = {
        "hold_s": hold,
        "anomalies_injected": len(writer.faults),
        "issues_matched": len(ms),
        "faults_without_issue": unmatched,
        "issues_created": len(clock.created),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "max_ms": round(max(ms), 1) if ms else None,
        "min_ms": round(min(ms), 1) if ms else None,
    }
    if hold > 0 and ms:
        minus = [x - hold * 1000 for x in ms]
        result["p50_minus_hold_ms"] = round(statistics.median(minus), 1)
        result["p99_minus_hold_ms"] = round(percentile(minus, 99), 1)
    return result


async def main_async(anomalies: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-f2i-") as tmp:
        no_hold = await measure(0.0, anomalies, Path(tmp))
        print(json.dumps(no_hold, indent=2))
        with_hold = await measure(0.2, anomalies, Path(tmp))
        print(json.dumps(with_hold, indent=2))
    return {"hold_0": no_hold, "hold_200ms": with_hold}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalies", type=int, default=60, help="anomalies per configuration (>= 50)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args.anomalies))
    target_ms = 1000.0
    p99_no_hold = results["hold_0"]["p99_ms"]
    results["target"] = {
        "p99_ms_without_debounce": target_ms,
        "met": p99_no_hold is not None and p99_no_hold < target_ms,
    }
    results["notes"] = (
        "Start: time.time() just before the first faulty line is written to the pty (exact, this host). "
        "End: time.time() in the Atlas emulator right after POST /issues stored the issue. The agent "
        "is a separate process; the emulator and the writer share this script's event loop. 2-core box "
        "shared with other work: figures are under contention (see machine.loadavg)."
    )
    path = update_results("fault_to_issue", "fault_to_issue", results)
    verdict = "met" if results["target"]["met"] else "NOT met"
    print(f"target p99 < {target_ms:.0f} ms without debounce: {verdict}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
