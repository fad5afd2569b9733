"""The real Atlas emulator on 127.0.0.1 (ephemeral port) for the analysis tests; reports finish after
a short delay unless a test sets the fault switches (`report_delay`, `report_outcome`)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "reporter"))  # shared helpers, imported by name

from reporter_helpers import TOKEN

from edge_agent.config import EmulatorSection
from edge_agent.emulators.atlas import AtlasEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=7, report_delay=0.5) as emu:
        yield emu
