"""Lens streaming benchmarks, against the project's Archetype emulator running in a subprocess.

1. Throughput: the same 1,000 `session.update` events (3 channels x 128 samples) with 5 ms of
   injected latency per websocket reply, sent by this agent's Streamer (pacing limits lifted; also
   with the default 20-in-flight window) and by the official `archetypeai` client's websocket path
   (`LensSessionSocket.send_and_recv`: lockstep send-then-receive, in its own worker thread).
   The emulator applies the 5 ms per reply *serially* on each connection (a server that takes 5 ms
   per event, not a 5 ms network round trip), so no client can beat 1,000 x 5 ms = 5 s here.
2. Latency: a real pty -> SerialReader -> LensService (windower, pacer, streamer): time from a
   window's last sample being read off the pty (the frame's host receive time) to its
   `session.update` leaving the socket (`ws.send` returned), p50/p99:
   a) 1,000 lines/s, 128-sample windows, pacing lifted (what the pipeline itself costs);
   b) 100 lines/s, 128-sample windows, default pacing (1 window/s, 20 in flight): the deployed shape.

    .venv/bin/python bench/bench_lens.py [--events 1000] [--latency-seconds 10] [--skip-official]

Prints the figures and writes bench/out/lens.json. Measured on a shared 2-core box: see loadavg.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import statistics
import sys
import time
import tty
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import update_results

from edge_agent.config import LensSection, SerialPort
from edge_agent.lens.client import LensClient, SessionInfo
from edge_agent.lens.outputs import OutputHandler
from edge_agent.lens.pacer import WindowPacer
from edge_agent.lens.protocol import update_event
from edge_agent.lens.service import LensService
from edge_agent.lens.status import SessionStatus
from edge_agent.lens.streamer import StreamDropped, Streamer, StreamSettings
from edge_agent.lens.windower import Window
from edge_agent.serial.reader import SerialReader

REPO = Path(__file__).resolve().parents[1]
LENS_ID = "lns-emulated-machine-state"
CHANNELS = ("a", "b", "c")
WS_PATH_PREFIX = "/v0.5/lens/sessions/lsn-"
LIFTED = {
    "max_windows_per_second": 1000.0,  # the most the config allows: far above 1 kHz / 128-row windows
    "max_in_flight": 1000,
    "queue_windows": 1000,
}  # the session websockets only, not the REST calls


class Emulator:
    """`edge-agent emulate` in a subprocess, so the clients measured do not share its CPU/GIL."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url = ""
        self.admin_url = ""
        self.api_key = ""

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
        env |= {
            "PYTHONPATH": str(REPO),
            "EDGE_AGENT_EMULATOR__WARMUP": "0.1",
            "EDGE_AGENT_EMULATOR__RUNNER_SLOTS": "8",
        }
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "emulate", "--log-level", "warning",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=str(REPO),
        )  # fmt: skip
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while not (self.base_url and self.api_key):
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("emulator exited")
                if match := re.search(r"Archetype lens API : (\S+)", line):
                    self.base_url = match[1]
                if match := re.search(r"ATAI_API_KEY=(\S+)", line):
                    self.api_key = match[1]
        self.admin_url = self.base_url.removesuffix("/v0.5") + "/_emulator"

    async def faults(self, **settings: Any) -> None:
        async with aiohttp.ClientSession() as http, http.post(f"{self.admin_url}/faults", json=settings) as r:
            r.raise_for_status()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def running_session(client: LensClient) -> SessionInfo:
    info = await client.create_session(LENS_ID)
    async with asyncio.timeout(20):
        while await client.session_status(info.session_id) is not SessionStatus.RUNNING:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # polling the server: there is no local event to wait on
    return info


def make_windows(n: int, size: int = 128) -> list[Window]:
    base = time.time()
    out = []
    for seq in range(n):
        data = [[math.sin((seq * size + i) / (5.0 + c)) for i in range(size)] for c in range(len(CHANNELS))]
        out.append(Window("bench", seq, CHANNELS, data, base + seq, base + seq + 0.1, 0.0, 0.0))
    return out


async def ours(
    emu: Emulator, client: LensClient, windows: list[Window], max_in_flight: int
) -> dict[str, Any]:
    info = await running_session(client)
    pacer: WindowPacer[Window] = WindowPacer(float("inf"), max_in_flight, len(windows) + 1)
    streamer = Streamer(
        pacer,
        OutputHandler("bench", lambda _: None),
        StreamSettings(poll_reads=False, heartbeat_interval=3600, status_interval=3600, reply_timeout=60),
    )
    task = asyncio.create_task(streamer.stream(info.endpoint, info.session_id, emu.api_key))
    try:
        async with asyncio.timeout(20):
            while streamer.stats.connects == 0:  # noqa: ASYNC110 - a benchmark probe, not a code path
                await asyncio.sleep(0.005)
        t0 = time.perf_counter()
        for window in windows:
            streamer.offer(window)
        async with asyncio.timeout(300):
            while pacer.stats.acked < len(windows):
                if task.done():
                    task.result()
                await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StreamDropped):
            await task
        await client.destroy_session(info.session_id)
    return {"seconds": round(elapsed, 3), "events_per_second": round(len(windows) / elapsed, 1)}


