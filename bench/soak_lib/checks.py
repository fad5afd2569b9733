"""The soak's verdict: the oracle (what the simulated bench injected) against what Atlas holds, the lens
emulator's sessions, the agent's resource samples and its counters and logs.

Openings: every incident the agent reported reaches Atlas exactly once, either as an issue (its first
tag `edge-agent:<incident-id>`) or, under the repeat rule, as a comment carrying the marker line
`edge-agent:<incident-id>:open` on the open issue of the same fault (which then carries the repeat's
tag too). Each opening's evidence JSON (an attachment) says which rule and channel led it, and when.
The other rules a fault trips (a step's edges trip the rate rule) are members of its incident.

Matching: an opening is explained by a fault on its channel (device-level faults: channel `*`)
whose [start, end] (host monotonic, the oracle's scheduled times) overlaps the anomaly's
[started, ended] widened by TOLERANCE (the simulator's lateness, the read batching, the debounce).
A fault must produce exactly one opening of its expected rule. Openings of another rule on the same
channel during the fault (a step's edges trip the rate rule) are reported as secondary, not as errors.
Faults whose window overlapped the agent's dead time (killed, not yet reading again) are excluded from
the must-produce set and listed.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .harness import SoakRun

TOLERANCE = 2.0
GROWTH_LIMIT = 0.05
TAG = "edge-agent:"


@dataclass
class Opening:
    anomaly_id: str
    via: str  # "issue" | "comment"
    issue_id: str
    rule_kind: str  # limits | rate | stuck | dropout | lens
    channel: str
    started: float  # monotonic
    ended: float
    attachments: int
    summary: dict[str, Any]
    fault: str | None = None
    primary: bool = False
    member_kinds: set[str] = field(default_factory=set)  # rules of its members on the lead's channel


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def render(self) -> str:
        out = list(self.lines)
        out.append("")
        out.append("CHECKS")
        for c in self.checks:
            out.append(f"  [{'PASS' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
        out.append(f"RESULT: {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(out)


def read_oracle(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def _marker_ids(content: str) -> list[str]:
    ids = []
    for line in content.splitlines():
        line = line.strip()
        if line.startswith(TAG) and line.endswith(":open"):
            ids.append(line[len(TAG) : -len(":open")])
    return ids


def _final_members(run: SoakRun) -> dict[str, list[dict[str, Any]]]:
    """Incident id -> every member, from the evidence JSON of its closing comment."""
    out: dict[str, list[dict[str, Any]]] = {}
    for issue in run.atlas_state.get("issues", []):
        for comment in issue.get("comments", []):
            for aid in run.comment_attachments.get(comment.get("uuid", ""), []):
                try:
                    parsed = json.loads(run.attachments.get(aid) or b"")
                except ValueError:
                    continue
                incident = parsed.get("incident") if isinstance(parsed, dict) else None
                if isinstance(incident, dict) and isinstance(incident.get("members"), list):
                    key = str(incident.get("id"))
                    if len(incident["members"]) > len(out.get(key, [])):  # the final JSON, not the snapshot
                        out[key] = incident["members"]
    return out


def _evidence(run: SoakRun, attachment_ids: list[str]) -> dict[str, Any] | None:
    for aid in attachment_ids:
        data = run.attachments.get(aid)
        if data is not None:
            try:
                parsed = json.loads(data)
            except ValueError:
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("incident"), dict):
                incident: dict[str, Any] = parsed["incident"]
                members = incident.get("members") or [{}]
                # The lead's rule and channel, the incident's span.
                return {
                    **members[0],
                    **{k: incident.get(k) for k in ("started_mono", "started_wall", "ended_wall")},
                }
    return None


def collect_openings(run: SoakRun) -> tuple[list[Opening], list[str]]:
    """Every incident opening in Atlas, and the problems found on the way (duplicates, no evidence)."""
    problems: list[str] = []
    openings: list[Opening] = []
    seen: Counter[str] = Counter()
    finals = _final_members(run)
    for issue in run.atlas_state.get("issues", []):
        # The first agent tag is the incident that filed the issue; repeats added theirs after it.
        tags = [t for t in issue.get("tags", []) if t.startswith(TAG)][:1]
        ids = [(issue.get("attachment_ids") or [], t[len(TAG) :], "issue") for t in tags]
        for comment in issue.get("comments", []):
            for aid in _marker_ids(comment.get("content", "")):
                if tags and aid == tags[0][len(TAG) :]:
                    continue  # the issue's own opening narrative
                attachments = run.comment_attachments.get(comment.get("uuid", ""), [])
                ids.append((attachments, aid, "comment"))
        for attachments, anomaly_id, via in ids:
            seen[anomaly_id] += 1
            summary = _evidence(run, attachments)
            if summary is None:
                problems.append(
                    f"{via} for anomaly {anomaly_id} (issue {issue['uuid']}) has no evidence JSON"
                )
                summary = {}
            kind = str(summary.get("kind", "?")).removeprefix("rule:")
            kinds = {kind} | {
                str(m.get("kind", "?")).removeprefix("rule:")
                for m in finals.get(anomaly_id, [])
                if m.get("channel") == summary.get("channel")
            }
            started = float(summary.get("started_mono") or 0.0)
            ended_wall, started_wall = summary.get("ended_wall"), summary.get("started_wall")
            ended = started
            if isinstance(ended_wall, int | float) and isinstance(started_wall, int | float):
                ended = started + max(0.0, ended_wall - started_wall)
            openings.append(
                Opening(
                    anomaly_id,
                    via,
                    issue["uuid"],
                    kind,
                    str(summary.get("channel", "?")),
                    started,
                    ended,
                    len(attachments),
                    summary,
                    member_kinds=kinds,
                )
            )
    for anomaly_id, n in seen.items():
        if n > 1:
            problems.append(f"anomaly {anomaly_id} reached Atlas {n} times (duplicate)")
    # The snapshot at open is a CSV and a JSON: an opening with fewer attachments lost evidence.
    for o in openings:
        if o.attachments < 2:
            problems.append(
                f"{o.via} for anomaly {o.anomaly_id} has {o.attachments} attachment(s), expected 2"
            )
    return openings, problems


def _overlaps(a0: float, a1: float, b0: float, b1: float, tol: float) -> bool:
    return a0 <= b1 + tol and b0 <= a1 + tol


def _dead_overlap(run: SoakRun, start: float, end: float, margin: float = 1.0) -> bool:
    return any(_overlaps(d0, d1, start - margin, end + margin, 0.0) for d0, d1 in run.dead)


def _fault_channel(fault: dict[str, Any]) -> str:
    return (
        "*"
        if fault.get("kind") in ("unplug", "dropout") and not fault.get("channel")
        else str(fault["channel"])
    )


def startup_fault(run: SoakRun) -> dict[str, Any] | None:
    """The agent starts before the simulator (or it would miss the first lines), so its port is absent
    for a moment: a real link loss, which the agent must report like any other dropout."""
    first = run.incarnations[0] if run.incarnations else None
    if first is None or first.up_mono is None:
        return None
    if not _port_absent_at_first_open(run.workdir / "agent-000.log"):
        return None
    return {
        "record": "fault",
        "id": "harness-link-absent-at-start",
        "kind": "unplug",
        "channel": None,
        "start_mono": first.spawned_mono,
        "end_mono": first.up_mono,
        "start_s": 0.0,
        "expected_rule": "dropout",
        "expect_anomaly": True,
    }


def _port_absent_at_first_open(log: Path) -> bool:
    """Whether the first agent found its port absent before it first opened it. A slow start (a loaded
    machine) can let the simulator make its pty first: then nothing was absent and nothing is owed."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return True  # no log to tell: expect the dropout, as the harness means it
    for line in lines:
        try:
            event = json.loads(line).get("event")
        except (ValueError, AttributeError):
            continue
        if event == "serial.port_unavailable":
            return True
        if event == "serial.port_opened":
            return False
    return True


