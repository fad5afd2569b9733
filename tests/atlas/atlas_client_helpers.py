"""Helpers shared by the Atlas client tests (a plain module: conftest files are not for importing)."""

from __future__ import annotations

from edge_agent.emulators.atlas import AtlasEmulator

ATLAS_TEST_TOKEN = "atlas-client-test-token-5f0c"
SYSTEM_ID = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def requests_seen(emulator: AtlasEmulator) -> int:
    """API requests that reached the emulator, counted by a zero-length latency fault."""
    return emulator.faults.injected["latency"]


def count_requests(emulator: AtlasEmulator) -> None:
    emulator.faults.update({"latency": 1e-6})