def official_blocking(endpoint: str, api_key: str, events: list[dict[str, Any]]) -> tuple[float, int]:
    from archetypeai._lens_session_socket import LensSessionSocket

    socket = LensSessionSocket(endpoint, {"Authorization": f"Bearer {api_key}"})
    try:
        socket.send_and_recv({"type": "session.heartbeat"})  # connected before the clock starts
        t0 = time.perf_counter()
        replies = 0
        for event in events:
            reply = socket.send_and_recv(event)
            replies += reply.get("type") == "session.update.response"
        return time.perf_counter() - t0, replies
    finally:
        socket.close()


async def official(emu: Emulator, client: LensClient, windows: list[Window]) -> dict[str, Any]:
    info = await running_session(client)
    events = [update_event(window, "") for window in windows]
    try:
        elapsed, replies = await asyncio.to_thread(official_blocking, info.endpoint, emu.api_key, events)
    finally:
        await client.destroy_session(info.session_id)
    return {
        "seconds": round(elapsed, 3),
        "events_per_second": round(len(events) / elapsed, 1),
        "update_replies_seen": replies,  # its heartbeat reply can be mistaken for an update's (§8.9)
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50) * 1e3, 3),
        "p99_ms": round(at(0.99) * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


async def pty_latency(
    emu: Emulator, state_dir: Path, rate: float, seconds: float, lifted: bool
) -> dict[str, Any]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    config = LensSection.model_validate(
        {
            "api_url": emu.base_url, "api_key": emu.api_key, "lens_id": LENS_ID, "channels": list(CHANNELS),
            "window_size": 128, "step_size": 128, "status_poll_interval": 0.05,
            **(LIFTED if lifted else {}),
        }
    )  # fmt: skip
    service = LensService(config, state_dir, lambda _: None, source="bench", record_latency=True)
    port = SerialPort(
        name="bench", url=os.ttyname(slave), baudrate=921600, format="csv", columns=list(CHANNELS)
    )
    reader = SerialReader(port, service.feed)
    tasks = [asyncio.create_task(service.run()), asyncio.create_task(reader.run())]
    try:
        async with asyncio.timeout(30):
            await service.running.wait()
        written = await write_lines(master, rate, seconds)
        await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        os.close(master)
        os.close(slave)
    stats = service.streamer.stats
    return {
        "lines_per_second": rate,
        "pacing": "lifted" if lifted else "default (1 window/s, 20 in flight, 20 queued)",
        "lines_written": written,
        "windows": service.windower.stats.windows,
        "updates_sent": stats.updates_sent,
        "dropped_queue_full": service.pacer.stats.dropped_queue_full,
        "superseded": service.pacer.stats.superseded,
        "windows_not_built": service.windower.stats.thinned,
        "send_latency": percentiles(list(stats.send_latency)),
    }


async def write_lines(master: int, rate: float, seconds: float) -> int:
    """CSV lines at `rate`, in 1 ms bursts (what a USB UART delivers)."""
    start = time.monotonic()
    written = 0
    pending = b""
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) * rate)
        if due > written:
            pending += b"".join(
                f"{math.sin(i / 7):.4f},{math.cos(i / 9):.4f},{i % 50}\n".encode()
                for i in range(written, due)
            )
            written = due
        if pending:
            with contextlib.suppress(BlockingIOError):
                pending = pending[os.write(master, pending) :]
        await asyncio.sleep(0.001)
    return written


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"{name:<38}: {figures['seconds']:8.3f} s  ({figures['events_per_second']} events/s)")


async def main(args: argparse.Namespace) -> None:
    emu = Emulator()
    await emu.start()
    results: dict[str, Any] = {}
    try:
        windows = make_windows(args.events)
        async with LensClient(emu.base_url, emu.api_key) as client:
            await emu.faults(latency=0.005, path_prefix=WS_PATH_PREFIX)
            mine = await ours(emu, client, windows, max_in_flight=len(windows))
            mine20 = await ours(emu, client, windows, max_in_flight=20)
            results["throughput"] = {
                "events": args.events,
                "ws_reply_latency_ms": 5,
                "floor_seconds": round(args.events * 0.005, 3),
                "edge_agent_unlimited_in_flight": mine,
                "edge_agent_20_in_flight": mine20,
            }
            report("edge-agent streamer, pacing lifted", mine)
            report("edge-agent streamer, 20 in flight", mine20)
            if not args.skip_official:
                theirs = await official(emu, client, windows)
                results["throughput"]["archetypeai_lockstep"] = theirs
                ratio = theirs["seconds"] / mine["seconds"]
                results["throughput"]["ratio_official_over_ours"] = round(ratio, 2)
                report("archetypeai LensSessionSocket", theirs)
                print(f"ratio official / ours                 : {ratio:8.2f}x")
            await emu.faults(latency=0.0, path_prefix="")
        state = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-lens-{os.getpid()}"
        lifted = await pty_latency(emu, state / "a", 1000.0, args.latency_seconds, lifted=True)
        paced = await pty_latency(emu, state / "b", 100.0, max(args.latency_seconds, 14.0), lifted=False)
        results["latency_pty_to_socket"] = {"lifted_1000hz": lifted, "default_pacing_100hz": paced}
        for name, case in (("1000 lines/s, pacing lifted", lifted), ("100 lines/s, default pacing", paced)):
            lat = case["send_latency"]
            print(f"pty->socket latency, {name}: n={lat.get('n')} p50={lat.get('p50_ms')} ms "
                  f"p99={lat.get('p99_ms')} ms max={lat.get('max_ms')} ms")  # fmt: skip
    finally:
        await emu.stop()
    path = update_results("lens", "streamer", results)
    print(f"wrote {path}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--skip-official", action="store_true")
    asyncio.run(main(parser.parse_args()))
