"""Property tests: no input crashes a decoder or grows its memory, every line is accounted for, and
how the bytes are chunked never changes what decodes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, StepMarker
from edge_agent.serial import make_decoder
from edge_agent.serial.decoders import CsvDecoder, LineDecoder

FORMATS = ("csv", "jsonl", "kv")
MAX_LINE = 64  # small, so random data hits the over-long path often


def port(fmt: str, **overrides: Any) -> SerialPort:
    columns = ["t", "a", "b"] if fmt == "csv" else []
    return SerialPort(
        name="p", url="loop://", format=fmt, columns=columns, max_line_bytes=MAX_LINE, **overrides
    )


def accounted(decoder: LineDecoder) -> int:
    s = decoder.stats
    return s.frames + s.markers + s.headers + s.comments + s.skipped_total - s.skipped.get("partial", 0)


def feed_chunks(
    decoder: LineDecoder, data: bytes, cuts: list[int], *, keep_time: bool = False
) -> list[Frame | StepMarker]:
    """Events of `data` fed in pieces (read i at host time 1.0 + i). Their times depend on how the
    bytes were read (edge_agent.serial.clock), so unless `keep_time` they are set to 1.0: what decodes
    is what these properties are about. They never go back."""
    events: list[Frame | StepMarker] = []
    start = 0
    for read, cut in enumerate([*sorted(cuts), len(data)]):
        events += decoder.feed(data[start:cut], 1.0 + read, 2.0)
        start = cut
    times = [event.mono for event in events]
    assert times == sorted(times)
    return events if keep_time else [replace(event, mono=1.0) for event in events]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(FORMATS), chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_crash_never_grow_and_every_line_is_accounted(
    fmt: str, chunks: list[bytes]
) -> None:
    decoder = make_decoder(port(fmt, device_time="t", device_time_unit="ms"))
    for chunk in chunks:
        decoder.feed(chunk, 1.0, 2.0)
        assert decoder.splitter.buffered <= MAX_LINE
    stats = decoder.stats
    assert stats.lines == b"".join(chunks).count(b"\n")
    assert accounted(decoder) == stats.lines


# A stream of lines of every kind: good data, markers, comments and each sort of bad line.
_number = st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"{x:.6g}")
_csv_good = st.tuples(_number, _number, _number).map(",".join)
_kv_good = st.tuples(_number, _number).map(lambda v: f"t={v[0]} a={v[1]}")
_json_good = st.tuples(_number, _number).map(lambda v: f'{{"t": {v[0]}, "a": {v[1]}}}')
_marker = st.sampled_from(["#STEP START warm up", "#STEP END warm up PASS", "#STEP END x FAIL"])
# No surrogates (category Cs): they cannot be encoded, so no bench could send them; raw bytes cover
# every invalid UTF-8 sequence in the next strategy.
_noise = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=90
)
_bad = st.one_of(
    _noise.map(lambda s: s.encode()),
    st.binary(max_size=90).map(lambda b: b.replace(b"\n", b"")),
    st.just(b"x" * (MAX_LINE + 1)),
)


def _lines(good: st.SearchStrategy[str]) -> st.SearchStrategy[list[bytes]]:
    text = st.one_of(good, good, _marker, st.just("# comment"), st.just(""))
    line = st.one_of(text.map(str.encode), _bad)
    ending = st.sampled_from([b"\n", b"\r\n"])
    return st.lists(st.tuples(line, ending).map(lambda t: t[0] + t[1]), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    fmt_and_lines=st.one_of(
        st.tuples(st.just("csv"), _lines(_csv_good)),
        st.tuples(st.just("kv"), _lines(_kv_good)),
        st.tuples(st.just("jsonl"), _lines(_json_good)),
    ),
)
def test_chunking_never_changes_what_decodes(
    data: st.DataObject, fmt_and_lines: tuple[str, list[bytes]]
) -> None:
    fmt, lines = fmt_and_lines
    stream = b"".join(lines)
    whole = make_decoder(port(fmt, device_time="t", device_time_unit="ms"))
    expected = feed_chunks(whole, stream, [])
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=30))
    chunked = make_decoder(port(fmt, device_time="t", device_time_unit="ms"))
    assert feed_chunks(chunked, stream, cuts) == expected
    assert chunked.stats == whole.stats
    # Context never matters either: each line decodes in the stream exactly as it does on its own.
    good_lines = sum(1 for line in lines if _is_good(fmt, line))
    assert whole.stats.frames == good_lines


def _is_good(fmt: str, line: bytes) -> bool:
    try:
        text = line.decode().strip()
    except UnicodeDecodeError:
        return False
    if len(line.rstrip(b"\n")) > MAX_LINE or not text or text.startswith("#"):
        return False
    decoder = make_decoder(port(fmt, device_time="t", device_time_unit="ms"))
    return len(decoder.feed(line, 0.0, 0.0)) == 1


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(_csv_good, min_size=1, max_size=30), cut=st.integers(min_value=1, max_value=5))
def test_valid_csv_lines_each_become_exactly_their_frame(lines: list[str], cut: int) -> None:
    stream = "".join(line + "\n" for line in lines).encode()
    decoder = make_decoder(port("csv", device_time="t", device_time_unit="ms"))
    frames = feed_chunks(decoder, stream, list(range(0, len(stream), cut)))
    expected = []
    for line in lines:
        t, a, b = (float(x) for x in line.split(","))
        expected.append(Frame("p", 1.0, 2.0, {"a": a, "b": b}, t))
    assert frames == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), lines=_lines(_csv_good))
def test_csv_batch_path_decides_exactly_like_the_line_path(data: st.DataObject, lines: list[bytes]) -> None:
    stream = b"".join(lines)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=30))
    batched = make_decoder(port("csv", device_time="t", device_time_unit="ms"))
    per_line = make_decoder(port("csv", device_time="t", device_time_unit="ms"))
    assert isinstance(batched, CsvDecoder) and isinstance(per_line, CsvDecoder)
    assert batched.batch_enabled
    per_line.batch_enabled = False
    # Times too: both paths place every frame at the same time on the device timeline.
    assert feed_chunks(batched, stream, cuts, keep_time=True) == feed_chunks(
        per_line, stream, cuts, keep_time=True
    )
    assert batched.stats == per_line.stats
