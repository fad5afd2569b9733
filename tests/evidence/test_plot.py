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
