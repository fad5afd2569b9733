"""A picture of the evidence (issue 13 point 2): one PNG per evidence file, uploaded beside its CSV.

Every channel involved on one time axis (one panel per channel, the time axis shared), its limits or
learned band drawn as dashed lines, the incident's span shaded and each member's own span shaded on its
channel, each member's peak marked, and the test-step boundaries drawn as labelled vertical lines.
The time axis is the evidence's own span (`data_span`): the steps are drawn where they overlap it, cut
at its ends (`step_marks`), never widening it to a step that began long before.

The picture is made from the evidence files themselves (the CSV and the JSON summary the reporter
already wrote), in a separate process (`python -m edge_agent.evidence.plot CSV JSON PNG`): matplotlib
costs ~40 MB of memory and a second of CPU to import, which the agent's own process never pays (its
RSS, idle or not, does not grow), and a plot that fails or hangs (a broken font cache, a huge CSV) is a
missing picture, never a missing issue. `render_plot_async` starts it with a deadline.

Size: `WIDTH_PX` wide, `PANEL_PX` per channel panel plus `MARGIN_PX`, at most `MAX_PANELS` panels (the
channels of the members first, then the others of their sources); at 100 dpi.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger
from edge_agent.state_files import write_atomic

log = get_logger(__name__)

WIDTH_PX = 1600
PANEL_PX = 220
MARGIN_PX = 160
MAX_PANELS = 12
DPI = 100
# A trace is drawn from at most this many points: each pixel column's min and max (an envelope that
# keeps every spike), so a 3 Mbaud incident draws as fast as a short one.
MAX_POINTS = 2 * WIDTH_PX
PLOT_TIMEOUT_S = 60.0
FIXED_COLUMNS = ("wall_time", "offset_s", "source", "device_time")
X_MARGIN = 0.02  # of the data's time span, either side
# A step's name is written where its visible part is wide enough for it: this much of the axis a
# character (8 pt text is ~6 px a character; the axis is ~80 % of WIDTH_PX).
LABEL_CHAR = 6.0 / (0.8 * WIDTH_PX)
SAME_EDGE = 0.002  # step edges closer than this (of the axis) are one line: one step's end, the next's start
STEP_COLOR = "#548235"


def plot_size(panels: int) -> tuple[int, int]:
    """The PNG's size in pixels for `panels` channel panels."""
    shown = max(1, min(panels, MAX_PANELS))
    return WIDTH_PX, MARGIN_PX + PANEL_PX * shown


