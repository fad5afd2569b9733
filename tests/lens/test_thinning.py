"""The lens side under overload, on a virtual clock: windows come faster than the lens takes them (the
bench's 5,000 lines/s in windows of 128: 39 a second, for the lens's one), so the lens gets the newest
window at each slot and the windows in between are not built; when windows come slower than the
slots, every window is built and sent, in order. Every completed window is accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import LensSection
from edge_agent.frames import FrameBatch
from edge_agent.lens.service import LensService
from edge_agent.lens.windower import Window


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(
    tmp_path: Path, lines_per_second: float, seconds: float
) -> tuple[LensService, list[tuple[float, Window]]]:
    """Reads of 40 ms of lines for `seconds`, and the send loop between them: each window the send
    queue lets go leaves at its slot and is acknowledged at once. Returns (service, [(sent at, window)])."""
    section = LensSection.model_validate(
        {"api_key": "k", "lens_id": "lns-x", "channels": ["a", "b"], "window_size": 128, "step_size": 128}
    )
    clock = VirtualClock()
    service = LensService(section, tmp_path, lambda _: None, source="bench", clock=clock)
    pacer = service.pacer
    sent: list[tuple[float, Window]] = []
    per_read = round(lines_per_second * 0.04)
    line = 0
    for read in range(1, round(seconds / 0.04) + 1):
        read_at = read * 0.04
        while (ready := pacer.ready_at(clock.now)) is not None and ready <= read_at:
            clock.now = max(clock.now, ready)
            sent.append((clock.now, pacer.take(clock.now)))
            pacer.acked()
        clock.now = read_at
        monos = [(line + row) / lines_per_second for row in range(per_read)]
        values = [float(line + row + column) for row in range(per_read) for column in range(2)]
        line += per_read
        service.feed_batch(FrameBatch("bench", 1.7e9 + read_at, ("a", "b"), monos, values))
    return service, sent


def test_under_overload_the_lens_gets_the_newest_window_at_each_slot_and_the_rest_is_not_built(
    tmp_path: Path,
) -> None:
    service, sent = run(tmp_path, 5000.0, 20.0)
    windower, pacer = service.windower, service.pacer
    completed = 20 * 5000 // 128
    assert windower.stats.windows + windower.stats.thinned == completed
    assert 19 <= len(sent) <= 21  # the lens's rate: one a second
    # Fresh: each window left at most ~two window periods (25.6 ms each) and a read after its last
    # sample (sending the oldest of a full queue of 20, as before, sent each 0.5 s late).
    ages = [at - window.end_mono for at, window in sent]
    assert max(ages) < 2 * 0.0256 + 0.04 + 1e-9, ages
    # Built: a few windows per slot, not 39 a second.
    assert windower.stats.windows <= 3 * len(sent)
    assert windower.stats.thinned >= completed - 3 * len(sent)
    built = pacer.stats.sent + pacer.stats.superseded + pacer.stats.dropped_queue_full + pacer.waiting
    assert built == windower.stats.windows
    seqs = [window.seq for _, window in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    counters = service.counters()
    assert counters["windower_thinned"] == windower.stats.thinned
    assert counters["pacer_superseded"] == pacer.stats.superseded


@pytest.mark.parametrize("lines_per_second", [100.0, 125.0])
def test_windows_slower_than_the_slots_are_all_built_and_sent_in_order(
    tmp_path: Path, lines_per_second: float
) -> None:
    service, sent = run(tmp_path, lines_per_second, 30.0)
    windower, pacer = service.windower, service.pacer
    completed = int(30 * lines_per_second) // 128
    assert (windower.stats.windows, windower.stats.thinned) == (completed, 0)
    assert [window.seq for _, window in sent] == list(range(completed))
    assert (pacer.stats.superseded, pacer.stats.dropped_queue_full) == (0, 0)
