"""Fixtures of the Atlas client tests: the real Atlas emulator on 127.0.0.1 (ephemeral port) and a
client pointed at it. Retry sleeps are recorded, not slept, so the retry tests take no wall time."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module is imported by name, like lens's

from atlas_client_helpers import ATLAS_TEST_TOKEN, SleepRecorder

from edge_agent.atlas import AtlasClient, AtlasRetryPolicy
from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator


@pytest.fixture
async def atlas_emulator() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate(
        {"host": "127.0.0.1", "atlas_port": 0, "atlas_token": ATLAS_TEST_TOKEN}
    )
    async with AtlasEmulator(settings, seed=5, report_delay=60.0) as emulator:
        yield emulator


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
async def atlas(atlas_emulator: AtlasEmulator, sleeps: SleepRecorder) -> AsyncIterator[AtlasClient]:
    client = AtlasClient(
        atlas_emulator.api_url,
        atlas_emulator.token,
        connect_timeout=2.0,
        read_timeout=5.0,
        upload_timeout=10.0,
        retry=AtlasRetryPolicy(attempts=3, base=0.5, cap=5.0, max_retry_after=10.0),
        sleep=sleeps,
    )
    async with client:
        yield client
