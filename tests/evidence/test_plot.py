"""The plot in every issue (issue 13 point 2): drawn from the evidence files in a child process, a PNG
that decodes, of the documented size, with the channels involved; a failure is a missing picture."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image

from edge_agent.evidence import write_evidence
from edge_agent.evidence.plot import MAX_PANELS, plot_size, render_plot_async
from edge_agent.frames import Frame

WALL0 = 1_780_000_000.0


def _evidence(tmp_path: Path, channels: int = 3) -> tuple[Path, Path]:
    frames = []
    for i in range(300):
        values = {
            f"ch{c}": math.sin(i / 20 + c) + (4.0 if c == 0 and 100 <= i < 150 else 0.0)
            for c in range(channels)
        }
        frames.append(Frame("bench", 100.0 + i * 0.1, WALL0 + i * 0.1, values, float(i * 100)))
    summary = {
        "id": "inc-1", "kind": "incident", "title": "[bench] ch0 above 3 +1 more", "started_mono": 110.0,
        "ended_mono": 115.0, "limits": {"ch0": {"max": 3.0}, "ch1": {"low": -1.5, "high": 1.5}},
        "steps": [{"name": "load_test", "start_s": -5.0, "end_s": 12.0}],
        "members": [
            {"channel": "ch0", "started_mono": 110.0, "ended_mono": 115.0, "peak_mono": 112.0,
             "peak_value": 5.0},
            {"channel": "ch1", "started_mono": 111.0, "ended_mono": None, "peak_mono": 111.5,
             "peak_value": 1.9},
        ],
    }  # fmt: skip
    files = write_evidence(tmp_path, "inc-1", summary, frames, t0=110.0)
    return files.csv_path, files.json_path


async def test_a_png_of_the_documented_size_that_decodes(tmp_path: Path) -> None:
    csv_path, json_path = _evidence(tmp_path)
    png = await render_plot_async(csv_path, json_path, tmp_path / "inc-1.png")
    assert png is not None
    image = matplotlib.image.imread(png)
    width, height = plot_size(3)
    assert image.shape[:2] == (height, width)
    assert (png.stat().st_mode & 0o777) == 0o600  # written like every state file
    assert float(image.std()) > 0.05  # a drawing, not a blank canvas


async def test_many_channels_are_capped_at_the_panel_limit(tmp_path: Path) -> None:
    csv_path, json_path = _evidence(tmp_path, channels=MAX_PANELS + 5)
    png = await render_plot_async(csv_path, json_path, tmp_path / "many.png")
    assert png is not None
    assert matplotlib.image.imread(png).shape[:2] == (plot_size(MAX_PANELS)[1], plot_size(MAX_PANELS)[0])


async def test_a_plot_that_cannot_be_drawn_is_none_and_no_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    csv_path, _ = _evidence(tmp_path)
    assert await render_plot_async(csv_path, broken, tmp_path / "broken.png") is None
    assert not (tmp_path / "broken.png").exists()


def test_the_envelope_keeps_every_bucket_extreme_and_is_bounded() -> None:
    from edge_agent.evidence.plot import envelope

    xs = [i * 0.001 for i in range(100_000)]
    ys = [math.sin(i / 300) for i in range(100_000)]
    ys[31_337] = 50.0  # a one-sample spike
    ys[77_777] = -50.0
    ex, ey = envelope(xs, ys, 1000)
    assert len(ex) <= 1000 and list(ex) == sorted(ex)
    assert max(ey) == 50.0 and min(ey) == -50.0
    assert list(envelope(xs[:10], ys[:10], 1000)[1]) == ys[:10]  # short traces are drawn as they are


def _run_evidence(tmp_path: Path) -> tuple[Path, Path]:
    """Evidence as the demo writes it: 5 s before the incident to 3 s after, within a run whose steps
    began half a minute before (power_on at -33 s), one step ending as the next starts."""
    frames = [
        Frame("bench", 105.0 + i * 0.01, WALL0 + i * 0.01, {"vibration_g": math.sin(i / 10)}, float(i))
        for i in range(801)
    ]  # offsets -5 .. +3 s from the incident's start (110)
    summary = {
        "id": "inc-2", "kind": "incident", "title": "[bench] vibration_g above 0.5", "started_mono": 110.0,
        "ended_mono": 112.0, "limits": {"vibration_g": {"max": 0.5}},
        "steps": [
            {"name": "power_on", "start_s": -33.0, "end_s": -21.0},
            {"name": "warm_up", "start_s": -21.0, "end_s": -2.0},
            {"name": "load_test", "start_s": -2.0, "end_s": None},
        ],
        "members": [{"channel": "vibration_g", "started_mono": 110.0, "ended_mono": 112.0,
                     "peak_mono": 111.0, "peak_value": 1.0}],
    }  # fmt: skip
    files = write_evidence(tmp_path, "inc-2", summary, frames, t0=110.0)
    return files.csv_path, files.json_path


def test_the_time_axis_is_the_evidence_and_steps_are_cut_to_it(tmp_path: Path) -> None:
    """The axis spans the data (-5..+3 s with a small margin), not the run's first step (-33 s); a step
    wholly before the data is not drawn; the boundary inside is drawn once (warm_up's end is load_test's
    start); the steps that show are named."""
    from edge_agent.evidence.plot import render_plot

    csv_path, json_path = _run_evidence(tmp_path)
    drawn = render_plot(csv_path, json_path, tmp_path / "inc-2.png")
    low, high = drawn.x_limits
    assert -5.5 < low <= -5.0 and 3.0 <= high < 3.5, drawn.x_limits
    assert drawn.step_lines == [-2.0]
    assert drawn.step_labels == ["warm_up", "load_test"]
    assert drawn.size == plot_size(1)
    assert matplotlib.image.imread(tmp_path / "inc-2.png").shape[:2] == (plot_size(1)[1], plot_size(1)[0])


def test_a_step_too_narrow_for_its_name_is_a_line_without_a_name() -> None:
    from edge_agent.evidence.plot import step_marks

    steps = [
        {"name": "a_step_with_a_long_name", "start_s": 0.0, "end_s": 0.1},
        {"name": "next", "start_s": 0.1, "end_s": 20.0},
        {"name": "after", "start_s": 30.0, "end_s": None},
    ]
    marks = step_marks(steps, -1.0, 11.0)
    assert marks.lines == [0.0, 0.1]
    assert marks.labels == [(0.1, "next")]
