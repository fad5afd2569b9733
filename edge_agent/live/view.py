"""The live page's state document (everything but the traces), read from the agent's components.

It is built at most once per `STATE_EVERY` seconds while a page is open (one build serves every page),
never on the data path. Limits and baseline bands come from the detector's own checks, so the page
draws exactly what the rules compare with; Atlas delivery from the outbox (delivered issue jobs with
the ids Atlas gave, jobs waiting, failures with the server's answer) and the reporter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from edge_agent.atlas.jobs import KIND_ISSUE
from edge_agent.detect.baseline_check import BaselineCheck
from edge_agent.detect.checks import LimitsCheck
from edge_agent.detect.detector import Detector
from edge_agent.live.board import LiveBoard, rounded
from edge_agent.outbox import JobState

if TYPE_CHECKING:
    from edge_agent.agent import Agent

ISSUES_SHOWN = 30
FAILURES_SHOWN = 10
ANSWER_CHARS = 300  # of the server's answer to a failed job (already scrubbed of secrets by the transport)


def bands(detector: Detector) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """source -> channel -> the limits and learned baseline bands of its rules (a band not learned
    yet is left out: it draws nothing)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for source, channel, check in detector.value_checks():
        if isinstance(check, LimitsCheck):
            kind = "limits"
        elif isinstance(check, BaselineCheck):
            kind = "baseline"
        else:
            continue
        low = check.low if math.isfinite(check.low) else None
        high = check.high if math.isfinite(check.high) else None
        if low is None and high is None:
            continue  # a baseline still learning
        out.setdefault(source, {}).setdefault(channel, []).append(
            {"kind": kind, "low": rounded(low), "high": rounded(high)}
        )
    return out


def steps_doc(status: dict[str, Any]) -> dict[str, Any]:
    """The step timeline: the completed steps with their outcomes, and the running one."""
    current = status.get("current")
    completed = [
        {
            "step": c.get("step"),
            "card": c.get("card"),
            "outcome": c.get("execution_status"),
            "exception": c.get("exception"),
            "x0": _ms(c.get("started_wall")),
            "x1": _ms(c.get("ended_wall")),
        }
        for c in status.get("completed", [])
    ]
    running = None
    if isinstance(current, dict):
        running = {
            "step": current.get("title") or current.get("name"),
            "card": current.get("card"),
            "x0": _ms(current.get("started_wall")),
        }
    return {"source": status.get("source"), "completed": completed, "running": running}


def _ms(wall: Any) -> float | None:
    return round(float(wall) * 1000.0, 1) if isinstance(wall, int | float) else None


def lens_doc(agent: Agent, board: LiveBoard) -> dict[str, Any] | None:
    lens = agent.lens
    if lens is None:
        return None
    component = agent.supervisor.status().get("lens", {})
    counters = lens.counters()
    session = lens.session
    return {
        "session_id": session.session_id if session is not None else None,
        # What a lens anomaly is about: the page shades these channels of this source, not every one.
        "source": lens.windower.source,
        "channels": list(lens.windower.channels),
        "streaming": lens.running.is_set(),
        "component": component.get("state"),
        "last_error": component.get("last_error"),
        "windows_sent": int(counters.get("pacer_sent", 0)),
        "windows_dropped": int(sum(v for k, v in counters.items() if k.startswith("pacer_dropped"))),
        "labels": dict(agent.inference_labels),
        "recent": board.labels(),
    }


async def atlas_doc(agent: Agent) -> dict[str, Any] | None:
    reporter = agent.reporter
    if reporter is None:
        return None
    delivered = await agent.outbox.latest(KIND_ISSUE, JobState.DONE, ISSUES_SHOWN)
    issues = [
        {
            "incident_id": job.payload.get("incident_id"),
            "title": job.payload.get("title"),
            "issue_id": (job.result or {}).get("issue_id"),
            "via": (job.result or {}).get("via"),
        }
        for job in delivered
    ]
    status = await agent.outbox.status()
    failures = [
        {
            "kind": f.get("kind"),
            "group": f.get("group"),
            "attempts": f.get("attempts"),
            "status": f.get("status"),
            "reason": f.get("reason"),
            "answer": str(f.get("body") or "")[:ANSWER_CHARS],
        }
        for f in status.get("failures", [])[:FAILURES_SHOWN]
    ]
    run = reporter.status().get("run") or {}
    return {
        "session_id": run.get("session_id"),
        "session_title": run.get("session_title"),
        "issues": issues,
        "open_incidents": reporter.status().get("open_incidents", []),
        "depth": status.get("depth", {}),
        "oldest_waiting_s": rounded(status.get("oldest_waiting_s")),
        "blocked": status.get("blocked"),
        "failures": failures,
    }


async def state_parts(agent: Agent, board: LiveBoard) -> dict[str, Any]:
    """Everything the page shows besides the traces and the marks (the board's own), in parts that
    change independently (a page is sent only the parts that changed since it last got them)."""
    return {
        "bands": bands(agent.detector),
        "steps": steps_doc(await agent.steps.shown_status()),
        "lens": lens_doc(agent, board),
        "atlas": await atlas_doc(agent),
        "ports": {
            name: {"up": reader.is_up, "frames": reader.decoder.stats.frames}
            for name, reader in agent.readers.items()
        },
        "tap": board.summary(),
    }
