"""An incident's evidence files as the reporter uploads them: the CSV and JSON summary (evidence/writer.py)
and, for the evidence after the first snapshot, the plot (evidence/plot.py), with readable names.

On disk the files are named by incident id and part (a restart finds them again); in Atlas they get the
incident's readable name (`bench-03_supply_v_2026-12-01T21-31-05Z_limits.csv`, `.json`, `.png`).

The JSON summary also carries what the plot draws besides the frames: `limits` (each channel's rule
limits and learned baseline band, from the detector) and `steps` (the test steps around the incident,
seconds from its start). The snapshot at the first anomaly gets no plot: the issue must not wait a
second for a picture; every later evidence (parts and the final one) does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.evidence import EvidenceWindow
from edge_agent.evidence.plot import PLOT_TIMEOUT_S, render_plot_async
from edge_agent.evidence.writer import write_evidence_async
from edge_agent.frames import Frame
from edge_agent.incidents import Incident
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

KIND_PLOT = "evidence.plot"
# While the agent stops, a plot is drawn only with this long left before the drain's end for the upload
# and the comment that follow it, and only given at least MIN_PLOT_S to draw (one takes 1-3 s of CPU).
STOP_RESERVE_S = 4.0
MIN_PLOT_S = 2.0

Limits = dict[str, dict[str, float]]  # channel -> {"min", "max", "low", "high"} (finite only)
StepSpans = list[dict[str, Any]]  # {"name", "started_wall", "ended_wall" | None}


class EvidenceFiles:
    def __init__(
        self,
        directory: Path,
        *,
        health: StateFileHealth | None = None,
        limits_of: Callable[[Sequence[str]], Limits] | None = None,
        steps: Callable[[], StepSpans] | None = None,
        plots: bool = True,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.directory = directory
        self.health = health
        self._limits_of = limits_of
        self._steps = steps
        self.plots = plots
        self.counters = counters if counters is not None else {}

    def decorate(self, summary: dict[str, Any], incident: Incident) -> dict[str, Any]:
        """`summary` with the limits of its channels and the steps around it, for the plot."""
        if self._limits_of is not None:
            summary["limits"] = self._limits_of(incident.sources)
        if self._steps is not None:
            summary["steps"] = steps_around(self._steps(), incident.started_wall)
        return summary

    async def write(
        self,
        disk_stem: str,
        shown_stem: str,
        summary: dict[str, Any],
        frames: Sequence[Frame],
        incident: Incident,
        window: EvidenceWindow | None = None,
        *,
        plot: bool = False,
    ) -> tuple[list[str], list[str], dict[str, str] | None]:
        """(paths on disk, names in Atlas, the plot to draw). An error writing the CSV/JSON is counted
        and the jobs go on without files (the comment still says what happened). With `plot`, the PNG's
        path and name are in the lists already and the returned `{csv, json, png}` is for the plot job
        that draws it before the upload (batches.py): drawing takes a second or more, which must not
        hold up the reporter (the next incident's issue) but the outbox's worker."""
        try:
            written = await write_evidence_async(
                self.directory, disk_stem, summary, frames, t0=incident.started_mono, window=window,
                health=self.health,
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            self._count("evidence_errors")
            log.error("evidence_write_failed", incident_id=incident.id, stem=disk_stem, error=str(exc))
            return [], [], None
        self._count("evidence_files", 2)
        files = [str(p) for p in written.paths]
        names = [f"{shown_stem}.csv", f"{shown_stem}.json"]
        if not (plot and self.plots and frames):
            return files, names, None
        png = str(self.directory / f"{disk_stem}.png")
        return [*files, png], [*names, f"{shown_stem}.png"], {"csv": files[0], "json": files[1], "png": png}

    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by


def steps_around(spans: StepSpans, started_wall: float) -> list[dict[str, Any]]:
    """Step spans as seconds from the incident's start (host wall clock: steps are told in it)."""
    out = []
    for span in spans:
        start, end = span.get("started_wall"), span.get("ended_wall")
        if not isinstance(start, int | float):
            continue
        out.append(
            {
                "name": span.get("name"),
                "start_s": float(start) - started_wall,
                "end_s": float(end) - started_wall if isinstance(end, int | float) else None,
            }
        )
    return out


def limits_from_checks(checks: Sequence[tuple[str, str, Any]], sources: Sequence[str]) -> Limits:
    """Each channel's rule limits (`min`/`max`) and learned baseline band (`low`/`high`) on `sources`,
    from the detector's value checks (`Detector.value_checks()`); infinite bounds are left out."""
    out: Limits = {}
    for source, channel, check in checks:
        if source not in sources:
            continue
        kind = getattr(check, "kind", "")
        keys: Mapping[str, str] = {"limits": "min", "baseline": "low"}
        if kind not in keys:
            continue
        low, high = getattr(check, "low", -math.inf), getattr(check, "high", math.inf)
        entry = out.setdefault(channel, {})
        for key, value in ((keys[kind], low), ("max" if kind == "limits" else "high", high)):
            if isinstance(value, float) and math.isfinite(value):
                entry[key] = value
    return {channel: entry for channel, entry in out.items() if entry}


class PlotHandler:
    """Outbox job `evidence.plot`, payload `{csv, json, png}`: draws the PNG (a child process, see
    evidence/plot.py) before the upload that sends it. Never fails: a picture that cannot be drawn is
    left out of the upload (a missing file), the evidence goes on without it, and the comment that
    presents the evidence says why (`not_drawn`, `plot_missing_note`).

    While the agent stops (`stop_deadline()`, monotonic, the drain's end), the picture is still drawn if
    it can be before that end with STOP_RESERVE_S left for the upload and the comment after it: an
    incident closed by the stop is the one most likely to be looked at. One that cannot is left out."""

    def __init__(self, stop_deadline: Callable[[], float | None] = lambda: None) -> None:
        self.stop_deadline = stop_deadline

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        payload = job.payload
        png = Path(str(payload["png"]))
        if await asyncio.to_thread(png.is_file):  # drawn by an attempt a restart cut short
            return {"png": str(png)}
        timeout = PLOT_TIMEOUT_S
        deadline = self.stop_deadline()
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic() - STOP_RESERVE_S)
            if timeout < MIN_PLOT_S:
                log.warning(
                    "evidence_plot_skipped", png=png.name, reason="the agent is stopping", left_s=timeout
                )
                return {"png": None, "not_drawn": "the agent was stopping, with no time left to draw it"}
        drawn = await render_plot_async(
            Path(str(payload["csv"])), Path(str(payload["json"])), png, within_s=timeout
        )
        if drawn is None:
            return {"png": None, "not_drawn": "it could not be drawn (the agent's log says why)"}
        return {"png": str(drawn)}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None  # drawing again is the look-up: deliver is idempotent


def plot_missing_note(deps: Mapping[int, Json]) -> str | None:
    """Added to the comment whose upload went without its plot (a plot job among the comment's deps
    answered `not_drawn`): a missing picture is said, never silent."""
    reasons = [str(r["not_drawn"]) for r in deps.values() if r.get("not_drawn")]
    return f"The plot (PNG) is not attached: {reasons[0]}." if reasons else None
