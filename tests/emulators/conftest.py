"""Fixtures shared by the emulator tests (Atlas and Archetype). Each emulator runs on 127.0.0.1, port 0."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helper modules are imported by name

from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

ATLAS_TEST_TOKEN = "atlas-test-token"


@pytest.fixture
def atlas_settings() -> EmulatorSection:
    return EmulatorSection.model_validate(
        {"host": "127.0.0.1", "atlas_port": 0, "atlas_token": ATLAS_TEST_TOKEN}
    )


@pytest.fixture
async def atlas_emulator(atlas_settings: EmulatorSection) -> AsyncIterator[AtlasEmulator]:
    # Reports complete on the second poll so lifecycle tests never wait on a clock.
    async with AtlasEmulator(atlas_settings, seed=1234, report_delay=60.0, report_polls=2) as emulator:
        yield emulator


@pytest.fixture
async def atlas_http(atlas_emulator: AtlasEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client carrying the emulator's bearer token; paths are `/api/v1/...`."""
    timeout = aiohttp.ClientTimeout(total=20)
    headers = {"Authorization": f"Bearer {atlas_emulator.token}"}
    async with aiohttp.ClientSession(atlas_emulator.base_url + "/", headers=headers, timeout=timeout) as http:
        yield http


# --- Archetype lens emulator fixtures (owned by the Archetype emulator tests) ---------------------

ARCHETYPE_TEST_KEY = "archetype-test-key"
ARCHETYPE_DOC_LENS_ID = "lns-fd669361822b07e2-237ab3ffd79199b0"  # the curl example's lens id
ARCHETYPE_TIMEOUT = 5.0  # bound on every single wait in the archetype tests


@pytest.fixture
def archetype_settings(request: pytest.FixtureRequest) -> EmulatorSection:
    """Fast timings: warm-up 0.1 s, one inference per 0.05 s; the documented example lens is seeded.
    A test that must act within the warm-up says how long it needs (`@pytest.mark.archetype_warmup(s)`):
    on a loaded machine 0.1 s can pass before its first request."""
    marker = request.node.get_closest_marker("archetype_warmup")
    return EmulatorSection.model_validate(
        {
            "host": "127.0.0.1",
            "archetype_port": 0,
            "api_key": ARCHETYPE_TEST_KEY,
            "warmup": marker.args[0] if marker is not None else "100ms",
            "inference_interval": "50ms",
            "baseline_windows": 3,
            "lenses": [
                {"lens_id": "lns-emulated-machine-state", "lens_name": "Emulated Machine State"},
                {"lens_id": ARCHETYPE_DOC_LENS_ID, "lens_name": "Test Lens"},
            ],
        }
    )


@pytest.fixture
async def archetype_emulator(archetype_settings: EmulatorSection) -> AsyncIterator[ArchetypeEmulator]:
    async with ArchetypeEmulator(archetype_settings, seed=7, sse_heartbeat=0.2) as emulator:
        yield emulator


@pytest.fixture
async def archetype_http(archetype_emulator: ArchetypeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client with the emulator's bearer key; paths are relative to `/v0.5/`."""
    timeout = aiohttp.ClientTimeout(total=ARCHETYPE_TIMEOUT * 2)
    headers = {"Authorization": f"Bearer {archetype_emulator.api_key}"}
    async with aiohttp.ClientSession(
        archetype_emulator.base_url + "/", headers=headers, timeout=timeout
    ) as http:
        yield http


@pytest.fixture
async def archetype_admin(archetype_emulator: ArchetypeEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A client without credentials for the `/_emulator/...` admin endpoints."""
    timeout = aiohttp.ClientTimeout(total=ARCHETYPE_TIMEOUT * 2)
    async with aiohttp.ClientSession(archetype_emulator.server.base_url, timeout=timeout) as http:
        yield http
