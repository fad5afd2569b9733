"""One memory budget for the data path (issue 12 item 4, `memory.data_path_mb`): the evidence ring, the
recorder's queue and the live page together stay within it under wide lines at full speed (by their own
accounting after every look, and by tracemalloc over the whole run), the ring gives way to the others
and still keeps its floor, and what is cut is counted on /status and /metrics. A config whose other caps
would squeeze the ring is refused naming the field."""

from __future__ import annotations

import asyncio
import gc
import json
import random
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))  # the whole-agent helpers are imported by name

from e2e_helpers import get_json, wait_until, wide_jsonl_toml

from edge_agent.agent import Agent
from edge_agent.config import EX_CONFIG, SerialPort, load_config
from edge_agent.evidence import EvidenceRings
from edge_agent.evidence.ring import CHECK_EVERY
from edge_agent.evidence.source_ring import MAX_IN_PACKER
from edge_agent.frames import Frame
from edge_agent.memory_budget import RING, DataPathBudget, budget_for, live_page_bytes
from edge_agent.recorder import csvgz
from edge_agent.recorder.recorder import frame_bytes
from edge_agent.recorder.segmenter import Segmenter
from edge_agent.recorder.writer import MEMBER_MAX_BYTES, SegmentWriter
from edge_agent.serial.decoders import make_decoder

MIB = 1024 * 1024
WIDTH = 270


def wide_frames(count: int, per_read: int = 16) -> list[Frame]:
    """`count` decoded JSON frames of WIDTH numeric fields, `per_read` lines a read, 1 ms apart. The
    values are random doubles (seeded): blocks of them do not compress, so the ring holds them raw and
    fills the budget as fast as it can be filled (test_packed_ring.py is where blocks are packed)."""
    rng = random.Random(12)
    port = SerialPort(name="bench", url="loop://", format="jsonl", max_line_bytes=1 << 20)
    decoder = make_decoder(port)
    frames: list[Frame] = []
    for start in range(0, count, per_read):
        data = b"".join(
            (json.dumps({f"ch{c}": rng.random() for c in range(WIDTH)}) + "\n").encode()
            for k in range(start, min(count, start + per_read))
        )
        frames += [
            f for f in decoder.feed(data, start * 0.001, 1.7e9 + start * 0.001) if isinstance(f, Frame)
        ]
    assert len(frames) == count
    return frames


def _agent(tmp_path: Path, total_mb: float, pending_mb: float, recorder: str = "") -> Agent:
    path = tmp_path / "agent.toml"
    sections = f"""[evidence]
ring_seconds = "1h"
[memory]
data_path_mb = {total_mb}
[recorder]
max_pending_mb = {pending_mb}
{recorder}
[control]
listen = "127.0.0.1:0"
"""
    path.write_text(
        wide_jsonl_toml(bench="bench-budget", state_dir=tmp_path / "state", sections=sections),
        encoding="utf-8",
    )
    return Agent(load_config(path, environ={}))


def _stalled_writer(agent: Agent) -> SegmentWriter:
    """The recorder's writer, not started: nothing is taken off its queue (a writer as far behind as can
    be), so the recorder's share fills to its cap."""
    folder = agent.state_dir / "recordings" / "run-budget"
    folder.mkdir(parents=True)
    return SegmentWriter(
        folder, "run-budget", segmenter=Segmenter(max_bytes=MIB, max_seconds=3600.0),
        device_time_columns={"bench": None}, flush_interval=1.0, level=1,
    )  # fmt: skip


def _metrics(agent: Agent) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("consumer", s.labels.get("reason", ""))): s.value
        for family in text_string_to_metric_families(agent.metrics.render().decode())
        for s in family.samples
    }


