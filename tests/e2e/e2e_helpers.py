"""Shared by the whole-agent tests: a config file, a scenario file, the simulated bench on a real pty,
and bounded waits. Everything talks over real sockets and real pseudo-terminals; nothing is mocked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from soak_lib.unit_env import unit_runtime_env

from edge_agent.agent import Agent
from edge_agent.bench_sim import plant
from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.pty_port import PtyPort
from edge_agent.bench_sim.replay import ReplayPlayer
from edge_agent.bench_sim.runner import BenchRunner, OracleWriter
from edge_agent.bench_sim.scenario import load_scenario
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator

TOKEN = "e2e-atlas-token"
SYSTEM_ID = "0b7c6a52-3f1e-4c3a-9a57-2d8f2b8e6c11"  # the emulator wants a UUID for a test run's system
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]
SAMPLE_RATE = 50.0
# (channel, start s, magnitude, severity) for `fault_bench`: one fault on each rule's channel of
# `agent_config_toml`, 0.8 s apart, each its own incident.
ONE_FAULT_PER_RULE = [
    ("supply_v", 0.8, 1.8, "high"),
    ("vibration_g", 1.6, 1.0, "medium"),
    ("current_a", 2.4, 2.0, "medium"),
]


def agent_toml(
    *,
    bench: str,
    state_dir: Path,
    source: str,
    link: Path,
    columns: list[str],
    atlas_url: str,
    lens: str = "enabled = false",
    atlas: str = "",
    retry_cap: str = "1s",
    drain_deadline: str,
    sections: str = "",
    control_port: int = 0,
) -> str:
    """What every whole-agent test's TOML holds: the bench, one serial source `source` on the pty
    `link` (device time in `t_ms`), the lens (`lens`: that section's lines), Atlas (the emulator's
    token, `atlas`: more lines of that section), fast outbox retries, the control API on loopback, and
    between them `sections` (the test's rules, evidence, steps...). The control section comes last:
    lines appended to the result belong to it."""
    return f"""
[agent]
bench = "{bench}"
state_dir = "{state_dir}"

[[serial]]
name = "{source}"
url = "{link}"
columns = {json.dumps(columns)}
device_time = "t_ms"
reconnect_min = "50ms"
reconnect_max = "200ms"

[lens]
{lens}

[atlas]
url = "{atlas_url}"
token = "{TOKEN}"
{atlas}

[outbox]
retry_base = "100ms"
retry_cap = "{retry_cap}"
drain_deadline = "{drain_deadline}"
{sections}
[control]
listen = "127.0.0.1:{control_port}"
"""


# One channel `v` on port "bench" (columns t_ms, v) with a limits rule at 10, a 1 s join window and 1 s of
# evidence either side: the agents of the tests that stop an agent mid-incident or read its step notes.
V_OVER_10 = """
[incidents]
join_window = "1s"

[[rules]]
channel = "v"
kind = "limits"
max = 10.0
hold_samples = 2
clear_after = "200ms"
"""


def v_agent_config(
    tmp_path: Path,
    link: Path,
    atlas_url: str,
    *,
    bench: str,
    drain_deadline: str,
    plots: bool,
    sections: str = "",
) -> Path:
    """tmp_path/agent.toml: the evidence section (`plots` drawn or not), `sections`, then the rule on `v`."""
    evidence = f'[evidence]\nring_seconds = "60s"\npre = "1s"\npost = "1s"\nplots = {str(plots).lower()}\n'
    sections = evidence + sections
    path = tmp_path / "agent.toml"
    text = agent_toml(
        bench=bench, state_dir=tmp_path / "state", source="bench", link=link, columns=["t_ms", "v"],
        atlas_url=atlas_url, drain_deadline=drain_deadline, sections=sections + V_OVER_10,
    )  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


def wide_jsonl_toml(*, bench: str, state_dir: Path, sections: str = "") -> str:
    """An agent whose one source, `bench`, reads JSON lines of up to 1 MiB from `loop://` (the test
    feeds its fan-out itself), with neither the lens nor Atlas; `sections`: the test's own tables."""
    return f"""
[agent]
bench = "{bench}"
state_dir = "{state_dir}"
[[serial]]
name = "bench"
url = "loop://"
format = "jsonl"
max_line_bytes = 1048576
[lens]
enabled = false
[atlas]
enabled = false
{sections}"""


def agent_config_toml(
    state_dir: Path,
    link: Path,
    atlas_url: str,
    *,
    system_id: str = SYSTEM_ID,
    hold: str = "0s",
    control_port: int = 0,
    retry_cap: str = "1s",
    plots: bool = False,
    extra: str = "",
) -> str:
    """The agent's TOML on the simulated bench (`Sim`). The lens is disabled on purpose: these tests
    are about the reporting path (rules -> reporter/steps -> outbox -> Atlas), and the emulated lens
    labels every window that differs from its baseline, which would add lens anomalies whose count
    depends on window timing. The lens path end to end is tested in tests/lens/test_e2e.py. `plots`
    (the PNG with the final evidence, seconds of a child process's CPU each) is on only where a test
    is about it: dozens of incidents drawing at once starve a loaded machine for what these tests
    measure. `extra`: lines of the control section, then any further sections."""
    sections = f"""
[[rules]]
channel = "supply_v"
kind = "limits"
min = 11.4
max = 12.6
hold = "{hold}"
clear_after = "300ms"
severity = "high"

[[rules]]
channel = "vibration_g"
kind = "limits"
max = 0.5
hold = "{hold}"
clear_after = "300ms"
severity = "medium"

[[rules]]
channel = "current_a"
kind = "limits"
max = 2.8
hold = "{hold}"
clear_after = "300ms"
severity = "medium"

[evidence]
ring_seconds = 30
pre = "1s"
post = "300ms"
plots = {"true" if plots else "false"}

[steps]
system_id = "{system_id}"

[incidents]
# The faults these tests script are 0.5 s or more apart: each is its own physical event (own incident).
join_window = "200ms"
update_after = "200ms"
"""
    atlas = 'connect_timeout = "2s"\nread_timeout = "5s"\nupload_timeout = "10s"'
    toml = agent_toml(
        bench="e2e", state_dir=state_dir, source="bench", link=link, columns=COLUMNS, atlas_url=atlas_url,
        atlas=atlas, retry_cap=retry_cap, drain_deadline="15s", sections=sections, control_port=control_port,
    )  # fmt: skip
    return toml + extra


def limit_rules_toml(limits: Iterable[tuple[str, float | None, float | None, str]]) -> str:
    """One limits rule per (channel, min, max, severity), held 3 samples, cleared after 5 s quiet: what
    a test engineer sets on the simulated pump skid (edge_agent/bench_sim/plant.py)."""
    return "".join(
        f"""
[[rules]]
channel = "{channel}"
kind = "limits"
{f"min = {low}" if low is not None else ""}
{f"max = {high}" if high is not None else ""}
hold_samples = 3
clear_after = "5s"
severity = "{severity}"
"""
        for channel, low, high, severity in limits
    )


def skid_config(
    path: Path,
    *,
    bench: str,
    state_dir: Path,
    link: Path,
    atlas_url: str,
    sections: str,
    lens: str = "enabled = false",
) -> Path:
    """The agent's TOML at `path` for a recording of the pump skid (`plant.PUMP_CHANNELS`) replayed on
    the pty `link` (`replayed`); `sections`: the test's rules, evidence, steps."""
    columns = ["t_ms", *(c.name for c in plant.PUMP_CHANNELS)]
    text = agent_toml(
        bench=bench, state_dir=state_dir, source="skid", link=link, columns=columns, atlas_url=atlas_url,
        lens=lens, drain_deadline="20s", sections=sections,
    )  # fmt: skip
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def replayed(
    config: Path, recording: Path, link: Path, *, speed: float, play_within: float
) -> AsyncIterator[Agent]:
    """The whole agent started on `config`, and the CSV `recording` replayed through the pty `link` at
    `speed` device seconds per real second; yields the agent once every row was written. Then the agent
    stops (its outbox draining up to 20 s) and the player with it; the outbox must have drained."""
    agent = Agent(load_config(config, environ={}))
    replay = ReplayPlayer(lambda: recording.read_bytes().splitlines(keepends=True), speed=1.0)
    runner = BenchRunner(Feed(replay, replay.header), PtyPort(link), speed=speed)
    try:
        await agent.start()
        played = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), 10)
        await asyncio.wait_for(played, play_within)
        yield agent
    finally:
        drained = await agent.stop(time.monotonic() + 20)
        runner.stop()
    assert drained, "the outbox did not drain"