def _members(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    members = summary.get("members")
    return list(members) if isinstance(members, list) else [summary]


def _channels(columns: Sequence[str], summary: Mapping[str, Any]) -> list[str]:
    data = [c for c in columns if c not in FIXED_COLUMNS]
    involved = [str(m.get("channel")) for m in _members(summary) if m.get("channel") in data]
    ordered = list(dict.fromkeys([*involved, *data]))
    return ordered[:MAX_PANELS]


def _read_csv(path: Path) -> tuple[list[str], dict[str, list[float]], list[float]]:
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        header = next(reader, [])
        columns: dict[str, list[float]] = {name: [] for name in header if name not in FIXED_COLUMNS}
        offsets: list[float] = []
        index = {name: i for i, name in enumerate(header)}
        for row in reader:
            try:
                offsets.append(float(row[index["offset_s"]]))
            except (KeyError, IndexError, ValueError):
                continue
            for name, values in columns.items():
                cell = row[index[name]] if index[name] < len(row) else ""
                try:
                    values.append(float(cell) if cell else math.nan)
                except ValueError:
                    values.append(math.nan)
    return header, columns, offsets


def envelope(xs: Sequence[float], ys: Sequence[float], points: int) -> tuple[Any, Any]:
    """At most `points` points: the min and the max of each of `points // 2` equal buckets, in time
    order within the bucket (what a pixel column would show anyway; spikes survive)."""
    import numpy as np

    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    buckets = max(1, points // 2)
    if len(x) <= points:
        return x, y
    edges = np.linspace(0, len(x), buckets + 1).astype(int)
    out_x: list[float] = []
    out_y: list[float] = []
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        segment = y[lo:hi]
        if np.all(np.isnan(segment)):
            continue
        a, b = sorted((lo + int(np.nanargmin(segment)), lo + int(np.nanargmax(segment))))
        out_x += [float(x[a]), float(x[b])]
        out_y += [float(y[a]), float(y[b])]
    return np.asarray(out_x), np.asarray(out_y)


def _offset(summary: Mapping[str, Any], mono: Any) -> float | None:
    start = summary.get("started_mono")
    if isinstance(mono, int | float) and isinstance(start, int | float) and math.isfinite(mono):
        return float(mono) - float(start)
    return None


@dataclass(frozen=True, slots=True)
class Drawn:
    """What `render_plot` drew, read back from the figure: the PNG's size in pixels, the time axis's
    limits, and the step boundaries and step names on it (the same on every panel)."""

    size: tuple[int, int]
    x_limits: tuple[float, float]
    step_lines: list[float]
    step_labels: list[str]


@dataclass(frozen=True, slots=True)
class StepMarks:
    lines: list[float]  # step boundaries inside the axis, each drawn once
    labels: list[tuple[float, str]]  # (where, name) of the steps with room for their name


def data_span(offsets: Sequence[float]) -> tuple[float, float]:
    """The time axis: the evidence's own frames, with `X_MARGIN` of their span either side. Steps and
    spans reaching further are cut at it (a run's first step may be minutes before the evidence)."""
    finite = [x for x in offsets if math.isfinite(x)]
    if not finite:
        return -1.0, 1.0
    low, high = min(finite), max(finite)
    margin = max(high - low, 1e-3) * X_MARGIN
    return low - margin, high + margin


def step_marks(steps: Sequence[Mapping[str, Any]], low: float, high: float) -> StepMarks:
    """The steps overlapping [low, high]: their boundaries inside it (one line where a step ends as the
    next starts), and each name at the start of its visible part where that part is wide enough for
    it (`LABEL_CHAR` of the axis a character)."""
    lines: list[float] = []
    labels: list[tuple[float, str]] = []
    tolerance = (high - low) * SAME_EDGE
    for step in steps:
        start, end = step.get("start_s"), step.get("end_s")
        if not (isinstance(start, int | float) and math.isfinite(start)):
            continue
        stop = float(end) if isinstance(end, int | float) and math.isfinite(end) else math.inf
        if stop < low or start > high:
            continue  # entirely outside the evidence
        for edge in (float(start), stop):
            if low <= edge <= high and all(abs(edge - seen) > tolerance for seen in lines):
                lines.append(edge)
        shown_from, shown_to = max(float(start), low), min(stop, high)
        name = str(step.get("name"))
        if shown_to - shown_from >= (high - low) * LABEL_CHAR * (len(name) + 2):
            labels.append((shown_from, name))
    return StepMarks(sorted(lines), labels)


def render_plot(csv_path: Path, json_path: Path, png_path: Path) -> Drawn:
    """Draw the PNG (blocking, imports matplotlib), written atomically (state_files); returns what was
    drawn (read back from the figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    document = json.loads(json_path.read_text(encoding="utf-8"))
    summary: Mapping[str, Any] = document.get("incident") or document.get("anomaly") or {}
    header, columns, offsets = _read_csv(csv_path)
    channels = _channels(header, summary)
    width, height = plot_size(len(channels))
    figure, axes = plt.subplots(
        max(1, len(channels)), 1, sharex=True, figsize=(width / DPI, height / DPI), dpi=DPI, squeeze=False
    )
    limits: Mapping[str, Any] = summary.get("limits") or {}
    end = _offset(summary, summary.get("ended_mono"))
    span_end = end if end is not None else (offsets[-1] if offsets else 0.0)
    x_limits = data_span(offsets)
    marks = step_marks(summary.get("steps") or [], *x_limits)
    for axis, channel in zip(axes[:, 0], channels, strict=False):
        xs, ys = envelope(offsets, columns.get(channel, []), MAX_POINTS)
        axis.plot(xs, ys, linewidth=0.9, color="#1f4e79")
        axis.axvspan(0.0, span_end, color="#f4b183", alpha=0.25, label="incident")
        for key, style in (("min", "#c00000"), ("max", "#c00000"), ("low", "#7f7f7f"), ("high", "#7f7f7f")):
            value = (limits.get(channel) or {}).get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                axis.axhline(value, color=style, linestyle="--", linewidth=1.0)
        for member in _members(summary):
            if member.get("channel") != channel:
                continue
            start = _offset(summary, member.get("started_mono"))
            stop = _offset(summary, member.get("ended_mono"))
            if start is not None:
                axis.axvspan(start, stop if stop is not None else span_end, color="#c00000", alpha=0.12)
            peak = _offset(summary, member.get("peak_mono"))
            value = member.get("peak_value")
            if peak is not None and isinstance(value, int | float) and math.isfinite(value):
                axis.plot([peak], [value], marker="v", color="#c00000", markersize=7)
        for at in marks.lines:
            axis.axvline(at, color=STEP_COLOR, linewidth=1.0)
        for at, name in marks.labels:
            axis.text(at, 1.0, f" {name}", transform=axis.get_xaxis_transform(), va="top", fontsize=8,
                      color=STEP_COLOR, clip_on=True)  # fmt: skip
        axis.set_xlim(*x_limits)
        axis.set_ylabel(channel, fontsize=9)
        axis.grid(True, linewidth=0.3)
    axes[-1, 0].set_xlabel("seconds from the incident's start (the source's clock)")
    title = str(summary.get("title") or summary.get("description") or summary.get("id") or "evidence")
    figure.suptitle(title[:160], fontsize=10)
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=DPI)
    drawn = Drawn(
        (width, height),
        (float(axes[-1, 0].get_xlim()[0]), float(axes[-1, 0].get_xlim()[1])),
        sorted({float(line.get_xdata()[0]) for line in axes[0, 0].lines if line.get_color() == STEP_COLOR}),
        [text.get_text().strip() for text in axes[0, 0].texts],
    )
    plt.close(figure)
    write_atomic(png_path, image.getvalue())  # whole or nothing: the uploader never sees half a picture
    return drawn


async def render_plot_async(
    csv_path: Path, json_path: Path, png_path: Path, *, within_s: float = PLOT_TIMEOUT_S
) -> Path | None:
    """The PNG, drawn in a child process within `within_s` seconds; None (logged) if it could not be."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent.evidence.plot", str(csv_path), str(json_path), str(png_path),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), within_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        log.error("evidence_plot_failed", png=png_path.name, error=f"no picture within {within_s:g} s")
        return None
    if process.returncode != 0 or not await asyncio.to_thread(png_path.is_file):
        error = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        log.error("evidence_plot_failed", png=png_path.name, returncode=process.returncode, error=error[0])
        return None
    return png_path


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m edge_agent.evidence.plot CSV JSON PNG", file=sys.stderr)
        return 2
    csv_path, json_path, png_path = (Path(a) for a in argv)
    render_plot(csv_path, json_path, png_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