async def test_ring_recorder_and_live_page_stay_within_one_budget_under_wide_lines(tmp_path: Path) -> None:
    """3,200 frames of 270 fields through the agent's own fan-out (`_on_serial`); once the ring has
    filled the budget, the recorder's writer starts and stalls, so its queue grows to max_pending_mb. The
    consumers' bytes together never pass `memory.data_path_mb` at any look of the ring (every
    CHECK_EVERY frames), nor by more than those frames' charges in between; tracemalloc over the whole
    run stays within it too; the recorder's queue got all it may hold, the ring kept at least its floor
    (less what the packer held when it was cut), and every frame is either waiting to be recorded or
    counted as not, every block dropped counted."""
    agent = _agent(tmp_path, total_mb=8, pending_mb=1)
    assert agent.recorder is not None and agent.live is not None
    budget = agent.memory
    assert budget.total == 8 * MIB
    # The recorder's cap: its 1 MiB of frames waiting and one open segment's unwritten rows (one port).
    assert budget.caps == {"recorder": MIB + MEMBER_MAX_BYTES, "live": live_page_bytes(128, 1)}
    frames = wide_frames(3200)
    step = frame_bytes(frames[0])  # the recorder's charge for one of them, the largest share of a frame

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    worst = 0
    for n, frame in enumerate(frames, 1):
        if n == 2400:  # the ring is full: now the recorder's queue fills (its writer runs, and stalls)
            room = budget.total - budget.reserve - budget.caps["live"]
            assert room - agent.rings.block_bytes < agent.rings.nbytes <= room
            agent.recorder.writer = _stalled_writer(agent)
        # A copy per frame (its own dict and floats), as the decoder makes them, so what is held is real.
        agent._on_serial(Frame(frame.source, frame.mono, frame.wall, dict(frame.values)))
        if n % 16 == 0:
            await asyncio.sleep(0)  # between reads the loop runs: the ring's packed blocks come back
        held = agent.rings.nbytes + budget.others_held()
        worst = max(worst, held)
        if n % CHECK_EVERY == 0:
            assert held <= budget.total - budget.reserve, (n, held)
        else:
            assert held <= budget.total - budget.reserve + CHECK_EVERY * step, (n, held)
    # Let the packer hand back what it holds before the last look (bounded: 10 s). A block evicted while
    # the packer held it stayed charged (its rows were still in memory), so the ring had dropped others
    # in its place; when it comes back, its charge goes too: this is the ring's lowest point.
    for _ in range(1000):
        if agent.rings.status()["blocks_in_packer"] == 0:
            break
        await asyncio.sleep(0.01)
    assert agent.rings.status()["blocks_in_packer"] == 0
    agent.recorder.hand_off()
    agent.packer.close()
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert traced <= budget.total - budget.reserve, (traced, budget.total)
    # The budget was really in play: filled to within a block (the ring makes and drops whole blocks)
    # of what the allocator's reserve leaves.
    assert worst > budget.total - budget.reserve - agent.rings.block_bytes - step

    # What /status shows as "memory" and "evidence" (the agent's status() puts these two there).
    status = agent.memory.status(agent.rings.nbytes)
    consumers = status["consumers"]
    assert status["budget_bytes"] == budget.total
    assert status["allocator_reserve_bytes"] == budget.reserve == MIB // 2  # 1/16 of 8 MiB
    assert status["bytes"] == sum(c["bytes"] for c in consumers.values()) <= budget.total - budget.reserve
    assert consumers["recorder"]["bytes"] > MIB - 2 * step  # the recorder's queue got all it may hold ...
    assert consumers["live"]["bytes"] == live_page_bytes(128, 1)  # ... the live page its 128 channels ...
    # ... and the ring its floor: less the open block's room and one block of slack, and less the blocks
    # the packer held when they were cut (at most MAX_IN_PACKER: here the frames come faster than the
    # packer packs, so the oldest blocks are often still with it when the ring has to drop them).
    assert consumers[RING]["bytes"] >= budget.ring_floor - (2 + MAX_IN_PACKER) * agent.rings.block_bytes
    assert budget.ring_floor == 8 * MIB - MIB // 2 - MIB - MEMBER_MAX_BYTES - live_page_bytes(128, 1)

    evidence = agent.rings.status()
    assert evidence["blocks_evicted"]["memory"] > 0
    recorder = agent.recorder.status()
    not_recorded = recorder["frames_dropped"]["queue_full"]
    accepted = len(frames) - not_recorded
    assert not_recorded > 0 and accepted > 0
    assert agent.recorder.waiting_bytes == accepted * step  # every frame waits (charged) or is counted
    samples = _metrics(agent)
    assert samples[("edge_agent_data_path_memory_budget_bytes", "")] == budget.total
    assert samples[("edge_agent_data_path_memory_bytes", RING)] == agent.rings.nbytes
    assert samples[("edge_agent_data_path_memory_bytes", "recorder")] == agent.recorder.data_path_bytes
    assert (
        samples[("edge_agent_evidence_ring_evicted_blocks_total", "memory")]
        == evidence["blocks_evicted"]["memory"]
    )
    assert samples[("edge_agent_recording_frames_dropped_total", "queue_full")] == not_recorded


