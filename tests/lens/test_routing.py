"""Where a lens's outputs go (issue 11): `lens.reader = "auto"` notices windows accepted and no output,
says so once, and switches reader. The core on its own, then a LensService against the emulator with
the lens routed to SSE only, and to session.read only."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
import structlog
from lens_helpers import LENS_ID, frames, lens_config, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens.protocol import LensInference
from edge_agent.lens.routing import SESSION_READ, SSE, OutputRouting

# -- the core -------------------------------------------------------------------------------------------


def test_fixed_readers_never_switch() -> None:
    for mode, reader in (("session_read", SESSION_READ), ("sse", SSE)):
        routing = OutputRouting(mode, 10.0)  # type: ignore[arg-type]
        assert routing.reader == reader and routing.settled
        assert routing.observe(0.0, 5, 0) is None and routing.observe(1000.0, 500, 0) is None
        assert routing.problem() is None and routing.summary() is None


def test_auto_switches_once_after_the_wait_counted_from_the_first_accepted_window() -> None:
    routing = OutputRouting("auto", 10.0)
    assert routing.reader == SESSION_READ and not routing.settled
    with structlog.testing.capture_logs() as logs:
        assert routing.observe(0.0, 0, 0) is None  # nothing accepted yet: no clock running
        assert routing.observe(50.0, 0, 0) is None
        assert routing.observe(60.0, 3, 0) is None  # the wait starts here
        assert routing.observe(69.9, 12, 0) is None
        assert routing.observe(70.0, 13, 0) == SSE
        assert routing.problem() is not None and "switched to SSE" in routing.problem()  # type: ignore[operator]
        assert routing.observe(71.0, 14, 1) is None  # the first output on SSE settles the route
    assert routing.settled and routing.reader == SSE and routing.problem() is None
    assert routing.summary() == "ok: reading SSE (switched from session.read after 10 s without output)"
    assert [e["event"] for e in logs] == ["lens_output_reader_switched", "lens_output_route_found"]
    assert routing.observe(500.0, 900, 1) is None  # settled: a quiet lens later is the lens's business
    status = routing.status(500.0)
    assert status["switches"] == [{"from": "session_read", "to": "sse", "after_s": 10.0}]


def test_an_output_before_the_wait_ends_keeps_the_reader() -> None:
    routing = OutputRouting("auto", 10.0)
    assert routing.observe(0.0, 1, 0) is None
    assert routing.observe(9.0, 9, 1) is None
    assert routing.settled and routing.reader == SESSION_READ and routing.switches == []
    assert routing.summary() is None


def test_silent_on_both_readers_keeps_alternating_and_says_so_once_more() -> None:
    routing = OutputRouting("auto", 5.0)
    with structlog.testing.capture_logs() as logs:
        readers = []
        for second in range(1, 61):  # one window accepted a second, never an output
            if (switched := routing.observe(float(second), second, 0)) is not None:
                readers.append(switched)
    assert readers == [SSE, SESSION_READ] * (len(readers) // 2) + [SSE] * (len(readers) % 2)
    assert len(readers) >= 8
    assert [e["event"] for e in logs] == ["lens_output_reader_switched", "lens_no_output_on_either_reader"]
    assert "either reader" in (routing.problem() or "")


# -- against the emulator -----------------------------------------------------------------------------


class Run:
    def __init__(self, emulator: ArchetypeEmulator, state_dir: Path, **overrides: object) -> None:
        from edge_agent.lens.service import LensService

        self.inferences: list[tuple[float, LensInference]] = []
        self.service = LensService(
            lens_config(emulator, **overrides),
            state_dir,
            lambda inference: self.inferences.append((time.monotonic(), inference)),
            source="bench",
        )
        self.first_accepted: float | None = None

    async def __aenter__(self) -> Run:
        self.task = asyncio.create_task(self.service.run())
        self.feeder = asyncio.create_task(self._feed())
        return self

    async def _feed(self) -> None:
        n = 0
        while True:
            for frame in frames(n, 8):
                self.service.feed(frame)
            n += 8
            if self.first_accepted is None and self.service.streamer.stats.updates_accepted:
                self.first_accepted = time.monotonic()
            await asyncio.sleep(0.02)

    async def __aexit__(self, *exc: object) -> None:
        for task in (self.feeder, self.task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


NO_OUTPUT_AFTER = 1.5


async def test_an_sse_routed_lens_is_found_and_its_inferences_arrive(
    emulator: ArchetypeEmulator, state_dir: Path
) -> None:
    emulator.faults.update({"lens_routes": {LENS_ID: "sse"}})
    with structlog.testing.capture_logs() as logs:
        async with Run(emulator, state_dir, reader="auto", no_output_after=NO_OUTPUT_AFTER) as run:
            await wait_for(lambda: len(run.inferences) >= 5, 20, "inferences over SSE after the switch")
            routing = run.service.routing
            await wait_for(lambda: routing.settled, 5, "the route settled by the output")
    assert run.first_accepted is not None
    # Within the wait plus one switch (a check interval, an SSE connect, one inference): bounded, with
    # room for a loaded machine; without the switch no inference would come at all.
    first = run.inferences[0][0] - run.first_accepted
    assert NO_OUTPUT_AFTER <= first <= NO_OUTPUT_AFTER + 3.0, first
    assert routing.reader == SSE and routing.settled and len(routing.switches) == 1
    assert [e["event"] for e in logs].count("lens_output_reader_switched") == 1
    assert run.service.sse.connects >= 1


async def test_a_session_read_routed_lens_keeps_working_without_a_switch(
    emulator: ArchetypeEmulator, state_dir: Path
) -> None:
    emulator.faults.update({"lens_routes": {LENS_ID: "session_read"}})
    async with Run(emulator, state_dir, reader="auto", no_output_after=NO_OUTPUT_AFTER) as run:
        await wait_for(lambda: len(run.inferences) >= 5, 20, "inferences over session.read")
        await asyncio.sleep(NO_OUTPUT_AFTER)  # long enough for a wrong switch to show
        routing = run.service.routing
        assert routing.reader == SESSION_READ and routing.settled and routing.switches == []
        assert run.service.sse.connects == 0 and run.service.streamer.stats.reads_sent > 0
        count = len(run.inferences)
        await wait_for(lambda: len(run.inferences) > count + 3, 10, "inferences still coming")


@pytest.mark.parametrize("reader", ["session_read", "sse"])
async def test_a_fixed_reader_on_the_wrong_route_is_not_switched(
    emulator: ArchetypeEmulator, state_dir: Path, reader: str
) -> None:
    emulator.faults.update({"lens_routes": {LENS_ID: "sse" if reader == "session_read" else "session_read"}})
    async with Run(emulator, state_dir, reader=reader, no_output_after=0.5) as run:
        await wait_for(lambda: run.service.streamer.stats.updates_accepted >= 10, 15, "accepted windows")
        await asyncio.sleep(1.0)
        assert run.service.routing.switches == [] and run.inferences == []
