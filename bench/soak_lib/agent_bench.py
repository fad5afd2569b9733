"""Whole-agent figures for bench/run: the real `edge-agent run` process against the in-process emulators
and a pty this process writes: start-up to READY=1 (NOTIFY_SOCKET), idle CPU and RSS, CPU at
921,600- and 3,000,000-baud-equivalent input, fault-to-issue latency, shutdown time after SIGTERM,
and RSS while Atlas is down and the outbox holds the jobs of an hour of anomalies.

CPU is the agent process's utime+stime (/proc/<pid>/stat) over wall time, in % of one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.config import EmulatedLens, EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

from .harness import REPO, free_port

CHANNELS = [f"ch{i}" for i in range(8)]
LINE_BYTES = 60  # an 8-channel CSV line as below: 921,600 baud (10 bits a byte) = 1,536 lines/s
TICKS = os.sysconf("SC_CLK_TCK")
BACKPRESSURE_ANOMALIES = 1800  # an hour of one anomaly every 2 s


def _line(k: int, value0: float) -> bytes:
    body = ",".join([f"{k % 10_000_000:07d}", f"{value0:.4f}", *(f"{1.0 + i * 0.1:.4f}" for i in range(7))])
    return (body.ljust(LINE_BYTES - 1) + "\n").encode()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _config(state: Path, link: Path, archetype: str, atlas: str, port: int, control_extra: str = "") -> str:
    cols = ", ".join(f'"{c}"' for c in ["t", *CHANNELS])
    lens_cols = ", ".join(f'"{c}"' for c in CHANNELS[:4])
    return f"""
