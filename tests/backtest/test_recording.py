"""The recording reader decodes every line as the live decoder does, whichever path it takes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.backtest.recording import RecordingReader, parse_fields
from edge_agent.backtest.timeline import DeviceTimeline
from edge_agent.config import SerialPort
from edge_agent.frames import Frame, StepMarker
from edge_agent.serial.decoders import make_decoder

LONG = "1," + "9" * 5000 + ",3"
CASES: dict[str, tuple[dict[str, Any], bytes]] = {
    "crlf, blank and over-long lines, header repeat": (
        {},
        b"t_ms,a,b\r\n0,1,2\r\n\r\n10,1_0,+nan\r\n"
        + LONG.encode()
        + b"\r\n20, 3 ,4\r\nt_ms,a,b\r\n30,5,6\r\n",
    ),
    "no trailing newline, # inside a row, non-ASCII": (
        {},
        b"t_ms,a,b\n0,1,2\n10,1#2,3\n20,\xc2\xb2,3\n30,\xff,3\n40,Infinity,-0\n50,1e500,7",
    ),
    "markers with a regex the batch path cannot pre-filter": (
        {"marker_regex": r"(?P<edge>START|END)\s+(?P<name>\w+)"},
        b"t_ms,a,b\n0,1,2\nSTART s1\n10,1,2\n1,2,START x\nEND s1\n20,3,4\n",
    ),
    "columns from the config, ';' delimiter, a header line that is then bad data": (
        {"columns": ["t_ms", "a", "b"], "delimiter": ";"},
        b"t_ms;a;b\n0;1;2\n10;3\n20;4;5;6\n30;7;8\n",
    ),
    "jsonl": (
        {"format": "jsonl"},
        b'{"t_ms": 0, "a": 1, "b": 2}\n{"a": 3}\nnot json\n{"t_ms": "x", "a": 1}\n#STEP START s\n'
        b'{"t_ms": 20, "a": null, "b": "7"}\n[1]\n',
    ),
    "kv": ({"format": "kv"}, b"t_ms=0 a=1 b=2\nt_ms=10 a=3\nbad\nt_ms=20 a=x\n"),
    # The device restarts with other columns mid-stream (csv_decoder: header change on the fly).
    "a new header of another width, a row of the old width after it, then the old header back": (
        {},
        b"t_ms,a\n0,1\n10,2\nt_ms,b,a\n20,3,4\n25,9\n30,5,6\nt_ms,a\n40,7\n50,8\n",
    ),
    "a banner of header shape, then rows of the old width: no header change": (
        {},
        b"t_ms,a\n0,1\nboot,ok,now\n10,2\n20,3,4\n30,5\n",
    ),
    "a new header without the time column": ({}, b"t_ms,a\n0,1\na,b,c\n2,3,4\n5,6,7\n"),
}


def live_lines(port: SerialPort, data: bytes) -> tuple[list[tuple[int, Frame | StepMarker]], dict[str, int]]:
    decoder = make_decoder(port)
    out = []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, 1):
        for item in decoder.feed(raw + b"\n", 0.0, 0.0):
            out.append((number, item))
    return out, decoder.stats.as_dict()


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("case", list(CASES))
def test_frames_markers_and_counts_are_the_live_decoders(tmp_path: Path, case: str, chunk: int) -> None:
    overrides, data = CASES[case]
    port = SerialPort.model_validate({"name": "bench", "url": "loop://", "device_time": "t_ms", **overrides})
    path = tmp_path / "rec"
    path.write_bytes(data)
    reader = RecordingReader(path, port, ["a", "b"], scale=1e-3, chunk_bytes=chunk)
    blocks = list(reader.blocks())

    live, stats = live_lines(port, data)
    frames = [item for _, item in live if isinstance(item, Frame)]
    markers = [(number, item) for number, item in live if isinstance(item, StepMarker)]
    got_a = np.concatenate([b.values["a"] for b in blocks])
    got_b = np.concatenate([b.values["b"] for b in blocks])
    got_device = np.concatenate([b.device for b in blocks])
    want_a = [f.values.get("a", math.nan) for f in frames]
    want_b = [f.values.get("b", math.nan) for f in frames]
    want_device = [math.nan if f.device_time is None else f.device_time for f in frames]
    np.testing.assert_array_equal(got_a, np.array(want_a))
    np.testing.assert_array_equal(got_b, np.array(want_b))
    np.testing.assert_array_equal(got_device, np.array(want_device))
    assert reader.stats == stats
    assert [(m.line, m.marker.edge, m.marker.name) for b in blocks for m in b.markers] == [
        (number, m.edge, m.name) for number, m in markers
    ]


def test_rows_count_data_lines_only_bad_ones_included(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    path.write_bytes(
        b"# made by the rig\nt_ms,a\n\n#STEP START s\n0,1\nx,2\n10,3\nt_ms,a\n20,4\n#STEP END s\n30,5\n"
    )
    port = SerialPort(name="bench", url="loop://", device_time="t_ms")
    reader = RecordingReader(path, port, ["a"], scale=1e-3)
    blocks = list(reader.blocks())
    assert np.concatenate([b.rows for b in blocks]).tolist() == [1, 3, 4, 5]  # "x,2" is row 2, skipped
    assert reader.data_rows == 5 and reader.lines == 11
    placed = [(m.line, m.before, m.marker.name) for b in blocks for m in b.markers]
    assert placed == [(4, 0, "s"), (10, 3, "s")]


def test_the_fast_parse_takes_only_what_float_takes() -> None:
    good = parse_fields(b"1,2.5\n-0,1e3\n+nan,Infinity", b",", 3, 2)
    assert good is not None
    assert good.tolist()[:2] == [[1.0, 2.5], [-0.0, 1000.0]] and math.isnan(good[2, 0])
    underscores = parse_fields(b"1_0,2", b",", 1, 2)  # numpy refuses it, float() takes it: float() decides
    assert underscores is not None and underscores.tolist() == [[10.0, 2.0]]
    for bad in (b"1,x", b"1,", b"1,2#3", b'1,"2"', b"1,1.2.3", b"1,\xc2\xb2"):
        assert parse_fields(bad, b",", 1, 2) is None, bad


def test_the_timeline_holds_through_steps_back_and_missing_times() -> None:
    timeline = DeviceTimeline(1e-3)
    t = timeline.stamp(np.array([math.nan, 1000.0, 1010.0, 990.0, math.nan, 1000.0, 1030.0]))
    assert t.tolist() == pytest.approx([0.0, 0.0, 0.01, 0.01, 0.01, 0.02, 0.05])
    assert (timeline.steps_back, timeline.missing) == (1, 2)
    more = timeline.stamp(np.array([1040.0, 1050.0]))  # a regular block: vectorised, continuing
    assert more.tolist() == pytest.approx([0.06, 0.07])
