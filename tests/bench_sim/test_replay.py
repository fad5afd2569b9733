"""CSV replay core: time column detection, timing at speed X, markers, malformed rows, looping."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge_agent.bench_sim.outputs import Output, Write, WriteKind
from edge_agent.bench_sim.replay import ReplayError, ReplayPlayer, parse_time


def source(text: str) -> Callable[[], list[bytes]]:
    lines = text.encode().splitlines(keepends=True)
    return lambda: list(lines)


def drain(player: ReplayPlayer) -> list[Write]:
    out: list[Output] = []
    for _ in range(10_000):
        due = player.next_due()
        if due is None:
            return [o for o in out if isinstance(o, Write)]
        out += player.advance(due)
    raise AssertionError("the replay never ended")


T_MS = "t_ms,v\n1000,1.0\n1020,1.1\n#STEP START a\n1100,1.2\n2000,1.3\n"


@pytest.mark.parametrize("speed", [1.0, 4.0, 0.5])
def test_due_times_are_file_intervals_divided_by_speed(speed: float) -> None:
    writes = drain(ReplayPlayer(source(T_MS), speed=speed))
    assert [w.kind for w in writes] == [WriteKind.HEADER] + [WriteKind.SAMPLE] * 2 + [WriteKind.MARKER] + [
        WriteKind.SAMPLE
    ] * 2
    rows = [w for w in writes if w.kind is WriteKind.SAMPLE]
    assert [w.t for w in rows] == pytest.approx([0.0, 0.02 / speed, 0.1 / speed, 1.0 / speed])
    marker = writes[3]
    assert marker.data == b"#STEP START a\n" and marker.t == rows[1].t  # right after the row before it
    assert [w.data for w in rows] == [b"1000,1.0\n", b"1020,1.1\n", b"1100,1.2\n", b"2000,1.3\n"]


def test_nothing_is_released_before_it_is_due() -> None:
    player = ReplayPlayer(source(T_MS), speed=2.0)
    assert [w.data for w in player.advance(0.0) if isinstance(w, Write)] == [b"t_ms,v\n", b"1000,1.0\n"]
    assert player.advance(0.009) == []
    assert len(player.advance(0.01)) == 2  # the row at 20 ms file time and the marker after it
    assert player.next_due() == pytest.approx(0.05)


def test_time_s_and_iso_timestamp_and_named_columns() -> None:
    seconds = drain(ReplayPlayer(source("x,time_s\n5,10.0\n6,10.5\n")))
    assert [w.t for w in seconds[1:]] == pytest.approx([0.0, 0.5])
    iso = "timestamp,v\n2024-01-01T00:00:00Z,1\n2024-01-01T00:00:02.5Z,2\n"
    assert [w.t for w in drain(ReplayPlayer(source(iso)))[1:]] == pytest.approx([0.0, 2.5])
    epoch_ms = "timestamp,v\n1700000000000,1\n1700000000250,2\n"
    assert [w.t for w in drain(ReplayPlayer(source(epoch_ms)))[1:]] == pytest.approx([0.0, 0.25])
    named = "clock_us,v\n0,1\n500000,2\n"
    player = ReplayPlayer(source(named), time_column="clock_us")
    assert [w.t for w in drain(player)[1:]] == pytest.approx([0.0, 0.5])
    assert parse_time("1.5", 1.0) == 1.5 and parse_time("1970-01-01T00:00:02+00:00", None) == 2.0


def test_malformed_and_backwards_rows_are_counted_not_fatal() -> None:
    text = "t_ms,v\n0,1\nabc,2\n\n100,3\n50,4\n200\n"
    player = ReplayPlayer(source(text))
    rows = [w for w in drain(player) if w.kind is WriteKind.SAMPLE]
    assert [w.data for w in rows] == [b"0,1\n", b"100,3\n", b"50,4\n", b"200\n"]
    assert [w.t for w in rows] == pytest.approx([0.0, 0.1, 0.1, 0.2])  # 50 ms held at 100 ms
    assert player.stats() == {"rows": 4, "markers": 0, "malformed": 1, "time_backwards": 1, "repetitions": 1}


def test_loop_continues_after_the_last_row_by_one_interval() -> None:
    player = ReplayPlayer(source("t_ms,v\n0,1\n100,2\n"), loop=True)
    out: list[Output] = []
    for _ in range(6):
        due = player.next_due()
        assert due is not None
        out += player.advance(due)
    rows = [w for w in out if isinstance(w, Write) and w.kind is WriteKind.SAMPLE]
    assert [w.t for w in rows][:4] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert player.stats()["repetitions"] >= 2


def test_files_that_cannot_be_replayed_say_why() -> None:
    with pytest.raises(ReplayError, match=r"no time column.*--time-column"):
        ReplayPlayer(source("a,b\n1,2\n"))
    with pytest.raises(ReplayError, match="no header"):
        ReplayPlayer(source("#only a comment\n"))
    with pytest.raises(ReplayError, match="'zz' is not in the header"):
        ReplayPlayer(source("t_ms,v\n"), time_column="zz")
