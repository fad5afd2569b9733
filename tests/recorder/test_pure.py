"""The recorder's pure parts: the segmenter's cuts, the CSV rows, the gzip-member format and its
recovery after a cut-off write, and the disk budget's order."""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, FrameBatch
from edge_agent.recorder import csvgz, device_text, retention, store
from edge_agent.recorder.model import SegmentInfo, StepRef, open_path, sidecar_path
from edge_agent.recorder.segmenter import Close, Open, Rows, RunChange, Segmenter, StepChange
from edge_agent.serial.decoders import make_decoder
from edge_agent.state_files import write_json


def frame(t: float, source: str = "a", **values: float) -> Frame:
    return Frame(source, t, 1_700_000_000.0 + t, values or {"x": t}, None)


def kinds(actions: list[object]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, Open):
            out.append(f"open{a.seq}:{a.source}:{a.step.title if a.step else '-'}")
        elif isinstance(a, Close):
            out.append(f"close{a.seq}:{a.reason}")
        elif isinstance(a, Rows):
            out.append(f"rows{a.seq}x{len(a.frames)}")
        elif isinstance(a, RunChange):
            out.append(f"run:{a.run_key}")
    return out


def test_segments_are_cut_at_step_changes_per_source() -> None:
    seg = Segmenter(max_bytes=10**9, max_seconds=3600)
    step = StepRef("s1", "card")
    actions = seg.route(
        [
            frame(0),
            frame(0.1, "b"),
            StepChange(step),
            frame(0.2),
            frame(0.3, "b"),
            StepChange(step),
            frame(0.4),
        ]
    )
    assert kinds(actions) == [
        "open1:a:-", "rows1x1", "open2:b:-", "rows2x1", "close1:step", "close2:step",
        "open3:a:s1", "rows3x1", "open4:b:s1", "rows4x1", "rows3x1",
    ]  # fmt: skip
    assert kinds(seg.route([StepChange(None)])) == ["close3:step", "close4:step"]


def test_a_run_change_closes_every_segment_even_between_steps() -> None:
    """`POST /runs/end` between steps: the step (none) is the same, the run is not."""
    seg = Segmenter(max_bytes=10**9, max_seconds=3600)
    actions = seg.route([frame(0), frame(0.1, "b"), RunChange("r.2", Path("r.2")), frame(0.2)])
    assert kinds(actions) == [
        "open1:a:-", "rows1x1", "open2:b:-", "rows2x1", "close1:run", "close2:run", "run:r.2",
        "open3:a:-", "rows3x1",
    ]  # fmt: skip


def test_size_time_and_channel_rotation() -> None:
    seg = Segmenter(max_bytes=1000, max_seconds=10)
    seg.route([frame(0, x=1.0, y=2.0)])
    seg.written(1, 999)
    assert kinds(seg.close_full()) == []
    seg.written(1, 1000)
    assert kinds(seg.route([frame(1, x=1.0, y=2.0)])) == ["close1:size", "open2:a:-", "rows2x1"]
    assert kinds(seg.route([frame(2, x=1.0)])) == ["rows2x1"]  # a missing channel: same file
    assert kinds(seg.route([frame(3, x=1.0, z=3.0)])) == ["close2:channels", "open3:a:-", "rows3x1"]
    assert kinds(seg.route([frame(13.5, x=1.0, z=3.0)])) == ["close3:time", "open4:a:-", "rows4x1"]
    assert kinds(seg.expire(1_700_000_000.0 + 23.5)) == ["close4:time"]


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1, max_size=6))
def test_values_read_back_as_the_same_floats(values: list[float]) -> None:
    names = [f"c{i}" for i in range(len(values))]
    f = Frame("a", 5.25, 1_700_000_000.123, dict(zip(names, values, strict=True)), 42.0)
    (row,) = _rows(csvgz.RowFormatter(names, True, 5.0).format([f]))
    assert row[:3] == ["2023-11-14 22:13:20.123", "0.250000", "42.0"]
    back = [float(v) for v in row[3:]]
    for a, b in zip(back, values, strict=True):
        assert (math.isnan(a) and math.isnan(b)) or a == b


def test_a_missing_channel_is_an_empty_cell() -> None:
    f = Frame("a", 1.0, 1.0, {"x": 1.5}, None)
    assert _rows(csvgz.RowFormatter(["x", "y"], False, 1.0).format([f])) == [
        ["1970-01-01 00:00:01.000", "0.000000", "1.5", ""]
    ]


