"""The source timeline core (edge_agent.serial.clock): device mode, receive mode, now(), and how the
decoders use it."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, StepMarker
from edge_agent.serial import make_decoder
from edge_agent.serial.clock import SourceClock, SourceClocks, byte_seconds, chunk_tails, device_time_scale


def port(**overrides: Any) -> SerialPort:
    return SerialPort(**{"name": "bench", "url": "loop://", **overrides})


# --- units -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "unit", "scale"),
    [("t_ms", "auto", 1e-3), ("time_s", "auto", 1.0), ("T_US", "auto", 1e-6), ("clock_ns", "auto", 1e-9),
     ("t", "ms", 1e-3), ("t_ms", "s", 1.0), ("stamp", "ns", 1e-9)],
)  # fmt: skip
def test_device_time_unit_from_the_suffix_or_said(field: str, unit: str, scale: float) -> None:
    assert device_time_scale(field, unit) == scale


@pytest.mark.parametrize("field", ["t", "ts", "timestamp", "t_min", "ms"])
def test_a_device_time_without_a_unit_suffix_needs_the_unit(field: str) -> None:
    with pytest.raises(ValueError, match="set device_time_unit"):
        device_time_scale(field, "auto")


def test_byte_time_counts_start_data_parity_and_stop_bits() -> None:
    assert byte_seconds(115200, 8, "N", 1) == pytest.approx(10 / 115200)
    assert byte_seconds(9600, 7, "E", 2) == pytest.approx(11 / 9600)


# --- device mode -------------------------------------------------------------------------------------


def test_device_time_is_anchored_at_the_first_frames_receive_time() -> None:
    clock = SourceClock(1e-3)
    assert clock.stamp(100.0, 5000.0) == 100.0
    # The device's own intervals, whatever the host saw: two frames read together stay 20 ms apart.
    assert clock.stamp(100.5, 5020.0) == pytest.approx(100.02)
    assert clock.stamp(100.5, 5040.0) == pytest.approx(100.04)
    assert clock.stats.as_dict() == {"backwards": 0, "jumps": 0, "missing": 0}


@pytest.mark.parametrize(("unit", "per_second"), [("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9)])
def test_every_unit_gives_seconds(unit: str, per_second: float) -> None:
    clock = SourceClock.for_port(port(device_time="t", device_time_unit=unit))
    clock.stamp(10.0, 7 * per_second)
    assert clock.stamp(10.0, 9.5 * per_second) == pytest.approx(12.5)


def test_a_device_clock_going_back_is_counted_and_the_timeline_goes_on_by_receive_time() -> None:
    clock = SourceClock(1e-3)
    clock.stamp(100.0, 60_000.0)
    clock.stamp(101.0, 61_000.0)  # t = 101
    # The device rebooted: its counter restarts at 0, 0.5 s of host time later.
    t = clock.stamp(101.5, 0.0)
    assert t == pytest.approx(101.5) and clock.stats.backwards == 1
    # Re-anchored: the device's intervals count again from there.
    assert clock.stamp(101.6, 250.0) == pytest.approx(101.75)
    assert clock.stats.as_dict() == {"backwards": 1, "jumps": 0, "missing": 0}


def test_a_forward_jump_beyond_max_jump_is_counted_and_re_anchored() -> None:
    clock = SourceClock(1.0, max_jump=600.0)
    clock.stamp(0.0, 1_000.0)
    # An NTP step of 2 hours between two frames one second apart.
    t = clock.stamp(1.0, 1_001.0 + 7200.0)
    assert t == pytest.approx(1.0) and clock.stats.jumps == 1
    assert clock.stamp(2.0, 8202.0) == pytest.approx(2.0)


def test_a_sparse_recording_replayed_fast_is_no_jump() -> None:
    """1 row a minute at 200x: 60 s of device time every 0.3 s of host time, ten rows missing in a row."""
    clock = SourceClock(1e-3, max_jump=600.0)
    host, device = 0.0, 0.0
    times = [clock.stamp(host, device)]
    for gap in [60.0] * 20 + [600.0] + [60.0] * 5:
        host += gap / 200
        device += gap * 1000
        times.append(clock.stamp(host, device))
    assert clock.stats.jumps == 0
    assert times[-1] - times[0] == pytest.approx(25 * 60.0 + 600.0)


def test_a_device_silent_for_long_is_no_jump_when_the_host_waited_as_long() -> None:
    clock = SourceClock(1.0, max_jump=600.0)
    clock.stamp(0.0, 0.0)
    clock.mark(3000.0)  # a marker line in between must not shorten the host time the jump is judged by
    assert clock.stamp(3600.0, 3600.0) == pytest.approx(3600.0)
    assert clock.stats.jumps == 0


def test_frames_without_a_device_time_take_receive_time_and_are_counted() -> None:
    clock = SourceClock(1e-3)
    clock.stamp(10.0, 0.0)
    assert clock.stamp(10.25, None) == pytest.approx(10.25)
    assert clock.stamp(10.5, math.nan) == pytest.approx(10.5)
    assert clock.stats.missing == 2
    # The anchor still holds for the next frame that has one.
    assert clock.stamp(11.0, 1000.0) == pytest.approx(11.0)


def test_the_first_frame_without_a_device_time_is_placed_at_its_arrival() -> None:
    clock = SourceClock(1e-3)
    assert clock.stamp(4.0, None) == 4.0
    assert clock.stamp(4.1, 0.0) == pytest.approx(4.1)  # anchored here


device_values = st.one_of(
    st.none(),
    st.just(math.nan),
    st.floats(min_value=-1e6, max_value=1e9, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300, deadline=None)
@given(
    unit=st.sampled_from(["s", "ms", "us"]),
    reads=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=100.0), st.lists(device_values, max_size=8)), max_size=30
    ),
    max_jump=st.floats(min_value=0.001, max_value=1e4),
)
def test_device_timeline_never_goes_back_and_now_is_never_behind_it(
    unit: str, reads: list[tuple[float, list[float | None]]], max_jump: float
) -> None:
    """Whatever the device sends (back, jumps, missing, NaN), stamp and the batch path agree, the
    timeline never decreases, and now() is never behind the last frame."""
    single = SourceClock(device_time_scale("t", unit), byte_time=1e-4, max_jump=max_jump)
    batch = SourceClock(device_time_scale("t", unit), byte_time=1e-4, max_jump=max_jump)
    host = 0.0
    last = -math.inf
    for advance, devices in reads:
        host += advance
        lines = [b"x" * 9] * len(devices)
        tails = chunk_tails(lines, 0)
        hosts = single.spread(host, 10 * len(devices), tails)
        one_by_one = [single.stamp(h, d) for h, d in zip(hosts, devices, strict=True)]
        if devices and all(d is not None for d in devices):
            numbers = [float(d) for d in devices if d is not None]
            assert batch.stamp_chunk(host, 10 * len(devices), lines, 0, numbers) == pytest.approx(one_by_one)
        else:
            batch = single_copy(single)
        for t in one_by_one:
            assert t >= last
            last = t
        assert single.now(host) >= last and single.now(host + 1.0) >= single.now(host)


def single_copy(clock: SourceClock) -> SourceClock:
    copy = SourceClock(clock.scale, byte_time=clock.byte_time, max_jump=clock.max_jump)
    for name in ("_dev_h", "_last_dev", "_last_h", "_last_t", "_offset", "_prev_read"):
        setattr(copy, name, getattr(clock, name))
    return copy


# --- receive mode ------------------------------------------------------------------------------------


def test_chunk_tails_are_the_bytes_after_each_newline() -> None:
    assert chunk_tails([b"ab", b"cde", b""], 4) == [4 + 1 + 4, 4 + 1, 4]
    assert chunk_tails([], 3) == []


def test_receive_mode_spreads_a_reads_lines_by_byte_offset_since_the_previous_read() -> None:
    clock = SourceClock(None, byte_time=None)  # a pty: no baud rate
    clock.opened(10.0, None)
    lines = [b"1,2", b"3,4", b"5,6"]  # 12 bytes with their newlines
    times = clock.stamp_chunk(11.2, 12, lines, 0, None)
    assert times == pytest.approx([10.4, 10.8, 11.2])  # 0.1 s per byte: 1.2 s over 12 bytes


def test_receive_mode_spread_is_bounded_by_the_baud_rate() -> None:
    """A real port idle for a second then sending 3 lines: they took 12 byte times, not the second."""
    clock = SourceClock(None, byte_time=0.001)
    clock.opened(10.0, 0.001)
    times = clock.stamp_chunk(11.0, 12, [b"1,2", b"3,4", b"5,6"], 0, None)
    assert times == pytest.approx([10.992, 10.996, 11.0])


def test_a_partial_line_at_the_end_of_a_read_moves_the_complete_ones_earlier() -> None:
    clock = SourceClock(None, byte_time=None)
    clock.opened(0.0, None)
    # "1,2\n3,4\n5," : 10 bytes, the last 2 are the start of the next line.
    assert clock.stamp_chunk(1.0, 10, [b"1,2", b"3,4"], 2, None) == pytest.approx([0.4, 0.8])


def test_receive_mode_times_are_clamped_never_to_go_back() -> None:
    clock = SourceClock(None, byte_time=None)
    clock.opened(5.0, None)
    assert clock.stamp_chunk(6.0, 4, [b"abc"], 0, None) == [6.0]
    # A host clock that reads earlier (a test's fake clock, a read time taken out of order): held.
    assert clock.stamp_chunk(5.5, 8, [b"abc", b"def"], 0, None) == [6.0, 6.0]
    assert clock.stamp(5.9, None) == 6.0


@settings(max_examples=200, deadline=None)
@given(
    reads=st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=5.0)),
            st.lists(st.binary(max_size=20), max_size=10),
            st.integers(0, 9),
        ),
        max_size=20,
    ),
    byte_time=st.one_of(st.none(), st.floats(min_value=1e-7, max_value=0.01)),
)
def test_receive_timeline_is_increasing_within_each_read_and_never_before_the_previous_read(
    reads: list[tuple[float, list[bytes], int]], byte_time: float | None
) -> None:
    clock = SourceClock(None, byte_time=byte_time)
    host = 0.0
    clock.opened(host, byte_time)
    last = -math.inf
    for advance, lines, rest in reads:
        previous_read = host
        host += advance
        length = sum(len(line) + 1 for line in lines) + rest
        times = clock.stamp_chunk(host, length, lines, rest, None)
        assert len(times) == len(lines)
        for t in times:
            assert last <= t <= host
            assert t >= previous_read or t == last  # spread only over the time since the previous read
            last = t
        if advance > 0 and length:
            assert len(set(times)) == len(times)  # distinct while the host clock moved


# --- now() -------------------------------------------------------------------------------------------


def test_now_is_the_last_frame_plus_host_time_since_it_never_below() -> None:
    clock = SourceClock(1e-3)
    assert clock.now(50.0) == 50.0  # nothing seen yet: host time
    clock.stamp(100.0, 0.0)
    clock.stamp(100.0, 30_000.0)  # a fast replay: 30 s of device time in no host time
    assert clock.now(100.0) == pytest.approx(130.0)
    assert clock.now(102.0) == pytest.approx(132.0)
    assert clock.now(99.0) == pytest.approx(130.0)  # never behind the last frame


def test_source_clocks_registry_maps_unknown_sources_to_host_time() -> None:
    clocks = SourceClocks.for_ports([port(name="a", device_time="t_ms"), port(name="b")])
    clocks["a"].stamp(10.0, 0.0)
    clocks["a"].stamp(10.0, 5000.0)
    assert clocks.now("a", 11.0) == pytest.approx(16.0)
    assert clocks.now("b", 11.0) == 11.0
    assert clocks.now("nope", 7.0) == 7.0
    assert clocks.status() == {
        "a": {"mode": "device", "backwards": 0, "jumps": 0, "missing": 0},
        "b": {"mode": "receive", "backwards": 0, "jumps": 0},
    }


# --- through the decoders ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "kv", "jsonl"])
def test_decoders_give_the_frames_of_one_read_distinct_increasing_times(fmt: str) -> None:
    decoder = make_decoder(port(format=fmt, columns=["a"] if fmt == "csv" else []))
    decoder.clock.opened(0.0, None)
    line = {"csv": b"1\n", "kv": b"a=1\n", "jsonl": b'{"a": 1}\n'}[fmt]
    events = decoder.feed(line * 50, 1.0, 1e9)
    times = [e.mono for e in events]
    assert len(times) == 50 and times == sorted(set(times)) and times[-1] == 1.0
    assert times[1] - times[0] == pytest.approx(1.0 / 50)


def test_decoder_device_mode_and_markers_keep_the_stream_order() -> None:
    decoder = make_decoder(port(columns=["t_ms", "v"], device_time="t_ms"))
    events = decoder.feed(b"0,1\n500,2\n#STEP START a\n1000,3\n", 7.0, 1e9)
    assert [type(e) for e in events] == [Frame, Frame, StepMarker, Frame]
    times = [e.mono for e in events]
    assert times == sorted(times)
    assert times[3] - times[0] == pytest.approx(1.0)  # the device's second, though read at once
    frames = [e for e in events if isinstance(e, Frame)]
    assert [f.device_time for f in frames] == [0.0, 500.0, 1000.0]


def test_decoder_counts_device_clock_steps() -> None:
    decoder = make_decoder(port(format="kv", device_time="t_ms"))
    decoder.feed(b"t_ms=1000 v=1\nt_ms=2000 v=1\n", 1.0, 0.0)
    decoder.feed(b"t_ms=5 v=1\nv=2\n", 2.0, 0.0)  # rebooted, then a line without its time
    assert decoder.clock.stats.as_dict() == {"backwards": 1, "jumps": 0, "missing": 1}
