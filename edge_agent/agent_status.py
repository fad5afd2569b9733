"""What the agent tells of itself: its one-line status for systemd, the checks of /readyz, each port's
frame rate and the whole of /status. A view: it reads the agent's components and changes nothing in
them (only its own marks of the frame counts, for the rates).

Times on /status follow one rule (README, "Operating it"): a wall-clock time is `<name>_wall`, seconds
since the epoch (a number, for programs), and beside it `<name>_at`, the same instant as ISO 8601 UTC
with milliseconds (for people); `with_times_at` adds the second to the whole document, so a component
only names its wall times `*_wall`. Durations and ages are seconds, named `*_s`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from edge_agent.atlas.narrative import anomaly_summary, iso

if TYPE_CHECKING:
    from edge_agent.agent import Agent


def with_times_at(value: Any) -> Any:
    """`value` (a JSON document) with `<name>_at` (ISO 8601 UTC, milliseconds, or None) right after every
    `<name>_wall` (seconds since the epoch, or None) at any depth that has none yet."""
    if isinstance(value, dict):
        shown: dict[Any, Any] = {}
        for key, item in value.items():
            shown[key] = with_times_at(item)
            a_time = item is None or (isinstance(item, int | float) and not isinstance(item, bool))
            if a_time and isinstance(key, str) and key.endswith("_wall") and f"{key[:-5]}_at" not in value:
                shown[f"{key[:-5]}_at"] = iso(item)
        return shown
    if isinstance(value, list | tuple):
        return [with_times_at(item) for item in value]
    return value


class AgentStatus:
    def __init__(self, agent: Agent, mono: Callable[[], float]) -> None:
        self.agent = agent
        self._mono = mono
        self._started_mono = mono()
        self._rate_marks: dict[str, tuple[float, int]] = {}

    def frame_rates(self) -> dict[str, float]:
        """Frames per second of each port since the previous call (at most once a second is useful)."""
        now = self._mono()
        rates: dict[str, float] = {}
        for name, reader in self.agent.readers.items():
            frames = reader.decoder.stats.frames
            last_t, last_frames = self._rate_marks.get(name, (self._started_mono, 0))
            elapsed = now - last_t
            rates[name] = (frames - last_frames) / elapsed if elapsed > 0 else 0.0
            if elapsed >= 1.0:
                self._rate_marks[name] = (now, frames)
        return rates

    def short_status(self) -> str:
        agent = self.agent
        up = sum(1 for r in agent.readers.values() if r.is_up)
        lens = "lens running" if agent.lens is not None and agent.lens.running.is_set() else "lens down"
        anomalies = len(agent.detector.open_anomalies())
        return f"{up}/{len(agent.readers)} ports up, {lens}, {anomalies} anomalies open"

    def readiness(self) -> tuple[bool, dict[str, str]]:
        agent = self.agent
        checks: dict[str, str] = {}
        for name, reader in agent.readers.items():
            checks[f"serial:{name}"] = "ok" if reader.is_up else "port not open"
        if agent.lens is not None:
            problem = agent.lens.routing.problem()
            checks["lens"] = "no running session" if not agent.lens.running.is_set() else problem or "ok"
            switched = agent.lens.routing.summary()
            if switched is not None:
                checks["lens_output"] = switched  # "ok: ...": says what happened, counts as ok
        if agent.reporter is not None:
            checks["outbox"] = (
                "ok" if agent.outbox.healthy() else "not delivering (Atlas unreachable or refusing)"
            )
        health = agent.state_health.status()
        checks["disk"] = (
            "ok"
            if not health["disk_full"]
            else f"full: {len(health['writes_waiting_for_space'])} state write(s) waiting for space"
        )
        for consumer in agent.feeds():
            if consumer.waiting:
                checks[f"events:{consumer.name}"] = (
                    f"{consumer.waiting} anomaly event(s) kept for a retry: {consumer.last_error}"
                )
        ok = agent.ready and all(v == "ok" or v.startswith("ok:") for v in checks.values())
        return ok, checks

    async def status(self) -> dict[str, Any]:
        agent = self.agent
        rates = self.frame_rates()
        ports = {}
        for name, reader in agent.readers.items():
            ports[name] = {
                "url": reader.port.url,
                "up": reader.is_up,
                "frames": reader.decoder.stats.frames,
                "frame_rate": round(rates[name], 1),
                "decode": reader.decoder.stats.as_dict(),
                # csv without columns: rows are skipped (decode skipped_before_header) until the header
                "waiting_for_header": reader.decoder.waiting_for_header,
                "columns": list(reader.decoder.columns),  # csv without columns: the device's header
                "link": asdict(reader.stats),
                "down_reason": agent.link_reasons.get(name),
                "clock": reader.clock.status(),
            }
        lens: dict[str, Any] | None = None
        if agent.lens is not None:
            session = agent.lens.session
            lens = {
                "session_id": session.session_id if session is not None else None,
                "running": agent.lens.running.is_set(),
                "reader": agent.lens.routing.status(time.monotonic()),
                "inferences": dict(agent.inference_labels),
                "counters": agent.lens.counters(),
            }
        document = {
            "bench": agent.config.agent.bench,
            "ready": self.readiness()[0],
            "components": agent.supervisor.status(),
            "ports": ports,
            "lens": lens,
            "open_anomalies": [
                anomaly_summary(a, agent.config.agent.bench) for a in agent.detector.open_anomalies()
            ],
            "open_incidents": [
                {
                    "id": i.id,
                    "group": i.group,
                    "lead": f"{i.lead.kind} on {i.lead.channel or 'lens'} ({i.lead.source})",
                    "severity": i.severity,
                    "members": len(i.members),
                    "channels": list(i.channels),
                }
                for i in agent.incidents.open_incidents()
            ],
            "outbox": await agent.outbox.status(),
            "reporter": agent.reporter.status() if agent.reporter is not None else None,
            "evidence": agent.rings.status(),
            "memory": agent.memory.status(agent.rings.nbytes),
            "steps": await agent.steps.shown_status(),
            "analysis": await agent.analysis.status(),
            "state_files": agent.state_health.status(),
            "consumers": {c.name: c.status() for c in agent.feeds()},
            "live": agent.live.status() if agent.live is not None else None,
            "recorder": agent.recorder.status() if agent.recorder is not None else None,
            "counts": dict(agent.counts),
            # For leak checks (bench/soak): a task count that grows while the agent runs is a leak.
            "asyncio_tasks": len(asyncio.all_tasks()),
        }
        shown: dict[str, Any] = with_times_at(document)
        return shown