async def test_the_recorder_is_charged_for_the_rows_its_writer_has_not_written(tmp_path: Path) -> None:
    """Frames the writer has compressed but not written (its flush a minute away) are the recorder's in
    the budget: /status `memory` shows the recorder holding its writer's compressed bytes with none of
    its frames waiting, the metrics the same, and its cap is `max_pending_mb` plus MEMBER_MAX_BYTES for
    the one port; the rows reach the file at the stop."""
    agent = _agent(tmp_path, total_mb=8, pending_mb=1, recorder='flush_interval = "60s"')
    assert agent.recorder is not None
    recorder = agent.recorder
    now = time.time()  # received now: the writer closes a segment spanning segment_max_duration of these
    frames = [Frame(f.source, f.mono, now, dict(f.values)) for f in wide_frames(40)]
    await agent.start()
    try:
        assert agent.control is not None and recorder.writer is not None
        for frame in frames:
            agent._on_serial(frame)
        recorder.hand_off()

        async def compressed() -> bool:
            return recorder.waiting_bytes == 0

        await wait_until(compressed, 10, "the writer to take the frames")
        held = recorder.writer.held_bytes
        assert 0 < held < MEMBER_MAX_BYTES  # the rows, compressed and not written
        assert recorder.data_path_bytes == recorder.waiting_bytes + held == held
        status = await get_json(agent.control.url + "/status")
        assert status["memory"]["consumers"]["recorder"] == {
            "bytes": held,
            "cap_bytes": MIB + MEMBER_MAX_BYTES,
        }
        assert status["recorder"]["pending"]["compressed_bytes"] == held
        assert _metrics(agent)[("edge_agent_data_path_memory_bytes", "recorder")] == held
    finally:
        await agent.stop(time.monotonic() + 5)
    (segment,) = (tmp_path / "state" / "recordings").rglob("*.csv.gz")
    assert sum(1 for _ in csvgz.iter_rows(segment)) == len(frames) + 1


def test_the_ring_gives_way_as_the_others_grow_and_keeps_its_floor() -> None:
    """A ring alone fills what the budget leaves; another consumer growing to its cap takes its room back
    at the ring's next batch (oldest blocks dropped, counted), never below the ring's floor."""
    other = {"held": 0}
    budget = DataPathBudget(4 * MIB, {"recorder": 2 * MIB})
    budget.attach("recorder", lambda: other["held"])
    rings = EvidenceRings(3600.0, budget.ring_cap, data_path=budget)
    frames = wide_frames(2800)
    for frame in frames[:2000]:
        rings.add(frame)
    full = rings.nbytes
    assert full > 3 * MIB  # the ring used the room the recorder did not
    assert rings.blocks_evicted["memory"] > 0
    other["held"] = 2 * MIB
    for frame in frames[2000 : 2000 + CHECK_EVERY]:
        rings.add(frame)
    assert rings.nbytes + other["held"] <= budget.total - budget.reserve
    assert rings.nbytes >= budget.ring_floor - rings.block_bytes
    evicted = rings.blocks_evicted["memory"]
    assert rings.status()["budget_bytes"] == budget.total - budget.reserve - 2 * MIB
    for frame in frames[2000 + CHECK_EVERY :]:
        rings.add(frame)
        assert rings.nbytes <= budget.total - budget.reserve - 2 * MIB + frame_bytes(frame) * CHECK_EVERY
    assert rings.blocks_evicted["memory"] > evicted
    # Another consumer past the whole budget (none can be by its cap, but the ring must not count on
    # it): the ring gives up everything, and what it cannot keep is counted.
    other["held"] = budget.total
    for frame in frames[: 2 * CHECK_EVERY]:
        rings.add(frame)
    assert rings.nbytes == 0 and rings.frames_not_kept == CHECK_EVERY  # the second look's frames