def fault_toml(channel: str, start: float, duration: float, magnitude: float, severity: str, fid: str) -> str:
    return f"""
[[faults]]
id = "{fid}"
kind = "step"
channel = "{channel}"
start = "{start:.3f}s"
duration = "{duration:.3f}s"
magnitude = {magnitude}
severity = "{severity}"
"""


def step_toml(name: str, start: float, duration: float) -> str:
    return f"""
[[steps]]
name = "{name}"
start = "{start:.3f}s"
duration = "{duration:.3f}s"
"""


class Sim:
    """The simulated bench in this process: a scenario file played on a real pty behind `link` (`port`:
    the pty's writer, default a plain `PtyPort`)."""

    def __init__(
        self,
        scenario: Path,
        link: Path,
        oracle: Path,
        rate: float = SAMPLE_RATE,
        *,
        port: PtyPort | None = None,
    ) -> None:
        sc = load_scenario(str(scenario))
        model = BenchModel(0)
        player = ScenarioPlayer(sc, model, rate, 0)
        self.oracle_path = oracle
        self._oracle = OracleWriter(oracle)
        self.port = port or PtyPort(link)
        self.runner = BenchRunner(
            Feed(player, model.header()), self.port, oracle=self._oracle, run_info={"scenario": sc.name}
        )
        self.task: asyncio.Task[dict[str, Any]] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())
        await asyncio.wait_for(self.runner.ready.wait(), 5)

    async def wait(self, within: float) -> dict[str, Any]:
        assert self.task is not None
        try:
            return await asyncio.wait_for(self.task, within)
        finally:
            self._oracle.close()

    async def stop(self) -> None:
        """Stop the bench; the run's own error, if it failed, is raised here. A run `wait` gave up on
        (cancelled) has nothing more to say: that timeout was raised already."""
        self.runner.stop()
        if self.task is not None and not self.task.cancelled():
            await asyncio.wait_for(self.task, 5)
        self._oracle.close()

    def records(self, kind: str) -> list[dict[str, Any]]:
        lines = self.oracle_path.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r.get("record") == kind]

    async def play_steps(
        self,
        agent: Agent,
        steps: int,
        *,
        play_within: float,
        steps_within: float,
        what: str,
        drain_within: float,
    ) -> bool:
        """Start `agent`, play the scenario once its pty is open, wait until its `steps` steps ended in
        the step tracker, and stop it (the outbox draining up to `drain_within` s): whether it drained.
        On a failure the agent is stopped at once and the bench with it."""
        await agent.start()
        stopped = False
        try:
            await self.start()

            await wait_port_open(agent, 5)
            await self.wait(play_within)

            async def steps_done() -> bool:
                return len(agent.steps.status()["completed"]) == steps

            await wait_until(steps_done, steps_within, what)
            stopped = True
            return await agent.stop(time.monotonic() + drain_within)
        finally:
            if not stopped:
                await agent.stop(time.monotonic() + 1)
            if self.task is not None and not self.task.done():
                await self.stop()


