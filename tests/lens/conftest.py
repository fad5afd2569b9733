"""Fixtures for lens tests: a fast Archetype emulator on an ephemeral loopback port."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lens_helpers import fast_emulator_settings

from edge_agent.emulators.archetype import ArchetypeEmulator


@pytest.fixture
async def emulator() -> AsyncIterator[ArchetypeEmulator]:
    emu = ArchetypeEmulator(fast_emulator_settings(), port=0, seed=7)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