def check_faults(run: SoakRun, records: list[dict[str, Any]], report: Report) -> list[Opening]:
    faults = [r for r in records if r.get("record") == "fault"]
    extra = startup_fault(run)
    if extra is not None:
        faults.append(extra)
    openings, problems = collect_openings(run)
    must = [f for f in faults if f.get("expect_anomaly")]
    excluded = [f for f in must if _dead_overlap(run, f["start_mono"], f["end_mono"])]
    excluded_ids = {f["id"] for f in excluded}
    results: dict[str, list[Opening]] = defaultdict(list)
    for o in openings:
        for f in faults:
            if not f.get("expect_anomaly") or _fault_channel(f) != o.channel:
                continue
            if _overlaps(f["start_mono"], f["end_mono"], o.started, o.ended, TOLERANCE):
                o.fault = f["id"]
                o.primary = f.get("expected_rule") in o.member_kinds
                if o.primary:
                    results[f["id"]].append(o)
                break
    missing, multiple = [], []
    for f in must:
        if f["id"] in excluded_ids:
            continue
        n = len(results.get(f["id"], []))
        if n == 0:
            missing.append(f)
        elif n > 1:
            multiple.append((f, n))
    unexplained = [o for o in openings if o.fault is None]
    secondary = [o for o in openings if o.fault is not None and not o.primary]
    by_kind = Counter(f["kind"] for f in faults)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    secondary_kinds = ", ".join(sorted(Counter(o.rule_kind for o in secondary)))
    primaries = sum(1 for o in openings if o.primary)
    report.lines.append(
        f"faults injected by the bench: {len(faults)} ({kinds});"
        f" should raise an anomaly: {len(must)}; excluded (overlapped agent dead time): {len(excluded)}"
        + (f" [{', '.join(f['id'] for f in excluded)}]" if excluded else "")
    )
    via = Counter(o.via for o in openings)
    report.lines.append(
        f"anomalies in Atlas: {len(openings)} (issues {via['issue']}, repeat comments {via['comment']});"
        f" primary {primaries}, secondary (other rule, same fault) {len(secondary)}"
        f" [{secondary_kinds}], unexplained {len(unexplained)}"
    )
    report.add(
        "every fault -> exactly one issue/comment of its rule",
        not missing and not multiple,
        f"{len(must) - len(excluded) - len(missing) - len(multiple)}/{len(must) - len(excluded)} exact"
        + "".join(
            f"; MISSING {f['id']} ({f['kind']} {f.get('channel') or '*'} {f['start_s']:.1f}s)"
            for f in missing
        )
        + "".join(f"; {n}x {f['id']} ({f['kind']} {f.get('channel') or '*'})" for f, n in multiple),
    )
    report.add(
        "no issue without a fault behind it",
        not unexplained,
        "0 unexplained"
        if not unexplained
        else "; ".join(
            f"{o.via} {o.anomaly_id} {o.rule_kind} {o.channel} at +{o.started - run.sim_start_mono:.1f}s"
            for o in unexplained[:10]
        ),
    )
    report.add(
        "duplicates = 0 and evidence attached",
        not problems,
        "ok" if not problems else "; ".join(problems[:10]),
    )
    return openings