[agent]
bench = "bench-run"
state_dir = "{state}"
[[serial]]
name = "bench"
url = "{link}"
columns = [{cols}]
[lens]
api_url = "{archetype}"
api_key = "emulator-atai-key"
lens_id = "lns-emulated-machine-state"
channels = [{lens_cols}]
window_size = 128
step_size = 128
anomaly_labels = []
[atlas]
url = "{atlas}"
token = "emulator-atlas-token"
[evidence]
ring_seconds = "30s"
pre = "1s"
post = "0s"
[incidents]
# Each scripted excursion is its own event (they come tens of ms apart): one incident, one issue each.
join_window = "0s"
update_after = "0s"
[steps]
system_id = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
[outbox]
retry_base = "100ms"
retry_cap = "2s"
drain_deadline = "5s"
[control]
listen = "127.0.0.1:{port}"
{control_extra}
[[rules]]
channel = "ch0"
kind = "limits"
min = -5.0
max = 5.0
clear_after = "20ms"
severity = "medium"
"""


class Writer:
    """Paced writer on the pty master: `rate` lines/s in bursts every millisecond (a USB UART's frame)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.k = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                time.sleep(0.0005)

    def stream(self, rate: float, seconds: float) -> int:
        start = time.perf_counter()
        sent = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return sent
            due = int(elapsed * rate) - sent
            if due > 0:
                self.write(b"".join(_line(self.k + i, 1.0) for i in range(due)))
                self.k += due
                sent += due
            time.sleep(0.001)


class AgentBench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        settings = EmulatorSection(
            runner_slots=4, warmup=0.2,
            lenses=[EmulatedLens(lens_id="lns-emulated-machine-state", lens_name="machine state")],
        )  # fmt: skip
        self.archetype = ArchetypeEmulator(settings, port=0, seed=1)
        self.atlas = AtlasEmulator(settings, port=0, seed=1)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.slave = slave
        os.set_blocking(self.master, False)
        self.link = workdir / "ttyBENCH"
        self.link.symlink_to(os.ttyname(slave))
        self.writer = Writer(self.master)
        self.port = free_port()
        self.http: aiohttp.ClientSession | None = None
        self._drain_stop = threading.Event()

    def _drain_echo(self) -> None:
        while not self._drain_stop.wait(0.05):
            with contextlib.suppress(BlockingIOError, OSError):
                while os.read(self.master, 65536):
                    pass

    async def _status(self) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.get(f"http://127.0.0.1:{self.port}/status") as resp:
            data: dict[str, Any] = await resp.json()
            return data

    async def _spawn(self, name: str, control_extra: str = "") -> tuple[asyncio.subprocess.Process, float]:
        """Spawn an agent (`control_extra`: more [control] keys); returns it and the seconds from spawn
        to its READY=1."""
        state = self.workdir / f"state-{name}"
        cfg = self.workdir / f"{name}.toml"
        urls = (self.archetype.base_url, self.atlas.base_url)
        cfg.write_text(_config(state, self.link, *urls, self.port, control_extra))
        notify_path = str(self.workdir / f"notify-{name}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        sock.setblocking(False)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path}
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115, ASYNC230 (the child keeps it)
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(cfg), "--log-format", "json",
            stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO), env=env,
        )  # fmt: skip
        log.close()
        loop = asyncio.get_running_loop()
        ready = None
        try:
            while ready is None:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 30.0)
                if b"READY=1" in data.split(b"\n"):
                    ready = time.perf_counter() - start
        finally:
            sock.close()
        return proc, ready

    async def _cpu_during(self, pid: int, seconds: float, rate: float | None) -> tuple[float, int]:
        frames0 = (await self._status())["ports"]["bench"]["frames"]
        c0, t0 = _cpu_seconds(pid), time.perf_counter()
        if rate is None:
            await asyncio.sleep(seconds)
        else:
            await asyncio.to_thread(self.writer.stream, rate, seconds)
            await asyncio.sleep(0.2)
        c1, t1 = _cpu_seconds(pid), time.perf_counter()
        frames1 = (await self._status())["ports"]["bench"]["frames"]
        return 100.0 * (c1 - c0) / (t1 - t0), frames1 - frames0

    def _openings(self) -> int:
        n = 0
        for issue in self.atlas.store.issues.values():
            n += 1
            n += sum(1 for c in issue.comments if c.content.startswith("Detected again"))
        return n

    async def _fault_to_issue(self, count: int) -> list[float]:
        """Time from writing an out-of-limits line to its issue (or repeat comment) existing in Atlas."""
        out = []
        for _ in range(count):
            before = self._openings()
            self.writer.write(_line(self.writer.k, 9.0))
            t0 = time.perf_counter()
            self.writer.k += 1
            self.writer.write(b"".join(_line(self.writer.k + i, 1.0) for i in range(5)))
            self.writer.k += 5
            while self._openings() <= before and time.perf_counter() - t0 < 10.0:  # noqa: ASYNC110
                await asyncio.sleep(0.002)  # the emulator's store has no event to wait on
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(1.5)
        return out

    async def measure(self) -> dict[str, Any]:
        await self.archetype.start()
        await self.atlas.start()
        self.http = aiohttp.ClientSession()
        drainer = threading.Thread(target=self._drain_echo, daemon=True)
        drainer.start()
        figures: dict[str, Any] = {}
        try:
            proc, ready = await self._spawn("main")
            figures["startup_to_ready_s"] = ready
            await asyncio.sleep(5.0)  # lens session up, first Atlas writes done
            idle_cpu, _ = await self._cpu_during(proc.pid, 10.0, None)
            figures["idle_cpu_percent"] = idle_cpu
            figures["idle_rss_mb"] = _rss_mb(proc.pid)
            for name, rate in (("921600_baud", 1536.0), ("3M_baud", 5000.0)):
                cpu, frames = await self._cpu_during(proc.pid, 10.0, rate)
                figures[f"cpu_percent_{name}"] = cpu
                figures[f"frames_{name}"] = frames
            figures["rss_after_load_mb"] = _rss_mb(proc.pid)
            latencies = await self._fault_to_issue(5)
            figures["fault_to_issue_ms"] = sorted(1000 * x for x in latencies)
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            figures["shutdown_exit_code"] = await proc.wait()
            figures["shutdown_s"] = time.perf_counter() - t0
            figures.update(await self._backpressure())
        finally:
            self._drain_stop.set()
            await self.http.close()
            await self.atlas.stop()
            await self.archetype.stop()
            os.close(self.master)
            os.close(self.slave)
        return figures

    async def _backpressure(self) -> dict[str, Any]:
        """Atlas refusing; BACKPRESSURE_ANOMALIES anomalies (one excursion each) at full speed; RSS and
        outbox depth once they are all queued."""
        proc, _ = await self._spawn("backpressure")
        await asyncio.sleep(3.0)
        rss_before = _rss_mb(proc.pid)
        await self.atlas.server.refuse_for(3600.0)
        t0 = time.perf_counter()
        sent = 0
        while sent < BACKPRESSURE_ANOMALIES and time.perf_counter() - t0 < 240.0:
            # One anomaly: an excursion, a clear line, and a clear line past `clear_after` (20 ms),
            # which closes it; the lines of one read share a receive time, hence the sleep between.
            self.writer.write(_line(self.writer.k, 9.0) + _line(self.writer.k + 1, 1.0))
            await asyncio.sleep(0.025)
            self.writer.write(_line(self.writer.k + 2, 1.0))
            self.writer.k += 3
            sent += 1
            await asyncio.sleep(0.002)
        opened = 0
        for _ in range(60):
            await asyncio.sleep(1.0)
            status = await self._status()
            opened = int(status["reporter"]["incidents_opened"])
            if opened >= sent:
                break
        status = await self._status()
        depth = status["outbox"]["depth"]
        result = {
            "backpressure_anomalies": opened,
            "backpressure_seconds_to_queue": time.perf_counter() - t0,
            "backpressure_outbox_pending": depth.get("pending", 0),
            "backpressure_outbox_disk_mb": status["outbox"].get("disk_bytes", 0) / 1e6,
            "backpressure_rss_mb": _rss_mb(proc.pid),
            "backpressure_rss_before_mb": rss_before,
        }
        proc.send_signal(signal.SIGKILL)  # the outbox is durable; draining it is not this figure
        await proc.wait()
        return result


def run_agent_bench() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        return asyncio.run(AgentBench(Path(tmp)).measure())


if __name__ == "__main__":
    print(json.dumps(run_agent_bench(), indent=2))
