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
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.config import EmulatedLens, EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

from .harness import REPO, free_port
from .run_all import RUN_INDEX_ENV
from .unit_env import unit_runtime_env

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


def _thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime+stime of each thread of `pid` (the main thread's id is the pid)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rss_parts_mb(pid: int) -> dict[str, float]:
    """RSS split as the kernel counts it: anonymous memory (the heap: objects, buffers) and file pages
    (the interpreter's and the libraries' code mapped in)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(":")[0]
        if name in ("RssAnon", "RssFile"):
            out[f"rss_{name[3:].lower()}_mb"] = int(line.split()[1]) / 1024
    return out


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

    def flood(self, chunk: bytes, seconds: float) -> int:
        """`chunk` (whole lines) again and again, as fast as the reader takes it; returns lines sent."""
        lines = chunk.count(b"\n")
        end = time.perf_counter() + seconds
        sent = 0
        while time.perf_counter() < end:
            self.write(chunk)
            sent += lines
        return sent

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
        self.repo = REPO  # the tree whose edge_agent is run (`python -m edge_agent` in it)
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
        # How the agent is started: `python <launcher> run --config ...` (bench/profile_agent.py puts
        # a profiling runner here).
        self.launcher: list[str] = ["-m", "edge_agent"]
        # The interpreter that runs it, and where (`python -m edge_agent` in the tree runs the tree's
        # source; elsewhere, the edge_agent installed in that interpreter's environment).
        self.python = sys.executable
        self.cwd: Path | None = None  # None: the tree
        self.last_threads: dict[str, float] = {}  # % core of the main thread and the others, last run

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

    async def _spawn(
        self, name: str, control_extra: str = "", edit: Callable[[str], str] = str
    ) -> tuple[asyncio.subprocess.Process, float]:
        """Spawn an agent (`control_extra`: more [control] keys; `edit`: other changes to its config
        text); returns it and the seconds from spawn to its READY=1."""
        state = self.workdir / f"state-{name}"
        cfg = self.workdir / f"{name}.toml"
        urls = (self.archetype.base_url, self.atlas.base_url)
        cfg.write_text(edit(_config(state, self.link, *urls, self.port, control_extra)))
        notify_path = str(self.workdir / f"notify-{name}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        sock.setblocking(False)
        env = {**os.environ, **unit_runtime_env(self.repo), "NOTIFY_SOCKET": notify_path}
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115, ASYNC230 (the child keeps it)
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            self.python, *self.launcher, "run", "--config", str(cfg), "--log-format", "json",
            stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=str(self.cwd or self.repo), env=env,
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
        c0, t0, threads0 = _cpu_seconds(pid), time.perf_counter(), _thread_cpu_seconds(pid)
        if rate is None:
            await asyncio.sleep(seconds)
        else:
            await asyncio.to_thread(self.writer.stream, rate, seconds)
            await asyncio.sleep(0.2)
        c1, t1, threads1 = _cpu_seconds(pid), time.perf_counter(), _thread_cpu_seconds(pid)
        spent = {tid: used - threads0.get(tid, 0.0) for tid, used in threads1.items()}
        main = spent.pop(pid, 0.0)
        self.last_threads = {
            "main_thread": 100.0 * main / (t1 - t0),  # the event loop: reading, decoding, the fan-out
            "other_threads": 100.0 * sum(spent.values()) / (t1 - t0),  # the recorder's writer, executors
        }
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

    async def start_peers(self) -> None:
        """What an agent here talks to: the emulators, the HTTP session /status is read with, and the
        thread that drains the pty's echo. `stop_peers` ends them, and closes the pty."""
        await self.archetype.start()
        await self.atlas.start()
        self.http = aiohttp.ClientSession()
        threading.Thread(target=self._drain_echo, daemon=True).start()

    async def stop_peers(self) -> None:
        self._drain_stop.set()
        if self.http is not None:
            await self.http.close()
        await self.atlas.stop()
        await self.archetype.stop()
        os.close(self.master)
        os.close(self.slave)

    async def measure(self) -> dict[str, Any]:
        await self.start_peers()
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
            await self.stop_peers()
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

    async def ring_against(
        self, other: Path, rounds: int, after: Path = REPO, wide: bool = False
    ) -> dict[str, Any]:
        """The 3 Mbaud figures of `_ring_full` (and with `wide`, those of `_wide_json` as `wide_*`) for
        the agent of tree `other` (an earlier commit) and of tree `after` (this one by default),
        alternating, `rounds` times each: before/after under the same load."""
        await self.start_peers()
        runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        try:
            for n in range(rounds):
                for label, tree in (("before", other), ("after", after)):
                    self.repo = tree
                    run = await self._ring_full(f"{label}-{n}")
                    if wide:
                        figures = await self._wide_json(f"{label}-wide-{n}")
                        run.update({f"wide_{key}": value for key, value in figures.items()})
                    runs[label].append(run)
        finally:
            self.repo = REPO
            await self.stop_peers()
        return runs

    async def ring_figures(self) -> dict[str, Any]:
        """The ring's whole-agent figures, each from an agent of its own: `ring_full` (8-channel CSV at
        3 Mbaud equivalent for RING_FULL_S, longer than the 30 s ring: CPU over the run, RSS with the
        ring full, what /status says the ring holds) and `wide_json` (JSON lines of WIDE_FIELDS numeric
        fields written as fast as the agent reads them for WIDE_SECONDS: RSS against the idle RSS
        plus the budget)."""
        await self.start_peers()
        try:
            # The dev venv's agent and the deployed one run one after the other, in turns (odd runs of
            # bench/run the deployed one first): whatever drifts over a run (the host's load, the page
            # cache) favours neither.
            deployed_first = int(os.environ.get(RUN_INDEX_ENV, "0")) % 2 == 1
            if deployed_first:
                deployed = await self._ring_full_deployed()
            ring_full = await self._ring_full()
            if not deployed_first:
                deployed = await self._ring_full_deployed()
            return {
                "ring_full": ring_full,
                "ring_full_deployed": deployed and {**deployed, "ran_first": deployed_first},
                "wide_json": await self._wide_json(),
                # The same with the recorder off: what the ring bounds, apart from the recorder's queue.
                "wide_json_no_recorder": await self._wide_json("wide-json-no-recorder", recorder=False),
            }
        finally:
            await self.stop_peers()

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 30.0)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _ring_full(self, name: str = "ring-full") -> dict[str, Any]:
        proc, _ = await self._spawn(name)
        await asyncio.sleep(5.0)  # lens session up, first Atlas writes done
        idle_rss = _rss_mb(proc.pid)
        cpu, frames = await self._cpu_during(proc.pid, RING_FULL_S, 5000.0)
        threads = dict(self.last_threads)
        rss = _rss_mb(proc.pid)
        parts = _rss_parts_mb(proc.pid)
        status = await self._status()
        # An agent from before the byte-bounded ring has no "evidence" in /status.
        evidence = status.get("evidence") or {"bytes": None, "sources": {}}
        pending = (status.get("recorder") or {}).get("pending") or {}
        await self._stop(proc)
        held = evidence["sources"].get("bench", {})
        return {
            "recorder_pending_peak_bytes": pending.get("peak_bytes"),
            "idle_rss_mb": idle_rss,
            "cpu_percent_3M_baud": cpu,
            "cpu_percent_3M_baud_main_thread": threads["main_thread"],
            "cpu_percent_3M_baud_other_threads": threads["other_threads"],
            "frames": frames,
            "seconds": RING_FULL_S,
            "rss_mb": rss,
            **parts,
            "ring_bytes": evidence["bytes"],
            "ring_span_s": held.get("span_s"),
            "ring_frames": held.get("frames"),
            "ring_blocks_packed": evidence.get("blocks_packed"),
        }

    async def _ring_full_deployed(self) -> dict[str, Any] | None:
        """`_ring_full` of the agent as systemd/README installs it on a bench PC: a venv of the
        system's python3 (/usr/bin/python3), `pip install` of the tree (no dev extras: no playwright,
        so no greenlet; no editable finder), run from outside the tree. None where the system has no
        python3 of 3.11 or later, or the install fails (the rows then say not measured)."""
        venv = await asyncio.to_thread(deployed_venv, self.repo, self.workdir / "deployed-venv")
        if venv is None:
            return None
        self.python, self.cwd = str(venv / "bin" / "python"), self.workdir
        try:
            return {**await self._ring_full("ring-full-deployed"), "python": _version_of(self.python)}
        finally:
            self.python, self.cwd = sys.executable, None

    async def _wide_json(self, name: str = "wide-json", recorder: bool = True) -> dict[str, Any]:
        edit = _wide_json_port if recorder else (lambda text: _wide_json_port(text) + _NO_RECORDER)
        proc, _ = await self._spawn(name, edit=edit)
        await asyncio.sleep(5.0)
        status = await self._status()
        idle_rss = _rss_mb(proc.pid)
        # The data path's budget (an agent from before it had one: its ring's)
        budget = (status.get("memory") or status["evidence"])["budget_bytes"]
        budget_mb = budget / (1024 * 1024)
        frames0 = status["ports"]["bench"]["frames"]
        t0 = time.perf_counter()
        sent = await asyncio.to_thread(self.writer.flood, _wide_lines(), WIDE_SECONDS)
        elapsed = time.perf_counter() - t0
        rss = _rss_mb(proc.pid)
        peak = _hwm_mb(proc.pid)
        status = await self._status()
        evidence = status["evidence"]
        recorder = status.get("recorder") or {}
        data_path = status.get("memory") or {}
        await self._stop(proc)
        ring = evidence["sources"].get("bench", {})
        pending = recorder.get("pending") or {}  # an agent from before the recorder's byte bound has none
        return {
            "recorder_frames_recorded": recorder.get("frames_recorded"),
            "recorder_frames_not_recorded": (recorder.get("frames_dropped") or {}).get("queue_full"),
            "recorder_pending_peak_bytes": pending.get("peak_bytes"),
            "recorder_pending_budget_bytes": pending.get("budget_bytes"),
            "fields": WIDE_FIELDS,
            "seconds": elapsed,
            "lines_written": sent,
            "lines_per_s": (status["ports"]["bench"]["frames"] - frames0) / elapsed,
            "idle_rss_mb": idle_rss,
            "budget_mb": budget_mb,
            "rss_mb": rss,
            "peak_rss_mb": peak,
            "rss_over_idle_mb": rss - idle_rss,
            "peak_over_idle_mb": peak - idle_rss,
            "ring_bytes": evidence["bytes"],
            "ring_span_s": ring.get("span_s", 0.0),
            "ring_frames": ring.get("frames", 0),
            "blocks_evicted_for_memory": evidence["blocks_evicted"]["memory"],
            "data_path_bytes": data_path.get("bytes"),
            "slices_cut_by_memory": evidence["slices_cut"]["memory"],
        }