def _expected_outcome(step: dict[str, Any], faults: list[dict[str, Any]]) -> tuple[set[str], bool]:
    """The outcomes the step may have given every fault the oracle recorded (scheduled and requested
    unplugs alike), and whether it is ambiguous (a fault within TOLERANCE of the step's edges)."""
    s0, s1 = step["start_mono"], step["end_mono"]
    inside = [
        f
        for f in faults
        if f.get("expect_anomaly") and _overlaps(f["start_mono"], f["end_mono"], s0, s1, 0.0)
    ]
    near = [
        f
        for f in faults
        if f.get("expect_anomaly")
        and f not in inside
        and _overlaps(f["start_mono"], f["end_mono"], s0, s1, TOLERANCE)
    ]
    if step.get("marker_verdict") == "FAIL":
        return {"failed"}, False
    base = "passed_with_exception" if inside else "passed"
    if near:
        return {base, "passed_with_exception"}, True
    return {base}, False


def check_steps(run: SoakRun, records: list[dict[str, Any]], report: Report) -> None:
    faults = [r for r in records if r.get("record") == "fault"]
    steps = [r for r in records if r.get("record") == "step" and not r.get("truncated")]
    atlas_steps: dict[str, str] = {}
    for test_run in run.atlas_state.get("test_runs", []):
        for card in test_run.get("test_cards", []) or test_run.get("cards", []):
            for step in card.get("test_steps", []) or card.get("steps", []):
                atlas_steps[str(step.get("title"))] = str(step.get("execution_status"))
    bad, excluded, held, ambiguous = [], [], [], 0
    unplugs = [(f["start_mono"], f["end_mono"]) for f in faults if f.get("kind") == "unplug"]
    for step in steps:
        edges_dead = _dead_overlap(run, step["start_mono"], step["start_mono"]) or _dead_overlap(
            run, step["end_mono"], step["end_mono"]
        )
        if edges_dead:
            excluded.append(step["name"])
            continue
        # A marker due while the cable is out is held by the bench and written the instant it is back,
        # before the agent can reopen the port, whose open flushes the input (pyserial): such a marker is
        # lost, on a real bench too. Reported, not counted as the agent's mismatch.
        if any(u0 <= step[edge] <= u1 for u0, u1 in unplugs for edge in ("start_mono", "end_mono")):
            held.append(f"{step['name']} (Atlas: {atlas_steps.get(step['name'])})")
            continue
        allowed, amb = _expected_outcome(step, faults)
        ambiguous += amb
        got = atlas_steps.get(step["name"])
        if got not in allowed:
            bad.append(f"{step['name']}: Atlas {got}, oracle {'/'.join(sorted(allowed))}")
    report.lines.append(
        f"steps: {len(steps)} in the oracle, {len(atlas_steps)} in Atlas; {ambiguous} with a fault within"
        f" {TOLERANCE:g}s of an edge (either outcome accepted);"
        f" excluded (marker in dead time): {excluded or 0}"
    )
    report.lines.append(
        f"steps with a marker held across an unplug (written at replug, before the agent reopens; lost"
        f" to the input flush at open): {held or 0}"
    )
    report.add(
        "every step outcome matches the oracle",
        not bad and bool(steps),
        "; ".join(bad[:10]) or f"{len(steps) - len(excluded) - len(held)} ok",
    )