def fault_bench(
    tmp_path: Path,
    atlas_url: str,
    name: str,
    duration: str,
    faults: Sequence[tuple[str, float, float, str]],
    *,
    environ: dict[str, str] | None = None,
    **config: Any,
) -> tuple[Agent, Sim, Path]:
    """The whole agent (`agent_config_toml(**config)`) and the simulated bench playing, for `duration`,
    one 0.3 s fault per (channel, start s, magnitude, severity), ids f1, f2, ...: (agent, bench, the
    agent's state directory). Neither is started."""
    link = tmp_path / "ttyBENCH0"
    state_dir = tmp_path / "state"
    config_path = tmp_path / "agent.toml"
    config_path.write_text(agent_config_toml(state_dir, link, atlas_url, **config), encoding="utf-8")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        f'name = "{name}"\nduration = "{duration}"\n'
        + "".join(fault_toml(c, s, 0.3, m, sev, f"f{i}") for i, (c, s, m, sev) in enumerate(faults, 1)),
        encoding="utf-8",
    )
    agent = Agent(load_config(config_path, environ=environ or {}))
    return agent, Sim(scenario, link, tmp_path / "oracle.jsonl"), state_dir


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.05
) -> None:
    """Poll `predicate` until true; bounded in time (and so in count)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {within:g} s waiting for {what}")


async def wait_port_open(agent: Agent, within: float, port: str = "bench") -> None:
    """Until the in-process `agent` has its serial port `port` open (bounded)."""

    async def port_up() -> bool:
        return agent.readers[port].is_up

    await wait_until(port_up, within, f"the agent to open its port {port!r}")


async def get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        resp.raise_for_status()
        return await resp.json()


def outbox_jobs(state_dir: Path) -> list[dict[str, Any]]:
    """Every job in the agent's outbox database, read-only (the agent's own durable record)."""
    db = next(iter(sorted(state_dir.rglob("outbox.sqlite3"))), None)
    assert db is not None, f"no outbox database under {state_dir}"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT id, kind, grp, state, payload, result, failure FROM jobs").fetchall()
    finally:
        con.close()
    out = []
    for r in rows:
        out.append(
            {
                "id": r["id"],
                "kind": r["kind"],
                "group": r["grp"],
                "state": r["state"],
                "payload": json.loads(r["payload"]),
                "result": json.loads(r["result"]) if r["result"] else None,
                "failure": json.loads(r["failure"]) if r["failure"] else None,
            }
        )
    return out


MARKER_PREFIX = "edge-agent:"


def marker_lines(content: str) -> list[str]:
    return [line.strip() for line in content.splitlines() if line.strip().startswith(MARKER_PREFIX)]


def detected_incidents(state_dir: Path) -> dict[str, list[str]]:
    """Incident ids the agent durably took on, in the order it did, with the Atlas names of their
    snapshot files: one `atlas.issue` job per opened incident (the reporter enqueues it in one batch
    with the snapshot upload, right after the open record; a restart re-enqueues it for an open record
    that has none). This is the agent's own record, independent of what reached Atlas."""
    jobs = sorted(outbox_jobs(state_dir), key=lambda j: j["id"])
    snapshots: dict[str, list[str]] = {}
    for job in jobs:
        names = job["payload"].get("names") or []
        if job["kind"] == "atlas.upload" and names and str(names[0]).endswith("_open.csv"):
            snapshots.setdefault(str(job["group"]).removeprefix("incident:"), sorted(names))
    found: dict[str, list[str]] = {}
    for job in jobs:
        if job["kind"] == "atlas.issue":
            incident_id = str(job["payload"]["incident_id"])
            found.setdefault(incident_id, snapshots.get(incident_id, []))
    return found