RING_FULL_S = 35.0  # at 3 Mbaud equivalent: the bench config's 30 s ring fills, with margin
WIDE_FIELDS = 270
WIDE_SECONDS = 60.0


_NO_RECORDER = "\n[recorder]\nenabled = false\n"


def _wide_json_port(config: str) -> str:
    """The bench port as JSON lines (every numeric field a channel: ch0 .. ch269 and t), and the ring's
    default 2 min (not the 30 s of the 3 Mbaud runs): so the data path's budget, not the time bound,
    is what holds the ring (the evidence ring packs its blocks; 30 s of these lines may fit)."""
    cols = ", ".join(f'"{c}"' for c in ["t", *CHANNELS])
    config = config.replace('ring_seconds = "30s"', 'ring_seconds = "2m"')
    return config.replace(f"columns = [{cols}]", 'format = "jsonl"\nmax_line_bytes = 16384')


def _wide_lines() -> bytes:
    """A chunk of 256 lines of WIDE_FIELDS numbers (~3.5 kB a line): 4-decimal values with noise (a
    seeded generator), so they compress as sensor values do, not as a repeated pattern would."""
    rng = random.Random(270)
    lines = []
    for k in range(256):
        values = (1.0 + n * 0.01 + rng.gauss(0.0, 0.05) for n in range(WIDE_FIELDS))
        fields = ", ".join(f'"ch{n}": {value:.4f}' for n, value in enumerate(values))
        lines.append(f'{{"t": {k}, {fields}}}\n')
    return "".join(lines).encode()


