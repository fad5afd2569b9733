"""The read pacer: batches of about target_bytes, bounded added latency, no waiting when behind."""

from __future__ import annotations

import pytest

from edge_agent.serial.pacing import ReadHold, ReadPacer


def test_first_read_and_empty_reads_wait_the_maximum() -> None:
    pacer = ReadPacer(max_delay=0.02, target_bytes=2048)
    assert pacer.after_read(100, now=1.0) == 0.02
    assert pacer.after_read(0, now=1.5) == 0.02


def test_slow_stream_waits_at_most_max_delay() -> None:
    pacer = ReadPacer(max_delay=0.02, target_bytes=2048)
    pacer.after_read(10, now=0.0)
    assert pacer.after_read(920, now=0.01) == 0.02  # 92 KB/s: 2 KB would take 22 ms, capped


def test_fast_stream_waits_until_about_target_bytes() -> None:
    pacer = ReadPacer(max_delay=0.02, target_bytes=2048)
    pacer.after_read(10, now=0.0)
    assert pacer.after_read(3000, now=0.01) == pytest.approx(2048 / 300_000)  # 300 KB/s


def test_backlog_or_sub_millisecond_wait_means_read_now() -> None:
    pacer = ReadPacer(max_delay=0.02, target_bytes=2048)
    pacer.after_read(10, now=0.0)
    assert pacer.after_read(3072, now=0.01) == 0.0  # 1.5 x target: behind
    assert pacer.after_read(2900, now=0.0111) == 0.0  # 2.6 MB/s: 0.78 ms is below the loop resolution


# -- ReadHold: the reads of a fast stream handed on together -----------------------------------------


def test_a_fast_streams_reads_are_held_then_handed_on_together() -> None:
    hold = ReadHold(max_hold=0.02)
    # Reads every 7.5 ms (3 Mbaud, ~2 KiB each): the oldest byte would wait 7.5, then 15 ms: held.
    assert hold.add(4, 0.0, 0.0075) is False
    assert hold.add(2, 0.0075, 0.015) is False
    assert hold.held_bytes == 6
    # Holding past this read would make the first read's bytes wait 22.5 ms: all handed on.
    assert hold.add(3, 0.015, 0.0225) is True
    assert hold.held_bytes == 0
    assert hold.add(1, 0.0225, 0.03) is False  # the next chunk starts its own wait
    assert hold.held_bytes == 1


def test_a_slow_stream_or_a_quiet_port_or_a_backlog_is_handed_on_at_once() -> None:
    hold = ReadHold(max_hold=0.02)
    assert hold.add(2, 1.0, 1.02) is True  # a slow stream: next read max_hold away
    now = 4.07
    assert hold.add(2, now, now + 0.02) is True  # (4.07 + 0.02) - 4.07 < 0.02 in floats
    assert hold.add(1, 2.0, 2.005) is False
    assert hold.add(2, 2.005, None) is True  # next read not on a timer (behind, or poll)
    assert hold.held_bytes == 0
    assert hold.add(2, 3.0, 3.005) is False
    assert hold.add(0, 3.005, None) is True  # a read that found nothing
    assert hold.add(0, 3.01, None) is False  # nothing held, nothing to hand on
