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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.evidence import EvidenceWindow
from edge_agent.evidence.plot import render_plot_async
from edge_agent.evidence.writer import write_evidence_async
from edge_agent.frames import Frame
from edge_agent.incidents import Incident
from edge_agent.logs import get_logger
from edge_agent.outbox import Job, Json
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

KIND_PLOT = "evidence.plot"

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
    left out of the upload (a missing file), and the evidence goes on without it. While the agent
    stops (`skip()`), no picture is drawn: the data must fit the stop's drain deadline, a picture is
    worth less than the evidence it shows."""

    def __init__(self, skip: Callable[[], bool] = lambda: False) -> None:
        self.skip = skip

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        payload = job.payload
        png = Path(str(payload["png"]))
        if await asyncio.to_thread(png.is_file):  # drawn by an attempt a restart cut short
            return {"png": str(png)}
        if self.skip():
            log.info("evidence_plot_skipped", png=png.name, reason="the agent is stopping")
            return {"png": None}
        drawn = await render_plot_async(Path(str(payload["csv"])), Path(str(payload["json"])), png)
        return {"png": None if drawn is None else str(drawn)}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None  # drawing again is the look-up: deliver is idempotent