def check_lens(run: SoakRun, report: Report) -> None:
    state = run.archetype_state
    sessions = state.get("sessions", [])
    created = len(sessions) if isinstance(sessions, list | dict) else "?"
    report.lines.append(f"lens sessions created on the emulator: {created}; injected {state.get('injected')}")
    report.add(
        "no lens session left after shutdown",
        not run.live_lens_sessions,
        f"{len(run.live_lens_sessions)} live: {run.live_lens_sessions}"
        if run.live_lens_sessions
        else "0 live",
    )


def _growth(values: list[float], floor: bool = False) -> tuple[float, float, float] | None:
    """(level right after warm-up, level over the last 20 %, growth) over one process's samples. The
    level is the median, or with `floor` the minimum: fds and tasks come and go with each outbox
    attempt and websocket, so a burst of work (an incident closing near the end) lifts the median for
    seconds, while a leak lifts the floor."""
    if len(values) < 10:
        return None
    n = len(values)
    level = min if floor else statistics.median
    head = level(values[: max(3, n // 5)])
    tail = level(values[-max(3, n // 5) :])
    return head, tail, (tail - head) / head if head else 0.0


def check_resources(run: SoakRun, report: Report, warmup: float) -> None:
    """On the longest-lived agent process (the last one: kills stop at 75 % of the chaos phase),
    from `warmup` seconds after its start: RSS (median), fds and asyncio tasks (floor). Absolute slack of
    2 fds and 3 tasks, which come and go with each websocket and outbox attempt."""
    by_inc: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in run.samples:
        by_inc[s["incarnation"]].append(s)
    if not by_inc:
        report.add("resources flat after warm-up", False, "no samples")
        return
    inc, samples = max(by_inc.items(), key=lambda kv: kv[1][-1]["age"] - kv[1][0]["age"])
    warm = [s for s in samples if s["age"] >= warmup]
    lifetime = samples[-1]["age"] if samples else 0.0
    rss = [s["rss_kb"] / 1024 for s in warm]
    fds = [float(s["fds"]) for s in warm]
    tasks = [float(s["tasks"]) for s in warm if s.get("tasks") is not None]
    all_rss = [s["rss_kb"] / 1024 for s in run.samples]
    report.lines.append(
        f"resources: {len(run.samples)} samples over {len(by_inc)} agent processes; longest-lived #{inc}"
        f" ({lifetime:.0f} s, {len(warm)} samples after {warmup:g} s warm-up); RSS over all processes"
        f" min/median/max {min(all_rss):.1f}/{statistics.median(all_rss):.1f}/{max(all_rss):.1f} MB"
    )
    parts, ok = [], True
    for name, values, slack in (("RSS MB", rss, 0.0), ("fds", fds, 2.0), ("tasks", tasks, 3.0)):
        g = _growth(values, floor=name != "RSS MB")
        if g is None:
            parts.append(f"{name}: too few samples ({len(values)})")
            ok = False
            continue
        head, tail, growth = g
        fine = growth < GROWTH_LIMIT or tail - head <= slack
        ok = ok and fine
        parts.append(f"{name} {head:.1f} -> {tail:.1f} ({growth * 100:+.1f} %)")
    report.add("RSS, fds, tasks flat after warm-up (growth < 5 %)", ok, "; ".join(parts))
    # Across restarts: the fresh process at the end must not start bigger than the first ones did.
    starts = [v[min(len(v) - 1, 2)]["rss_kb"] / 1024 for v in by_inc.values() if v]
    if len(starts) >= 3:
        report.lines.append(
            f"RSS of each process ~6 s after its start: first {starts[0]:.1f} MB, last {starts[-1]:.1f} MB,"
            f" median {statistics.median(starts):.1f} MB"
        )


def _log_events(run: SoakRun) -> list[dict[str, Any]]:
    events = []
    for path in run.log_paths():
        for raw in path.read_bytes().splitlines():
            try:
                events.append(json.loads(raw))
            except ValueError:
                continue
    return events


def check_shed(run: SoakRun, records: list[dict[str, Any]], report: Report) -> None:
    """Shed/skip counters by reason, summed over the agent's processes (each process's last /status;
    a SIGKILL loses what it counted after its last sample), and the log line behind each shed job."""
    totals: Counter[str] = Counter()
    for inc in run.incarnations:
        status = inc.last_status or {}
        for port in status.get("ports", {}).values():
            for k, v in (port.get("decode") or {}).items():
                if isinstance(v, int) and k != "frames" and k != "lines" and k != "bytes":
                    totals[f"serial.{k}"] += v
        lens = status.get("lens") or {}
        for k, v in (lens.get("counters") or {}).items():
            if any(w in k for w in ("drop", "shed", "skip", "overflow", "lost")) and isinstance(
                v, int | float
            ):
                totals[f"lens.{k}"] += int(v)
        for k, v in (status.get("counts") or {}).items():
            if k.endswith("_dropped"):
                totals[f"agent.{k}"] += int(v)
    final = run.final_status or {}
    outbox_counters = (final.get("outbox") or {}).get("counters") or {}
    shed = {k: int(v) for k, v in outbox_counters.items() if k.startswith("shed.")}
    events = _log_events(run)
    logged: Counter[str] = Counter()
    for e in events:
        if e.get("event") in ("outbox_job_shed", "outbox_failed_job_shed"):
            logged[f"shed.{e.get('reason')}"] += 1
    garbage = sum(1 for r in records if r.get("record") == "fault" and r.get("kind") == "garbage")
    shown = {k: v for k, v in sorted(totals.items()) if v}
    report.lines.append(
        f"shed/skipped (summed over processes): {shown or 'nothing'}; outbox shed: {shed or 'nothing'}"
    )
    report.lines.append(
        f"garbage bursts injected: {garbage} (each is one undecodable line: counted by the decoder,"
        " not logged"
        " per line on the hot path)"
    )
    unlogged = [
        f"{k}: counted {v}, logged {logged.get(k, 0)}" for k, v in shed.items() if logged.get(k, 0) < v
    ]
    report.add(
        "every shed item counted and logged",
        not unlogged,
        "; ".join(unlogged) or f"{sum(shed.values())} shed, all logged",
    )


def check_process(run: SoakRun, report: Report) -> None:
    kills = sum(1 for i in run.incarnations if i.how == "killed")
    done = Counter(a["kind"] for a in run.actions_done)
    drops = sum(int(a.get("dropped", 0)) for a in run.actions_done)
    ends = sum(int(a.get("sessions", 0)) for a in run.actions_done)
    dead = sum(b - a for a, b in run.dead)
    report.lines.append(
        f"harness faults: {dict(sorted(done.items()))}; websockets actually cut {drops}; lens sessions ended"
        f" server-side {ends}; SIGKILLs {kills}, total agent dead time {dead:.1f} s"
        f" (max {max((b - a for a, b in run.dead), default=0):.1f} s)"
    )
    report.lines.append(
        f"settling: {'quiet' if run.settled else 'NOT quiet'} after {run.settle_seconds:.1f} s; shutdown"
        f" {run.shutdown_seconds if run.shutdown_seconds is None else round(run.shutdown_seconds, 2)} s,"
        f" exit {run.final_exit}"
    )
    report.add(
        "settled and shut down cleanly",
        run.settled and run.final_exit == 0 and not run.errors,
        "; ".join(run.errors) or f"exit {run.final_exit}",
    )


def evaluate(run: SoakRun, warmup: float) -> Report:
    report = Report()
    records = read_oracle(run.oracle_path) if run.oracle_path.exists() else []
    report.lines.append(f"soak workdir {run.workdir}; plan {run.plan.counts()}")
    check_process(run, report)
    check_faults(run, records, report)
    check_steps(run, records, report)
    check_lens(run, report)
    check_resources(run, report, warmup)
    check_shed(run, records, report)
    return report
