"""Real pseudo-terminals for the serial tests: the test writes the device side (master), the
project's reader opens the slave path like any tty."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers are imported by name (--import-mode=importlib)

from linked_pty import LinkedPty

from edge_agent.logs import setup_logging


class Pty(LinkedPty):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    async def write(self, data: bytes, within: float = 5.0) -> None:
        """Write all of `data`, waiting (boundedly) while the reader drains the tty buffer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                if loop.time() > deadline:
                    raise TimeoutError("the reader did not drain the pty") from None
                await asyncio.sleep(0.005)

    def close(self) -> None:
        """Unplug: the device side goes away and so does our handle on the slave."""
        if not self.closed:
            self.closed = True
            self.unlink_and_close()


@pytest.fixture
def make_pty() -> Iterator[Callable[[], Pty]]:
    made: list[Pty] = []

    def make() -> Pty:
        made.append(Pty())
        return made[-1]

    yield make
    for pty in made:
        pty.close()


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition on the event loop, bounded in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def until() -> Callable[..., object]:
    return wait_until


@pytest.fixture
def captured_logs() -> Iterator[Callable[[], list[Any]]]:
    """The agent's log lines (JSON) while the test runs, as dicts."""
    stream = io.StringIO()
    setup_logging("info", json=True, stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    setup_logging("info", json=True, stream=io.StringIO())
