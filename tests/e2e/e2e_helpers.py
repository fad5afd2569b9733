"""Shared by the whole-agent tests: a config file, a scenario file, the simulated bench on a real pty,
and bounded waits. Everything talks over real sockets and real pseudo-terminals; nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.pty_port import PtyPort
from edge_agent.bench_sim.runner import BenchRunner, OracleWriter
from edge_agent.bench_sim.scenario import load_scenario

TOKEN = "e2e-atlas-token"
SYSTEM_ID = "0b7c6a52-3f1e-4c3a-9a57-2d8f2b8e6c11"  # the emulator wants a UUID for a test run's system
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]
SAMPLE_RATE = 50.0


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
    """The agent's TOML. The lens is disabled on purpose: these tests are about the reporting path
    (rules -> reporter/steps -> outbox -> Atlas), and the emulated lens labels every window that
    differs from its baseline, which would add lens anomalies whose count depends on window timing.
    The lens path end to end is tested in tests/lens/test_e2e.py. `plots` (the PNG with the final
    evidence, seconds of a child process's CPU each) is on only where a test is about it: dozens of
    incidents drawing at once starve a loaded machine for what these tests measure."""
    return f"""
[agent]
bench = "e2e"
state_dir = "{state_dir}"

[[serial]]
name = "bench"
url = "{link}"
columns = {json.dumps(COLUMNS)}
device_time = "t_ms"
reconnect_min = "50ms"
reconnect_max = "200ms"

[lens]
enabled = false

[atlas]
url = "{atlas_url}"
token = "{TOKEN}"
connect_timeout = "2s"
read_timeout = "5s"
upload_timeout = "10s"

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

[outbox]
retry_base = "100ms"
retry_cap = "{retry_cap}"
drain_deadline = "15s"

[incidents]
# The faults these tests script are 0.5 s or more apart: each is its own physical event (own incident).
join_window = "200ms"
update_after = "200ms"

[control]
listen = "127.0.0.1:{control_port}"
{extra}
"""


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
    """The simulated bench in this process: a scenario file played on a real pty behind `link`."""

    def __init__(self, scenario: Path, link: Path, oracle: Path, rate: float = SAMPLE_RATE) -> None:
        sc = load_scenario(str(scenario))
        model = BenchModel(0)
        player = ScenarioPlayer(sc, model, rate, 0)
        self.oracle_path = oracle
        self._oracle = OracleWriter(oracle)
        self.runner = BenchRunner(
            Feed(player, model.header()), PtyPort(link), oracle=self._oracle, run_info={"scenario": sc.name}
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
        self.runner.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
        self._oracle.close()

    def records(self, kind: str) -> list[dict[str, Any]]:
        lines = self.oracle_path.read_text(encoding="utf-8").splitlines()
        return [r for r in map(json.loads, lines) if r.get("record") == kind]


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
