"""Real peers for the recording tests: moto's S3 server (ThreadedMotoServer) on 127.0.0.1 behind a
TCP proxy the tests can take down (connections refused), and the Atlas emulator."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))  # the whole-agent helpers (Sim, config, waits)

# moto reads this when first imported: parts of 64 KiB let the tests drive multipart uploads with
# segments of a few hundred KiB (AWS's own minimum is 5 MiB; see s3.part_size_mb).
os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(64 * 1024))

from recorder_helpers import BUCKET, S3Proxy, start_moto  # noqa: E402

from edge_agent.config import EmulatorSection  # noqa: E402
from edge_agent.emulators.atlas import AtlasEmulator  # noqa: E402


@pytest.fixture
def s3_server() -> Iterator[str]:
    """The S3 API (moto) on an ephemeral loopback port, with an empty bucket; yields its URL."""
    server, url = start_moto()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def s3_proxy(s3_server: str) -> AsyncIterator[S3Proxy]:
    proxy = S3Proxy(s3_server)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


@pytest.fixture
async def atlas() -> AsyncIterator[AtlasEmulator]:
    from e2e_helpers import TOKEN

    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    async with AtlasEmulator(settings, seed=14, report_delay=60.0) as emu:
        yield emu


__all__ = ["BUCKET"]
