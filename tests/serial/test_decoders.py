"""The sans-I/O decoders: every format, markers, and every skip reason counted."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from edge_agent.config import DEFAULT_MARKER_REGEX, SerialPort
from edge_agent.frames import Frame, FrameBatch, StepEdge, StepMarker, Verdict
from edge_agent.serial import make_decoder
from edge_agent.serial.decoders import CsvDecoder, LineDecoder
from edge_agent.serial.markers import literal_prefix

MONO, WALL = 10.0, 1_700_000_000.0


def port(**overrides: Any) -> SerialPort:
    return SerialPort(**{"name": "bench", "url": "loop://", **overrides})


def feed(decoder: LineDecoder, data: bytes) -> list[Frame | StepMarker]:
    """What decodes from one read at MONO. Each event's time is its place on the source timeline
    (spread over the read's arrival, or the device's clock: tests/serial/test_clock.py); it never goes
    back, and is set to MONO here so that these tests compare what was decoded."""
    events = decoder.feed(data, MONO, WALL)
    times = [event.mono for event in events]
    assert times == sorted(times)
    return [replace(event, mono=MONO) for event in events]


def frames_of(events: list[Frame | StepMarker]) -> list[Frame]:
    return [e for e in events if isinstance(e, Frame)]


# --- csv ---------------------------------------------------------------------------------------


def test_csv_header_line_gives_column_names_and_device_time_is_not_a_channel() -> None:
    decoder = make_decoder(port(device_time="t_ms"))
    events = feed(decoder, b"t_ms,supply_v,current_a\r\n100,12.01,0.5\r\n110,11.98,0.52\r\n")
    assert events == [
        Frame("bench", MONO, WALL, {"supply_v": 12.01, "current_a": 0.5}, 100.0),
        Frame("bench", MONO, WALL, {"supply_v": 11.98, "current_a": 0.52}, 110.0),
    ]
    assert decoder.stats.headers == 1 and decoder.stats.frames == 2 and decoder.stats.lines == 3


def test_csv_configured_columns_and_delimiter() -> None:
    decoder = make_decoder(port(columns=["a", "b", "c"], delimiter=";"))
    assert frames_of(feed(decoder, b"1;2;3\n-4.5;1e3;0\n")) == [
        Frame("bench", MONO, WALL, {"a": 1.0, "b": 2.0, "c": 3.0}),
        Frame("bench", MONO, WALL, {"a": -4.5, "b": 1000.0, "c": 0.0}),
    ]
    assert decoder.stats.headers == 0


def test_csv_nan_is_kept_for_the_windower_to_decide() -> None:
    decoder = make_decoder(port(columns=["a", "b"]))
    (frame,) = frames_of(feed(decoder, b"nan,1\n"))
    assert math.isnan(frame.values["a"]) and frame.values["b"] == 1.0


def test_csv_repeated_header_is_counted_not_an_error() -> None:
    decoder = make_decoder(port())
    feed(decoder, b"a,b\n1,2\na,b\n3,4\n")
    assert decoder.stats.headers == 2 and decoder.stats.frames == 2 and decoder.stats.skipped == {}


def test_csv_new_header_after_reset_replaces_the_old_one() -> None:
    decoder = make_decoder(port())
    feed(decoder, b"a,b\n1,2\n")
    decoder.reset()  # link dropped, device rebooted with another firmware
    events = feed(decoder, b"x,y,z\n1,2,3\n")
    assert isinstance(decoder, CsvDecoder) and decoder.columns == ("x", "y", "z")
    assert frames_of(events) == [Frame("bench", MONO, WALL, {"x": 1.0, "y": 2.0, "z": 3.0})]


def test_csv_after_reset_a_data_line_is_still_data() -> None:
    decoder = make_decoder(port())
    feed(decoder, b"a,b\n1,2\n")
    decoder.reset()
    assert frames_of(feed(decoder, b"3,4\n")) == [Frame("bench", MONO, WALL, {"a": 3.0, "b": 4.0})]


def test_csv_after_reset_a_row_of_another_width_is_no_header() -> None:
    """Only a line of names replaces the header after a reset, whatever its width; a row that does not
    fit is a wrong_columns skip, and the next header still takes over."""
    decoder = make_decoder(port())
    feed(decoder, b"a,b\n1,2\n")
    decoder.reset()
    assert frames_of(feed(decoder, b"3,4,5\n6,7\n")) == [Frame("bench", MONO, WALL, {"a": 6.0, "b": 7.0})]
    assert isinstance(decoder, CsvDecoder) and decoder.columns == ("a", "b")
    assert decoder.stats.skipped == {"wrong_columns": 1}
    decoder.reset()
    assert frames_of(feed(decoder, b"x,y,z\n3,4,5\n")) == [
        Frame("bench", MONO, WALL, {"x": 3.0, "y": 4.0, "z": 5.0})
    ]


def test_csv_a_new_header_of_another_width_without_a_reset_is_taken_by_the_row_after_it() -> None:
    """Header mode, no reset: a header-shaped line of another width is a candidate; the next data line,
    of its width, adopts it (and is decoded by it). A candidate that a row of the old width follows (a
    device's message), or a row of a third width, is no header: nothing changes, and later rows of its
    width are still wrong_columns."""
    decoder = make_decoder(port())
    assert isinstance(decoder, CsvDecoder)
    changes: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    decoder.on_columns = lambda old, new: changes.append((old, new))
    feed(decoder, b"a,b\n1,2\n")
    # A message, then a row of the old width: decoded; a row of the message's width later is no data.
    assert len(frames_of(feed(decoder, b"low battery\n3,4\n5\n"))) == 1
    assert decoder.columns == ("a", "b") and decoder.stats.skipped == {"wrong_columns": 1}
    # A header-shaped line, then a row of a third width: neither is taken.
    assert frames_of(feed(decoder, b"x,y,z\n1,2,3,4\n1,2,3\n")) == []
    assert decoder.columns == ("a", "b") and decoder.stats.skipped == {"wrong_columns": 3}
    # The device restarted with three columns: its header, then its rows (the first decoded too).
    events = feed(decoder, b"x,y,z\n6,7,8\n9,10,11\n")
    assert frames_of(events) == [
        Frame("bench", MONO, WALL, {"x": 6.0, "y": 7.0, "z": 8.0}),
        Frame("bench", MONO, WALL, {"x": 9.0, "y": 10.0, "z": 11.0}),
    ]
    assert decoder.columns == ("x", "y", "z") and changes == [(("a", "b"), ("x", "y", "z"))]
    assert decoder.stats.header_changes == 1 and decoder.stats.headers == 4
    assert decoder.stats.skipped == {"wrong_columns": 3}


def test_csv_configured_columns_take_no_header_from_the_stream() -> None:
    """With `columns` in the config the device's lines never rename them: a header-shaped line of
    another width and rows of its width are wrong_columns."""
    decoder = make_decoder(port(columns=["a", "b"]))
    assert frames_of(feed(decoder, b"x,y,z\n6,7,8\n1,2\n")) == [
        Frame("bench", MONO, WALL, {"a": 1.0, "b": 2.0})
    ]
    assert decoder.columns == ("a", "b") and decoder.stats.skipped == {"wrong_columns": 2}


def test_csv_rows_before_the_header_are_skipped_and_counted_never_taken_for_it() -> None:
    """The agent joined a stream mid-way: a row is no header (its numbers would become channel names).
    Markers still come through; the header, when the device prints it, starts the decoding."""
    decoder = make_decoder(port())
    events = feed(decoder, b"4400,12.008\n#STEP START soak\n4410,12.01\n")
    assert [type(e) for e in events] == [StepMarker]
    assert isinstance(decoder, CsvDecoder) and decoder.waiting_for_header and decoder.columns == ()
    assert decoder.stats.skipped == {"before_header": 2} and decoder.stats.headers == 0
    decoder.reset()  # a reconnect before the header changes nothing
    events = feed(decoder, b"4420,12.02\nt_ms,supply_v\n4430,12.03\n")
    assert frames_of(events) == [Frame("bench", MONO, WALL, {"t_ms": 4430.0, "supply_v": 12.03})]
    assert not decoder.waiting_for_header and decoder.columns == ("t_ms", "supply_v")
    assert decoder.stats.skipped == {"before_header": 3} and decoder.stats.headers == 1


def test_csv_batch_path_decodes_no_row_before_the_header() -> None:
    decoder = make_decoder(port(device_time="t_ms"))
    assert isinstance(decoder, CsvDecoder) and decoder.batch_enabled
    rows = b"".join(b"%d,12.5,0.25\n" % n for n in range(200))
    assert decoder.feed_packed(rows, MONO, WALL) == []
    assert decoder.stats.skipped == {"before_header": 200} and decoder.stats.frames == 0
    feed(decoder, b"t_ms,supply_v,current_a\n")
    (batch,) = decoder.feed_packed(rows, MONO, WALL)
    assert isinstance(batch, FrameBatch) and batch.names == ("supply_v", "current_a")
    assert decoder.stats.frames == 200 and decoder.stats.skipped == {"before_header": 200}


# --- jsonl -------------------------------------------------------------------------------------


def test_jsonl_takes_numeric_fields_and_device_time() -> None:
    decoder = make_decoder(port(format="jsonl", device_time="ts", device_time_unit="s"))
    events = feed(decoder, b'{"ts": 5, "v": 12.1, "i": 2, "status": "ok", "on": true}\n')
    assert events == [Frame("bench", MONO, WALL, {"v": 12.1, "i": 2.0}, 5.0)]


def test_jsonl_with_columns_requires_them_and_null_is_a_missing_sample() -> None:
    decoder = make_decoder(port(format="jsonl", columns=["v", "i"]))
    events = feed(
        decoder, b'{"v": 1, "i": null, "x": 9}\n{"v": 1}\n{"v": "1.5", "i": 2}\n{"v": "hi", "i": 1}\n'
    )
    frames = frames_of(events)
    assert len(frames) == 2
    assert frames[0].values["v"] == 1.0 and math.isnan(frames[0].values["i"])
    assert frames[1].values == {"v": 1.5, "i": 2.0}
    assert decoder.stats.skipped == {"wrong_columns": 1, "not_numeric": 1}


def test_jsonl_missing_device_time_field_gives_no_device_time() -> None:
    decoder = make_decoder(port(format="jsonl", device_time="ts", device_time_unit="s"))
    assert feed(decoder, b'{"v": 1}\n') == [Frame("bench", MONO, WALL, {"v": 1.0}, None)]


# --- kv ----------------------------------------------------------------------------------------


def test_kv_pairs_with_device_time() -> None:
    decoder = make_decoder(port(format="kv", device_time="t", device_time_unit="s"))
    events = feed(decoder, b"t=7 temp=21.5 rh=40\r\nt=8, temp=21.6, rh=41\n")
    assert events == [
        Frame("bench", MONO, WALL, {"temp": 21.5, "rh": 40.0}, 7.0),
        Frame("bench", MONO, WALL, {"temp": 21.6, "rh": 41.0}, 8.0),
    ]


def test_kv_with_columns_keeps_only_them() -> None:
    decoder = make_decoder(port(format="kv", columns=["temp"]))
    assert frames_of(feed(decoder, b"temp=1 rh=2\nrh=3\n")) == [Frame("bench", MONO, WALL, {"temp": 1.0})]
    assert decoder.stats.skipped == {"wrong_columns": 1}


# --- markers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "kv"])
def test_default_markers_in_every_format(fmt: str) -> None:
    decoder = make_decoder(port(format=fmt, columns=["a"]))
    events = feed(decoder, b"#STEP START power on\n#STEP END power on PASS\n#STEP END other FAIL\n# note\n")
    assert events == [
        StepMarker("bench", StepEdge.START, "power on", MONO, WALL, None),
        StepMarker("bench", StepEdge.END, "power on", MONO, WALL, Verdict.PASS),
        StepMarker("bench", StepEdge.END, "other", MONO, WALL, Verdict.FAIL),
    ]
    assert decoder.stats.markers == 3 and decoder.stats.comments == 1


def test_custom_marker_regex() -> None:
    regex = r"^>> (?P<edge>begin|end) step=(?P<name>\w+)(?: result=(?P<verdict>ok|failed))?$"
    decoder = make_decoder(port(columns=["a"], marker_regex=regex))
    events = feed(decoder, b">> begin step=flash\n1\n>> end step=flash result=failed\n#STEP START x\n")
    assert events == [
        StepMarker("bench", StepEdge.START, "flash", MONO, WALL, None),
        Frame("bench", MONO, WALL, {"a": 1.0}),
        StepMarker("bench", StepEdge.END, "flash", MONO, WALL, Verdict.FAIL),
    ]
    assert decoder.stats.comments == 1  # the default marker is just a comment under a custom regex


def test_unanchored_marker_regex_is_tried_on_every_line() -> None:
    decoder = make_decoder(port(columns=["a"], marker_regex=r"STEP (?P<edge>START|END) (?P<name>\w+)"))
    assert feed(decoder, b"[log] STEP START x\n") == [StepMarker("bench", StepEdge.START, "x", MONO, WALL)]


def test_marker_with_unknown_edge_is_counted() -> None:
    decoder = make_decoder(port(columns=["a"], marker_regex=r"^@(?P<edge>\w+) (?P<name>\w+)"))
    assert feed(decoder, b"@pause x\n") == []
    assert decoder.stats.skipped == {"bad_marker": 1}


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (DEFAULT_MARKER_REGEX, "#STEP"),
        (r"^STEP:(?P<edge>\w+) (?P<name>\w+)", "STEP:"),
        (r"^ab?c(?P<edge>x)(?P<name>y)", "a"),
        (r"^a|b(?P<edge>x)(?P<name>y)", ""),
        (r"(?P<edge>x)(?P<name>y)", ""),
        (r"^\#(?P<edge>x)(?P<name>y)", ""),
    ],
)
def test_marker_literal_prefix_is_only_what_every_match_starts_with(pattern: str, prefix: str) -> None:
    assert literal_prefix(pattern) == prefix


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "line", "reason"),
    [
        ("csv", b"1,2", "wrong_columns"),
        ("csv", b"1,2,3,4", "wrong_columns"),
        ("csv", b"1,x,3", "not_numeric"),
        ("csv", b"1,,3", "not_numeric"),
        ("csv", b"1,\xff,3", "not_utf8"),
        ("csv", b"   \r", "empty"),
        ("jsonl", b"{not json", "bad_json"),
        ("jsonl", b"[1, 2]", "bad_json"),
        ("jsonl", b"[" * 3000 + b"]" * 3000, "too_long"),
        ("jsonl", b"[" * 2000 + b"]" * 2000, "bad_json"),
        ("jsonl", b'{"status": "ok"}', "not_numeric"),
        ("kv", b"a=1 b", "bad_kv"),
        ("kv", b"=1", "bad_kv"),
        ("kv", b"a=1 b=x", "not_numeric"),
        ("csv", b"9" * 5000, "too_long"),
    ],
)
def test_bad_line_is_skipped_counted_and_the_next_line_still_decodes(
    fmt: str, line: bytes, reason: str
) -> None:
    columns = ["a", "b", "c"] if fmt == "csv" else []
    decoder = make_decoder(port(format=fmt, columns=columns))
    good = {"csv": b"1,2,3", "jsonl": b'{"a": 1}', "kv": b"a=1"}[fmt]
    events = feed(decoder, line + b"\n" + good + b"\n")
    assert len(frames_of(events)) == 1
    assert decoder.stats.skipped == {reason: 1}
    assert decoder.stats.lines == 2


def test_line_of_exactly_max_bytes_is_kept_one_more_is_too_long() -> None:
    decoder = make_decoder(port(format="kv", max_line_bytes=16))
    exact = b"a=" + b"1" * 14
    assert len(frames_of(feed(decoder, exact + b"\n" + exact + b"1\n"))) == 1
    assert decoder.stats.skipped == {"too_long": 1}


def test_ten_megabytes_without_newline_never_grow_the_buffer() -> None:
    decoder = make_decoder(port(columns=["a"]))
    chunk = bytes(range(256)).replace(b"\n", b"") * 256  # ~64 KB of binary garbage, no newline
    fed = 0
    while fed < 10 * 1024 * 1024:
        assert feed(decoder, chunk) == []
        fed += len(chunk)
        assert decoder.splitter.buffered <= 4096
    assert decoder.stats.overflow_bytes == fed
    assert frames_of(feed(decoder, b"tail of garbage\n1\n")) == [Frame("bench", MONO, WALL, {"a": 1.0})]
    assert decoder.stats.skipped == {"too_long": 1}


def test_reset_counts_the_unterminated_line_as_partial() -> None:
    decoder = make_decoder(port(columns=["a", "b"]))
    feed(decoder, b"1,2\n3,")
    decoder.reset()
    assert frames_of(feed(decoder, b"4\n5,6\n")) == [Frame("bench", MONO, WALL, {"a": 5.0, "b": 6.0})]
    assert decoder.stats.skipped == {"partial": 1, "wrong_columns": 1}


@pytest.mark.parametrize(
    ("regex", "enabled"),
    [
        (DEFAULT_MARKER_REGEX, True),
        (r"^STEP (?P<edge>\w+) (?P<name>\w+)", True),
        (r"^(?P<edge>start|end) (?P<name>\w+)", False),  # no literal prefix
        (r"^nan(?P<edge>\w+) (?P<name>\w+)", False),  # a row of numbers could start like this
        (r"^1(?P<edge>\w+) (?P<name>\w+)", False),
    ],
)
def test_csv_batch_path_only_when_no_number_row_can_look_like_a_marker(regex: str, enabled: bool) -> None:
    decoder = make_decoder(port(columns=["a"], marker_regex=regex))
    assert isinstance(decoder, CsvDecoder) and decoder.batch_enabled is enabled


def test_csv_batch_with_a_marker_or_bad_row_falls_back_to_per_line_decoding() -> None:
    decoder = make_decoder(port(columns=["a", "b"]))
    events = feed(decoder, b"1,2\r\n 3 , 4 \n#STEP START s\n5,x\n")
    assert events == [
        Frame("bench", MONO, WALL, {"a": 1.0, "b": 2.0}),
        Frame("bench", MONO, WALL, {"a": 3.0, "b": 4.0}),
        StepMarker("bench", StepEdge.START, "s", MONO, WALL),
    ]
    assert decoder.stats.skipped == {"not_numeric": 1}


def test_the_header_line_with_configured_columns_is_a_header_not_a_decode_error() -> None:
    """A device prints its header at every reset; with the columns in the config the line is still a
    header (counted as one), not a not_numeric skip that would read as a bad cable."""
    decoder = make_decoder(SerialPort(name="b", url="loop://", columns=["t_ms", "v"], device_time="t_ms"))
    items = decoder.feed(b"t_ms,v\n1,2.5\nt_ms,v\n2,2.6\n", 0.0, 0.0)
    assert [i.values for i in items if isinstance(i, Frame)] == [{"v": 2.5}, {"v": 2.6}]
    assert decoder.stats.headers == 2 and decoder.stats.skipped.get("not_numeric", 0) == 0
