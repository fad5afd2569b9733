"""`edge-agent demo`: the whole product offline, in about a minute, with no credentials.

Starts the Archetype lens and Atlas emulators on free loopback ports and the simulated bench on a
pseudo-terminal, writes an ordinary agent config for them (kept in the work directory, so the same
run can be repeated with `edge-agent run --config`), runs the real agent against them while the
bench plays a scripted test sequence with faults, shows live progress, and ends with what Atlas now
holds: issues with their attachments and comments, and the step outcomes.

The work directory (config, state, the bench's oracle) is kept afterwards, a temporary one included,
and the summary says where. With `--keep-running` the agent, its live page and the emulators stay up
after the scripted sequence (the bench goes on sending normal data) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.bench_sim.feed import Feed
from edge_agent.bench_sim.model import BenchModel
from edge_agent.bench_sim.player import ScenarioPlayer
from edge_agent.bench_sim.pty_port import PtyPort
from edge_agent.bench_sim.runner import BenchRunner, OracleWriter
from edge_agent.bench_sim.scenario import Scenario, load_scenario
from edge_agent.config import EmulatorSection, load_config
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.logs import get_logger

log = get_logger(__name__)

DEMO_SYSTEM_ID = "5a1e0000-0000-4000-8000-00000000de70"
RATE = 50.0  # lines/s: 50-sample windows make one lens window a second, the lens's pace
COLUMNS = ["t_ms", "supply_v", "current_a", "temp_c", "vibration_g", "pressure_kpa"]
ATTACH_TIMEOUT = 10.0
# With --keep-running the bench goes on with normal data after the scripted sequence, for this long.
KEEP_BENCH_FOR = 7 * 24 * 3600.0
SETTLE_TIMEOUT = 40.0  # after the sequence: anomalies and incidents closed, the outbox delivered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of bench data (default 60)")
    parser.add_argument("--scenario", default="demo", help="bench scenario: demo, clean, soak or a TOML file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir", metavar="DIR", help="keep config, state and evidence here (default: a temp dir)"
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the agent, its live page and the emulators up afterwards (Ctrl-C ends)",
    )
    parser.add_argument("--summary-json", metavar="PATH", help="also write the final summary as JSON here")
    parser.set_defaults(log_level="warning")


def demo_config(workdir: Path, archetype: ArchetypeEmulator, atlas: AtlasEmulator) -> str:
    link = workdir / "ttyBENCH0"
    return f"""# Written by `edge-agent demo`: the agent config for the built-in emulators and the bench.
[agent]
bench = "demo-bench"
state_dir = "{workdir / "state"}"

[[serial]]
name = "bench"
url = "{link}"
columns = {json.dumps(COLUMNS)}
device_time = "t_ms"

[lens]
api_url = "{archetype.base_url}"
api_key = "{archetype.api_key}"
lens_id = "{archetype.settings.lenses[0].lens_id}"
channels = ["supply_v", "temp_c", "vibration_g"]
window_size = 50
step_size = 50
status_poll_interval = "200ms"
anomaly_labels = ["{archetype.settings.anomaly_label}"]
anomaly_severity = "medium"

[atlas]
url = "{atlas.base_url}"
token = "{atlas.token}"
session_title = "{{bench}} demo run {{started:%Y-%m-%d %H:%M:%S}}"

[[rules]]
channel = "supply_v"
kind = "limits"
min = 11.4
max = 12.6
hold = "200ms"
severity = "high"

[[rules]]
channel = "temp_c"
kind = "stuck"
stuck_for = "3s"
severity = "low"

[[rules]]
channel = "vibration_g"
kind = "limits"
max = 0.5
severity = "medium"

[[rules]]
channel = "*"
kind = "dropout"
dropout_after = "2s"
severity = "medium"

[evidence]
pre = "5s"
post = "2s"

[incidents]
# The demo's scripted faults are independent and a few seconds apart, so a short join window keeps them
# apart; the lens label during the over-voltage still joins it (their spans overlap). A real bench keeps
# the default, long enough for a fault's slower consequences to join it.
join_window = "2s"
update_after = "2s"

[steps]
source = "markers"
system_id = "{DEMO_SYSTEM_ID}"

[outbox]
retry_base = "200ms"
retry_cap = "2s"
drain_deadline = "20s"