def account(state: dict[str, Any], incidents: dict[str, list[str]]) -> dict[str, Any]:
    """Check, on the Atlas emulator's state, that each incident was reported exactly once, with its
    evidence, and that nothing is duplicated. An incident's report is its own issue (with the snapshot
    CSV + JSON attached from the run's session), or, when an earlier incident of the same fault still
    had an open issue, exactly one "detected again" comment on that issue carrying the
    `edge-agent:<id>:open` marker and the same two attachments. Either way exactly one issue carries
    the incident's tag `edge-agent:<id>` (a repeat adds its tag to the issue it joins).

    Returns {incident id: (issue uuid, "issue" | "repeat", comment created_at or issue created_at)}."""
    sessions = {s["session_id"]: s for s in state["sessions"]}
    session_attachments = {a["attachment_id"]: a for s in sessions.values() for a in s.get("attachments", [])}
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for issue in state["issues"]:
        for tag in issue["tags"]:
            if tag.startswith(MARKER_PREFIX):
                by_tag.setdefault(tag[len(MARKER_PREFIX) :], []).append(issue)
    # Every marker (one per comment the agent means to post) appears at most once in the tenant.
    seen: dict[str, int] = {}
    for issue in state["issues"]:
        for comment in issue["comments"]:
            for marker in marker_lines(comment["content"]):
                seen[marker] = seen.get(marker, 0) + 1
    duplicates = {m: n for m, n in seen.items() if n > 1}
    assert not duplicates, f"comments posted more than once: {duplicates}"
    duplicate_issues = {a: len(v) for a, v in by_tag.items() if len(v) > 1}
    assert not duplicate_issues, f"issues tagged with an incident more than once: {duplicate_issues}"
    unknown = set(by_tag) - set(incidents)
    assert not unknown, f"issues for incidents the agent has no record of: {sorted(unknown)}"

    reports: dict[str, Any] = {}
    for incident_id, snapshot in incidents.items():
        tagged = by_tag.get(incident_id, [])
        assert len(tagged) == 1, f"incident {incident_id}: tagged on {len(tagged)} issues"
        (issue,) = tagged
        assert len(issue["session_ids"]) == 1 and issue["session_ids"][0] in sessions, issue["title"]
        names = sorted(session_attachments[a]["attachment_name"] for a in issue["attachment_ids"])
        if names == snapshot:
            reports[incident_id] = (issue["uuid"], "issue", issue["created_at"])
            continue
        opening = f"{MARKER_PREFIX}{incident_id}:open"
        carriers = [c for c in issue["comments"] if opening in marker_lines(c["content"])]
        assert len(carriers) == 1, f"incident {incident_id}: not its issue and {len(carriers)} openings"
        (comment,) = carriers
        assert comment["content"].startswith("Detected again"), (incident_id, comment["content"][:80])
        names = sorted(a["attachment_name"] for a in comment["attachments"])
        assert names == snapshot, (incident_id, names, snapshot)
        reports[incident_id] = (issue["uuid"], "repeat", comment["created_at"])
    return reports