def test_scan_keeps_complete_members_and_recover_finishes_the_file(tmp_path: Path) -> None:
    final = tmp_path / "000001_a_s1.csv.gz"
    part = open_path(final)
    members = [csvgz.member("h1,h2\n", 1)] + [csvgz.member(f"{i},{i}\n" * 100, 1) for i in range(3)]
    whole = b"".join(members)
    cut = csvgz.member("9,9\n" * 100, 1)
    part.write_bytes(whole + cut[: len(cut) // 2])  # a SIGKILL in the middle of the fourth write
    assert csvgz.scan(part) == (len(whole), 301)
    info = SegmentInfo("run", 1, "a", "s1", "c", final.name, ["h1", "h2"], None, 1.0)
    write_json(sidecar_path(final), info.as_json())
    recovered = store.recover(final, info)
    assert recovered is not None and recovered.frames == 300 and recovered.recovered
    assert not part.exists() and final.read_bytes() == whole
    assert len(list(csvgz.iter_rows(final))) == 301
    assert gzip.decompress(final.read_bytes()).count(b"\n") == 301
    (tmp_path / "garbage.gz").write_bytes(whole + b"not gzip at all")
    assert csvgz.scan(tmp_path / "garbage.gz")[0] == len(whole)


def _seg(seq: int, size: int, uploaded: bool) -> SegmentInfo:
    info = SegmentInfo("r", seq, "a", None, None, f"{seq}.csv.gz", [], None, float(seq), bytes=size)
    info.s3_url = f"s3://b/{seq}" if uploaded else None
    return info


def test_budget_deletes_uploaded_segments_first_then_the_oldest() -> None:
    segs = [_seg(1, 100, False), _seg(2, 100, True), _seg(3, 100, False), _seg(4, 100, True)]
    chosen = retention.choose_deletions(segs, 400, 250, uploads=True)
    assert [(s.seq, r) for s, r in chosen] == [(2, "uploaded"), (4, "uploaded")]
    chosen = retention.choose_deletions(segs, 400, 150, uploads=True)
    assert [(s.seq, r) for s, r in chosen] == [(2, "uploaded"), (4, "uploaded"), (1, "not_uploaded")]
    assert retention.choose_deletions(segs, 400, 400, uploads=True) == []
    local = retention.choose_deletions([_seg(1, 100, False), _seg(2, 100, False)], 200, 150, uploads=False)
    assert [(s.seq, r) for s, r in local] == [(1, "local_only")]


# -- a packed read written as the device spelled it -------------------------------------------------

_PLAIN_DECIMAL = st.from_regex(r"-?(?:[0-9]{1,22}\.[0-9]{0,22}|\.[0-9]{1,22})", fullmatch=True)
_PLAIN_INTEGER = st.from_regex(r"-?[0-9]{1,25}", fullmatch=True)
_OTHER = st.sampled_from(["1e3", "-2.5E-7", "nan", "inf", "-Infinity", "+4.0", "1_000.5", "NaN"])
_BLANK = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def _reads(draw: st.DrawFn) -> tuple[str, str | None, list[list[str]], str]:
    """A delimiter, the device-time column (or None), rows of fields, and the line ending."""
    delimiter = draw(st.sampled_from([",", ";", "\t", " "]))
    width = draw(st.integers(1, 5))
    kinds = [draw(st.sampled_from(["decimal", "integer", "mixed"])) for _ in range(width)]
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        row = []
        for kind in kinds:
            if kind == "decimal":
                field = draw(_PLAIN_DECIMAL)
            elif kind == "integer":
                field = draw(_PLAIN_INTEGER)
            else:
                field = draw(st.one_of(_PLAIN_DECIMAL, _PLAIN_INTEGER, _OTHER))
            pad = "" if delimiter in " \t" else draw(_BLANK)
            row.append(pad + field + ("" if delimiter in " \t" else draw(_BLANK)))
        rows.append(row)
    device = draw(st.sampled_from([None, *range(width)])) if width > 1 else None
    return delimiter, None if device is None else f"c{device}_s", rows, draw(st.sampled_from(["\n", "\r\n"]))


def _packed(delimiter: str, device: str | None, rows: list[list[str]], ending: str) -> FrameBatch:
    """The rows through the real CSV decoder's packed path (a first read sets its clock up)."""
    columns = [f"c{i}_s" for i in range(len(rows[0]))]
    port = SerialPort(name="a", url="loop://", columns=columns, delimiter=delimiter, device_time=device)
    decoder = make_decoder(port)
    data = "".join(delimiter.join(row) + ending for row in rows).encode()
    decoder.feed_packed(data, 0.5, 1.7e9)
    (batch,) = decoder.feed_packed(data, 1.0, 1.7e9)
    assert isinstance(batch, FrameBatch) and batch.text is not None
    return batch


def _cells(text: str) -> list[list[float]]:
    return [[float(cell) for cell in row[1:]] for row in _rows(text)]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


@given(_reads(), st.booleans())
def test_a_read_written_as_the_device_spelled_it_reads_back_as_the_same_floats(
    read: tuple[str, str | None, list[list[str]], str], record_device_time: bool
) -> None:
    """Whatever the fields (plain decimals and integers of any length, padded, after a CRLF, other
    delimiters; exponents, nan, inf, a `+`, a `_` falling back to repr), the rows read back with float()
    and with pandas as the very floats the decoder made, and as the rows repr writes."""
    batch = _packed(*read)
    has_device = record_device_time and batch.device_times is not None
    names = list(batch.names)
    text = csvgz.RowFormatter(names, has_device, 0.25).format([batch])
    text_of = batch.text
    batch.text = None
    by_repr = csvgz.RowFormatter(names, has_device, 0.25).format([batch])
    batch.text = text_of
    assert [row[:2] for row in _rows(text)] == [row[:2] for row in _rows(by_repr)]
    expected = _cells(by_repr)
    back = _cells(text)
    assert len(back) == len(expected) == len(batch)
    for got, want in zip(back, expected, strict=True):
        assert len(got) == len(want) and all(map(_same, got, want)), (got, want, text)
    for row, got in enumerate(back):
        values = batch.values[row * batch.width : (row + 1) * batch.width]
        want = [batch.monos[row] - 0.25, *([batch.device_times[row]] if has_device else []), *values]  # type: ignore[index]
        assert all(map(_same, got[1:], want[1:]))
    header = ",".join(csvgz.header(names, "dev" if has_device else None))
    table = pd.read_csv(io.StringIO(header + "\n" + text))
    for name in table.columns[1:]:
        assert table[name].dtype == "float64", (name, text)  # an integer column too
    for got, want in zip(table.iloc[:, 2:].itertuples(index=False), expected, strict=True):
        assert all(map(_same, got, want[1:])), (tuple(got), want, text)


def test_plain_numbers_are_written_as_sent_and_others_from_the_float() -> None:
    """The fast path is taken when it may be (the device's `1.2500` stays, an integer gets `.0`, blanks
    and the `\\r` go), and not when a field is not a plain number (then the row is repr's)."""
    batch = _packed(";", "c0_s", [[" 0042", "1.2500 ", "-0.000"], ["43", ".5", "7."]], "\r\n")
    text = csvgz.RowFormatter(list(batch.names), True, 0.0).format([batch])
    assert [row[2:] for row in _rows(text)] == [["0042.0", "1.2500", "-0.000"], ["43.0", ".5", "7."]]
    batch = _packed(",", None, [["1.2500", "1e3"], ["2.0", "3.0"]], "\n")
    text = csvgz.RowFormatter(list(batch.names), False, 0.0).format([batch])
    assert [row[2:] for row in _rows(text)] == [["1.25", "1000.0"], ["2.0", "3.0"]]
    batch = _packed(",", None, [["1.5", "2"], ["2.0", "3.5"]], "\n")  # column c1: an integer and a decimal
    text = csvgz.RowFormatter(list(batch.names), False, 0.0).format([batch])
    assert [row[2:] for row in _rows(text)] == [["1.5", "2.0"], ["2.0", "3.5"]]


@given(_reads(), st.booleans())
def test_the_lines_way_and_the_fields_way_write_the_same_text(
    read: tuple[str, str | None, list[list[str]], str], record_device_time: bool
) -> None:
    """A read whose rows the recorder takes line by line (fields in the device's order, integers only in
    the first or last column: no split into fields) gets the very text the field by field way writes."""
    batch = _packed(*read)
    text = batch.text
    assert text is not None
    has_device = record_device_time and batch.device_times is not None
    written = device_text.rows_from_text(text, batch.monos, 0.25, "2026-01-02 03:04:05.678", has_device)
    plain = text.data.translate(None, b" \t\r\x0b\x0c".translate(None, text.delimiter))
    if plain.translate(None, b"0123456789.-\n" + text.delimiter):
        assert written is None  # an exponent, nan, inf, a `+`: written from the floats
        return
    order: list[int | None] = [f for f in range(text.width) if f != text.time_index]
    if has_device:
        order.insert(0, text.time_index)
    ts = [mono - 0.25 for mono in batch.monos]
    by_fields = device_text._field_rows(
        plain, text.delimiter, text.width, order, None, "2026-01-02 03:04:05.678", ts
    )
    assert written == by_fields