[control]
listen = "127.0.0.1:0"
"""


class Progress:
    """One line every couple of seconds: what flowed and what the agent made of it."""

    def __init__(self, agent: Agent, atlas: AtlasEmulator) -> None:
        self.agent = agent
        self.atlas = atlas
        self.started = time.monotonic()

    def line(self) -> str:
        agent = self.agent
        frames = agent.frames_total()
        rate = sum(agent.frame_rates().values())
        counters = agent.lens.counters() if agent.lens is not None else {}
        labels = dict(agent.inference_labels)
        windows = int(counters.get("pacer_sent", 0))
        opened = sum(agent.anomalies_opened.values())
        atlas_counts = self.atlas.state()["counts"]
        step = agent.steps.status().get("current")
        step_name = step.get("name") if isinstance(step, dict) else None
        return (
            f"[{time.monotonic() - self.started:5.1f}s] frames {frames} ({rate:.0f}/s) | "
            f"windows sent {windows} | inferences {sum(labels.values())} {labels or ''} | "
            f"anomalies {opened} ({len(agent.detector.open_anomalies())} open) in"
            f" {agent.counts['incident_events_opened']} incidents | "
            f"Atlas issues {atlas_counts.get('issues', 0)}, files {atlas_counts.get('attachments', 0)} | "
            f"step {step_name or '-'}"
        )


def summarize(atlas: AtlasEmulator, archetype: ArchetypeEmulator, workdir: Path) -> dict[str, Any]:
    state = atlas.state()
    issues = [
        {
            "id": issue["uuid"],
            "title": issue["title"],
            "priority": issue["priority"],
            "tags": list(issue.get("tags") or []),
            "status": issue["status"],
            "attachments": len(issue.get("attachments", [])),
            "attachment_names": [a.get("attachment_name") for a in issue.get("attachments", [])],
            "comments": len(issue.get("comments", [])),
            "comment_heads": [_first_line(c.get("content", "")) for c in issue.get("comments", [])],
        }
        for issue in state.get("issues", [])
    ]
    steps = []
    for run in state.get("test_runs", []):
        for card in run.get("test_cards", []):
            for step in card.get("test_steps", []):
                steps.append(
                    {
                        "run": run.get("title"),
                        "card": card.get("title"),
                        "step": step.get("title"),
                        "status": step.get("execution_status"),
                        "exception": step.get("exception"),
                    }
                )
    live_sessions = [
        s for s in archetype.state().get("sessions", []) if "DESTROYED" not in str(s.get("status"))
    ]
    return {
        "issues": issues,
        "steps": steps,
        "atlas_counts": state.get("counts", {}),
        "lens_sessions_left": len(live_sessions),
        "evidence_dir": str(workdir / "state"),
        "config": str(workdir / "edge-agent.toml"),
        "workdir": str(workdir),
    }


def _first_line(text: str, limit: int = 100) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def print_summary(summary: dict[str, Any]) -> None:
    print("\n=== What Atlas now holds ===")
    print(f"issues: {len(summary['issues'])}")
    for issue in summary["issues"]:
        print(
            f"  [{issue['priority']:>6}] {issue['title']}  "
            f"({issue['attachments']} attachments, {issue['comments']} comments, {issue['status']})"
        )
        print(f"           Atlas id {issue['id']}")
        print(f"           tags: {', '.join(issue['tags'])}")
        for name in issue["attachment_names"]:
            print(f"           attachment: {name}")
        for head in issue["comment_heads"]:
            print(f"           comment: {head}")
    print(f"test steps: {len(summary['steps'])}")
    for step in summary["steps"]:
        note = f"  - {step['exception']}" if step.get("exception") else ""
        print(f"  {step['status'] or 'todo':>22}  {step['step']}{note}")
    print(f"lens sessions left on the emulator: {summary['lens_sessions_left']}")
    print(f"agent config: {summary['config']}")
    print(f"agent state: {summary['evidence_dir']} (evidence files stay there only until Atlas has them)")
    print(
        f"work directory (kept): {summary['workdir']} (config, state, the bench's oracle;"
        f" `rm -r {summary['workdir']}` removes it)"
    )


async def wait_for(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.05)


def scripted_part(scenario: Scenario, duration: float) -> tuple[Scenario, float]:
    """For --keep-running: the steps and faults that start within `duration` (what the demo scripts),
    with no end of their own (the bench goes on with normal data), and when that sequence is over."""
    steps = [step for step in scenario.steps if step.start < duration]
    faults = [fault for fault in scenario.faults if fault.start < duration]
    ends = [duration, *(step.end for step in steps), *(fault.start + fault.duration for fault in faults)]
    return scenario.model_copy(update={"steps": steps, "faults": faults, "duration": None}), max(ends)


async def settle(agent: Agent, limit: float, quiet_for: float = 1.0) -> None:
    """Until, for `quiet_for` seconds in a row, no anomaly or incident is open (the reporter's too, with
    its closing evidence), no step runs and the outbox has delivered everything; at most `limit`."""
    deadline = time.monotonic() + limit
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        depth = await agent.outbox.counts()
        reporter = agent.reporter.status() if agent.reporter is not None else {}
        quiet = (
            not agent.detector.open_anomalies()
            and not agent.incidents.open_incidents()
            and not reporter.get("open_incidents")
            and not reporter.get("pending_evidence")
            and agent.steps.running_step is None
            and depth.get("pending", 0) + depth.get("in_flight", 0) == 0
        )
        now = time.monotonic()
        if not quiet:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_for:
            return
        await asyncio.sleep(0.2)


async def run_demo(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings = EmulatorSection(warmup=1.0, inference_interval=1.0)
    archetype = ArchetypeEmulator(settings)
    atlas = AtlasEmulator(settings)
    await archetype.start()
    await atlas.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"Archetype lens emulator: {archetype.base_url}")
        print(f"Atlas emulator:          {atlas.base_url}/api/v1")
        config_path = workdir / "edge-agent.toml"
        config_path.write_text(demo_config(workdir, archetype, atlas))
        config = load_config(config_path)

        scenario = load_scenario(args.scenario, seed=args.seed, duration=args.duration)
        sequence_end = args.duration
        if args.keep_running:
            scenario, sequence_end = scripted_part(scenario, args.duration)
        model = BenchModel(args.seed)
        played_for = KEEP_BENCH_FOR if args.keep_running else args.duration
        player = ScenarioPlayer(scenario, model, RATE, args.seed, duration=played_for)
        port = PtyPort(workdir / "ttyBENCH0")
        pty_path = port.open()  # before the agent starts, so it reads the sequence from its first line
        print(f"simulated bench:         {pty_path} (link {port.link}), scenario '{scenario.name}'")
        oracle = OracleWriter(workdir / "oracle.jsonl")
        runner = BenchRunner(Feed(player, model.header()), port, oracle=oracle)

        agent = Agent(config)
        await agent.start()
        await wait_for(
            lambda: all(r.is_up for r in agent.readers.values()), ATTACH_TIMEOUT, "the serial port"
        )
        control = agent.control.url if agent.control else None
        print(f"agent control API:       {control or '-'}/status")
        if control and agent.live is not None:
            print(f"live bench page:         {control}/  (open it in a browser)")
        print()
        bench = asyncio.create_task(runner.run())
        progress = Progress(agent, atlas)
        try:
            await asyncio.wait_for(runner.ready.wait(), ATTACH_TIMEOUT)
            while not bench.done() and not stop.is_set() and runner.now() < sequence_end:
                await asyncio.wait({bench}, timeout=2.0)
                print(progress.line(), flush=True)
            if args.keep_running and not stop.is_set():
                print("scripted sequence finished; the bench goes on with normal data. Waiting for the agent"
                      " to close anomalies and deliver to Atlas ...", flush=True)  # fmt: skip
                await settle(agent, SETTLE_TIMEOUT)
                finish(agent, atlas, archetype, workdir)
                print(f"\nlive bench page: {control}/")
                print("agent, page, bench and emulators still running (Ctrl-C to stop):")
                print(f"  {archetype.server.base_url}/_emulator/state")
                print(f"  {atlas.server.base_url}/_emulator/state", flush=True)
                await stop.wait()
        finally:
            if not bench.done():
                runner.stop()
            await bench
            oracle.close()
            print("bench stopped; stopping the agent (closing anomalies, draining the outbox) ...")
            await agent.stop(time.monotonic() + config.outbox.drain_deadline)
        return finish(agent, atlas, archetype, workdir, show=not args.keep_running)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await archetype.stop()
        await atlas.stop()


def finish(
    agent: Agent, atlas: AtlasEmulator, archetype: ArchetypeEmulator, workdir: Path, *, show: bool = True
) -> dict[str, Any]:
    summary = summarize(atlas, archetype, workdir)
    summary["agent"] = {
        "frames": agent.frames_total(),
        "inferences": dict(agent.inference_labels),
        "windows_sent": int(agent.lens.counters().get("pacer_sent", 0)) if agent.lens is not None else 0,
        "anomalies_opened": sum(agent.anomalies_opened.values()),
    }
    if show:
        print_summary(summary)
    return summary


def main(args: argparse.Namespace) -> int:
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        # Kept afterwards (the summary says where): the config, the state and the oracle are there to
        # look at, and the config runs the same setup again with `edge-agent run --config`.
        workdir = Path(tempfile.mkdtemp(prefix="edge-agent-demo-"))
    summary = asyncio.run(run_demo(args, workdir))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2))
    return 0