@pytest.mark.parametrize(
    ("total", "caps", "ok"),
    [
        (64, {"recorder": 16, "lens": 8, "live": 3.5}, True),
        (16, {"recorder": 12}, True),
        (16, {"recorder": 12.5}, False),
    ],
)
def test_caps_must_leave_the_ring_a_quarter(total: float, caps: dict[str, float], ok: bool) -> None:
    build = lambda: DataPathBudget(int(total * MIB), {k: int(v * MIB) for k, v in caps.items()})  # noqa: E731
    if ok:  # the ring's sure part: the quarter less the allocator's reserve
        budget = build()
        assert budget.ring_floor >= total * MIB / 4 - budget.reserve
    else:
        with pytest.raises(ValueError, match=r"memory\.data_path_mb"):
            build()


def test_a_ring_cap_beyond_the_budget_is_refused() -> None:
    """A config from before the one budget that raised evidence.memory_mb past it says what to do."""
    with pytest.raises(ValueError, match=r"evidence\.memory_mb \(200 MiB\) is more than memory\.data"):
        DataPathBudget(64 * MIB, {"recorder": 16 * MIB}, ring_cap=200 * MIB)
    assert DataPathBudget(64 * MIB, {"recorder": 16 * MIB}, ring_cap=20 * MIB).ring_floor == 20 * MIB


def test_a_ring_cap_from_before_the_one_budget_still_starts_with_its_memory(tmp_path: Path) -> None:
    """An upgraded config that raised evidence.memory_mb (then the ring's own budget) and never heard of
    memory.data_path_mb starts as before: the budget grows to hold the ring's cap beside the others';
    a budget the user set is held to, and a ring cap beyond it refused."""
    head = f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[lens]\nenabled = false\n[atlas]\nenabled = false\n'
    old = tmp_path / "old.toml"
    old.write_text(head + "[evidence]\nmemory_mb = 200\n[recorder]\nmax_pending_mb = 16\n", encoding="utf-8")
    budget = DataPathBudget.from_config(load_config(old, environ={}))
    assert budget.caps["recorder"] == 16 * MIB  # and the live page's
    # Beside the allocator's reserve (a sixteenth of the total).
    assert budget.ring_cap == 200 * MIB and budget.total == budget_for(200 * MIB + sum(budget.caps.values()))
    assert budget.ring_floor == 200 * MIB
    assert budget.total - budget.reserve - sum(budget.caps.values()) - 200 * MIB < 2  # no more than that
    set_too_small = tmp_path / "new.toml"
    set_too_small.write_text(old.read_text() + "[memory]\ndata_path_mb = 64\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"evidence\.memory_mb \(200 MiB\) is more than memory\.data"):
        DataPathBudget.from_config(load_config(set_too_small, environ={}))


def test_check_config_refuses_a_budget_the_other_caps_fill(tmp_path: Path) -> None:
    """`check-config` (and `run`) exit 78 naming memory.data_path_mb and each cap, no traceback. The
    recorder's is its queue and a quarter MiB for each of the two ports' unwritten rows: without them
    the caps would leave the ring its quarter."""
    path = tmp_path / "agent.toml"
    ports = "".join(f'[[serial]]\nname = "{name}"\nurl = "loop://"\nformat = "jsonl"\n' for name in "ab")
    path.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[lens]\nenabled = false\n[atlas]\nenabled = false\n'
        "[memory]\ndata_path_mb = 16\n[recorder]\nmax_pending_mb = 8.25\n" + ports,
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent", "check-config", "--config", str(path)],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == EX_CONFIG, done.stderr
    assert "memory.data_path_mb" in done.stderr and "Traceback" not in done.stderr
    assert "(recorder 8.75, live 3.54" in done.stderr  # 8.25 + 2 x 0.25 + 3.54 > 16 - 4 >= 8.25 + 3.54
