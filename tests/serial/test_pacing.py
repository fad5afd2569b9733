"""The read pacer: batches of about target_bytes, bounded added latency, no waiting when behind."""

from __future__ import annotations

import pytest

from edge_agent.serial.pacing import ReadPacer


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