def member_starts(atlas: AtlasEmulator, state: dict[str, Any]) -> dict[str, list[float]]:
    """{channel: [start wall time of every incident member on it]}, from every incident summary JSON
    uploaded to the run's sessions (an anomaly appears in several: each start is kept once)."""
    starts: dict[str, set[float]] = {}
    for session in state["sessions"]:
        for attachment in session["attachments"]:
            if not str(attachment["attachment_name"]).endswith(".json"):
                continue
            with contextlib.suppress(ValueError, KeyError):
                document = json.loads(atlas.attachment_bytes(attachment["attachment_id"]))
                for member in document["incident"]["members"]:
                    starts.setdefault(str(member["channel"]), set()).add(float(member["started_wall"]))
    return {channel: sorted(times) for channel, times in starts.items()}


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def spawn_agent(config: Path, log: Path) -> asyncio.subprocess.Process:
    """`edge-agent run --config config` in a process of its own, with the systemd unit's process settings
    (-OO, glibc's malloc), its output appended to `log`."""
    env = {**os.environ, **unit_runtime_env(Path(__file__).parents[2])}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--log-format", "json",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env,
        )  # fmt: skip


async def port_up(http: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process) -> float | None:
    """Wall time at which this agent's serial port is seen up (None if it died first); bounded."""
    for _ in range(400):
        if proc.returncode is not None:
            return None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            async with http.get(url + "/status", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                if resp.status == 200 and (await resp.json())["ports"]["bench"]["up"]:
                    return time.time()
        await asyncio.sleep(0.05)
    return None
