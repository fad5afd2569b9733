"""The real Atlas emulator on 127.0.0.1 (ephemeral port) for the whole-agent tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers are imported by name (importlib import mode)

from e2e_helpers import TOKEN

from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator


@pytest.fixture
async def atlas() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=11, report_delay=60.0) as emu:
        yield emu