SYSTEM_PYTHON = Path("/usr/bin/python3")


def deployed_venv(tree: Path, where: Path) -> Path | None:
    """A venv of the system's python3 with `tree` installed as systemd/README says (None: no such
    python3, or the install failed: said on stderr)."""
    if not SYSTEM_PYTHON.exists():
        return None
    check = "import sys; sys.exit(sys.version_info < (3, 11))"
    if subprocess.run([str(SYSTEM_PYTHON), "-c", check], check=False).returncode != 0:
        return None
    steps = [
        [str(SYSTEM_PYTHON), "-m", "venv", str(where)],
        [str(where / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(tree)],
        [str(where / "bin" / "python"), "-m", "compileall", "-q", "-o", "2", str(where / "lib")],  # -OO
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            print(f"deployed venv: {' '.join(step)} failed: {done.stderr[-2000:]}", file=sys.stderr)
            return None
    return where


def _version_of(python: str) -> str:
    done = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def _hwm_mb(pid: int) -> float:
    """The process's peak RSS (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_ring_against(other: Path, rounds: int, after: Path = REPO, wide: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-ring-") as tmp:
        return asyncio.run(AgentBench(Path(tmp)).ring_against(other, rounds, after, wide))


def run_ring_figures() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-ring-") as tmp:
        return asyncio.run(AgentBench(Path(tmp)).ring_figures())


def run_agent_bench() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        return asyncio.run(AgentBench(Path(tmp)).measure())


if __name__ == "__main__":
    print(json.dumps(run_agent_bench(), indent=2))
