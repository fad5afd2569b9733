"""Runs the soak: emulators in this process (so faults are flipped directly and state is read
directly), the agent and the simulated bench as subprocesses, the harness schedule on a timer, resource
samples of the agent, then a fault-free settling phase, SIGTERM, and the final state for the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.config import EmulatedLens, EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

from .agent_config import agent_config
from .plan import Action, SoakPlan

REPO = Path(__file__).resolve().parents[2]
SAMPLE_EVERY = 2.0
STATUS_EVERY = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Incarnation:
    """One agent process: from spawn to its death (SIGKILL) or exit."""

    index: int
    pid: int
    spawned_mono: float
    up_mono: float | None = None  # its serial port open (the control API says so)
    ended_mono: float | None = None
    how: str = ""  # "killed" | "exited <rc>"
    last_status: dict[str, Any] | None = None


@dataclass
class SoakRun:
    """Everything the checks need, gathered while running."""

    workdir: Path
    plan: SoakPlan
    incarnations: list[Incarnation] = field(default_factory=list)
    dead: list[tuple[float, float]] = field(default_factory=list)  # (from, until) mono: no agent reading
    samples: list[dict[str, Any]] = field(default_factory=list)
    actions_done: list[dict[str, Any]] = field(default_factory=list)
    sim_start_mono: float = 0.0
    chaos_end_mono: float = 0.0
    settled: bool = False
    settle_seconds: float = 0.0
    final_status: dict[str, Any] | None = None
    shutdown_seconds: float | None = None
    final_exit: int | None = None
    atlas_state: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, bytes] = field(default_factory=dict)
    comment_attachments: dict[str, list[str]] = field(default_factory=dict)
    archetype_state: dict[str, Any] = field(default_factory=dict)
    live_lens_sessions: list[str] = field(default_factory=list)
    sim_exit: int | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def oracle_path(self) -> Path:
        return self.workdir / "oracle.jsonl"

    def log_paths(self) -> list[Path]:
        return sorted(self.workdir.glob("agent-*.log"))


def _proc_sample(pid: int) -> dict[str, Any] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rss_kb = 0
    threads = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return {"rss_kb": rss_kb, "fds": fds, "threads": threads}


class Harness:
    def __init__(self, plan: SoakPlan, workdir: Path, seed: int, verbose: bool = True) -> None:
        self.plan = plan
        self.run = SoakRun(workdir, plan)
        self.seed = seed
        self.verbose = verbose
        self.link = workdir / "ttyBENCH0"
        self.state_dir = workdir / "state"
        self.control_port = free_port()
        settings = EmulatorSection(
            runner_slots=8,
            warmup=0.5,
            lenses=[EmulatedLens(lens_id="lns-emulated-machine-state", lens_name="machine state")],
        )
        self.archetype = ArchetypeEmulator(settings, port=0, seed=seed)
        self.atlas = AtlasEmulator(settings, port=0, seed=seed)
        self.agent: asyncio.subprocess.Process | None = None
        self.sim: asyncio.subprocess.Process | None = None
        self.http: aiohttp.ClientSession | None = None
        self._current: Incarnation | None = None
        self._t0 = time.monotonic()

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"[soak {time.monotonic() - self._t0:7.1f}s] {text}", flush=True)

    # -- processes ----------------------------------------------------------------------------------

    async def _spawn_agent(self) -> None:
        index = len(self.run.incarnations)
        out = open(self.run.workdir / f"agent-{index:03d}.log", "wb")  # noqa: SIM115, ASYNC230 (the child keeps it)
        self.agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(self.run.workdir / "agent.toml"),
            "--log-format", "json",
            stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO),
        )  # fmt: skip
        out.close()
        self._current = Incarnation(index, self.agent.pid, time.monotonic())
        self.run.incarnations.append(self._current)

    async def _status(self, limit: float = 2.0) -> dict[str, Any] | None:
        assert self.http is not None
        try:
            async with self.http.get(
                f"http://127.0.0.1:{self.control_port}/status", timeout=aiohttp.ClientTimeout(total=limit)
            ) as resp:
                if resp.status != 200:
                    return None
                data: dict[str, Any] = await resp.json()
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def _wait_up(self, limit: float = 30.0) -> float | None:
        """Until the agent reads its port (the end of its dead time); None if it never does."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            status = await self._status(1.0)
            if status is not None and all(p.get("up") for p in status.get("ports", {}).values()):
                return time.monotonic()
            if self.agent is not None and self.agent.returncode is not None:
                return None
            await asyncio.sleep(0.1)
        return None

    async def _kill_and_restart(self, delay: float) -> None:
        assert self.agent is not None and self._current is not None
        died = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.agent.send_signal(signal.SIGKILL)
        await self.agent.wait()
        self._current.ended_mono = died
        self._current.how = "killed"
        await asyncio.sleep(delay)
        await self._spawn_agent()
        up = await self._wait_up()
        assert self._current is not None
        self._current.up_mono = up
        self.run.dead.append((died, up if up is not None else time.monotonic()))
        self.say(f"SIGKILL + restart: dead {((up or time.monotonic()) - died):.1f} s (pid {self.agent.pid})")
        if up is None:
            self.run.errors.append(f"agent incarnation {self._current.index} never came up")

    async def _spawn_sim(self) -> None:
        scenario = self.run.workdir / "scenario.toml"
        self.plan.write_scenario(scenario)
        out = open(self.run.workdir / "sim.log", "wb")  # noqa: SIM115, ASYNC230 (the child keeps it)
        self.sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "simulate", "--scenario", str(scenario),
            "--duration", str(self.plan.total), "--link", str(self.link),
            "--oracle", str(self.run.oracle_path), "--seed", str(self.seed), "--log-format", "json",
            stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO),
        )  # fmt: skip
        out.close()

    # -- the harness's faults -----------------------------------------------------------------------

    def _live_sessions(self) -> list[str]:
        return [sid for sid, s in self.archetype.service.sessions.items() if s.live]

    async def _do(self, action: Action) -> None:
        done: dict[str, Any] = {**action.as_dict(), "mono": time.monotonic()}
        kind = action.kind
        if kind == "kill":
            await self._kill_and_restart(action.duration)
        elif kind == "unplug":
            assert self.sim is not None
            self.sim.send_signal(signal.SIGUSR1)
        elif kind == "atlas_outage":
            await self.atlas.server.refuse_for(action.duration)
        elif kind == "atlas_errors":
            self.atlas.faults.update({"error_rate": 0.35, "rate_limit_rate": 0.35, "retry_after": 1.0})
            self._later(action.duration, self.atlas.faults.reset)
        elif kind == "atlas_slow":
            self.atlas.faults.update({"latency": 2.0, "upload_bytes_per_sec": 4000.0})
            self._later(action.duration, self.atlas.faults.reset)
        elif kind == "ws_drop":
            done["dropped"] = self.archetype.drop_websockets()
        elif kind in ("session_destroy", "session_expire"):
            live = self._live_sessions()
            for sid in live:
                if kind == "session_destroy":
                    await self.archetype.destroy_session_server_side(sid)
                else:
                    await self.archetype.expire_session(sid)
            done["sessions"] = len(live)
        self.run.actions_done.append(done)
        if kind != "kill":
            effect = {k: done[k] for k in ("dropped", "sessions") if k in done}
            self.say(f"{kind} {action.duration:g}s {effect}")

    def _later(self, seconds: float, fn: Any) -> None:
        asyncio.get_running_loop().call_later(seconds, fn)

    # -- sampling -----------------------------------------------------------------------------------

    async def _sampler(self) -> None:
        last_status = 0.0
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            inc = self._current
            if inc is None or inc.ended_mono is not None or self.agent is None:
                continue
            now = time.monotonic()
            sample = _proc_sample(inc.pid)
            if sample is None:
                continue
            sample.update(mono=now, incarnation=inc.index, age=now - inc.spawned_mono)
            if now - last_status >= STATUS_EVERY:
                status = await self._status()
                if status is not None and self._current is inc:
                    inc.last_status = status
                    sample["tasks"] = status.get("asyncio_tasks")
                    last_status = now
            self.run.samples.append(sample)

    # -- the run ------------------------------------------------------------------------------------

    async def execute(self) -> SoakRun:
        run = self.run
        run.workdir.mkdir(parents=True, exist_ok=True)
        await self.archetype.start()
        await self.atlas.start()
        self.http = aiohttp.ClientSession()
        sampler: asyncio.Task[None] | None = None
        try:
            (run.workdir / "agent.toml").write_text(
                agent_config(
                    state_dir=self.state_dir,
                    link=self.link,
                    archetype_url=self.archetype.base_url,
                    atlas_url=self.atlas.base_url,
                    control_port=self.control_port,
                )
            )
            (run.workdir / "plan.json").write_text(
                json.dumps(
                    {"counts": self.plan.counts(), "actions": [a.as_dict() for a in self.plan.actions]}
                )
            )
            await self._spawn_agent()
            await asyncio.sleep(1.0)  # the agent retries the link until the simulator makes it
            await self._spawn_sim()
            run.sim_start_mono = time.monotonic()
            up = await self._wait_up()
            assert self._current is not None
            self._current.up_mono = up
            if up is None:
                run.errors.append("the agent never came up")
                return run
            self.say(f"agent up, simulator running; chaos phase {self.plan.chaos:g} s")
            sampler = asyncio.create_task(self._sampler())
            for action in self.plan.actions:
                wait = run.sim_start_mono + action.t - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._do(action)
            wait = run.sim_start_mono + self.plan.chaos - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            run.chaos_end_mono = time.monotonic()
            await self._settle()
            sampler.cancel()
            await self._shutdown()
        finally:
            if sampler is not None:
                sampler.cancel()
            await self._cleanup()
        return run

    async def _settle(self) -> None:
        """Faults off; wait until nothing is open or pending (at least 15 s, at most settle_max)."""
        run = self.run
        self.atlas.faults.reset()
        self.archetype.faults.reset()
        self.say("settling: faults off, waiting for the outbox to empty and anomalies to close")
        start = time.monotonic()
        limit = self.plan.total - self.plan.chaos - 30.0
        quiet_since: float | None = None
        while time.monotonic() - start < limit:
            await asyncio.sleep(1.0)
            status = await self._status()
            if status is None:
                quiet_since = None
                continue
            depth = status.get("outbox", {}).get("depth", {})
            live = sum(v for k, v in depth.items() if k not in ("done", "failed", "shed"))
            reporter = status.get("reporter") or {}
            quiet = live == 0 and not status.get("open_anomalies") and not reporter.get("pending_evidence")
            if quiet and quiet_since is None:
                quiet_since = time.monotonic()
            elif not quiet:
                quiet_since = None
            if (
                quiet_since is not None
                and time.monotonic() - quiet_since >= 3.0
                and time.monotonic() - start >= 15
            ):
                run.settled = True
                break
        run.settle_seconds = time.monotonic() - start
        run.final_status = await self._status()
        if self._current is not None and run.final_status is not None:
            self._current.last_status = run.final_status
        self.say(f"settled={run.settled} after {run.settle_seconds:.1f} s")

    async def _shutdown(self) -> None:
        run = self.run
        assert self.agent is not None and self._current is not None
        start = time.monotonic()
        self.agent.send_signal(signal.SIGTERM)
        try:
            rc = await asyncio.wait_for(self.agent.wait(), 90.0)
        except TimeoutError:
            run.errors.append("the agent did not exit within 90 s of SIGTERM")
            self.agent.send_signal(signal.SIGKILL)
            rc = await self.agent.wait()
        run.shutdown_seconds = time.monotonic() - start
        run.final_exit = rc
        self._current.ended_mono = time.monotonic()
        self._current.how = f"exited {rc}"
        self.say(f"agent stopped (exit {rc}) in {run.shutdown_seconds:.2f} s")
        await asyncio.sleep(0.5)
        run.live_lens_sessions = self._live_sessions()
        run.archetype_state = self.archetype.state()
        run.atlas_state = self.atlas.state()
        self.atlas.dump_state(run.workdir / "atlas-state.json")
        for issue in self.atlas.store.issues.values():
            for comment in issue.comments:
                run.comment_attachments[comment.uuid] = list(comment.attachment_ids)
        for attachment_id, attachment in self.atlas.store.attachments.items():
            if attachment.name.endswith(".json"):
                run.attachments[attachment_id] = attachment.data

    async def _cleanup(self) -> None:
        for proc in (self.agent, self.sim):
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 10.0)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        if self.sim is not None:
            self.run.sim_exit = self.sim.returncode
        if self.http is not None:
            await self.http.close()
        await self.atlas.stop()
        await self.archetype.stop()
