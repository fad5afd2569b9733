"""Peers for the `edge-agent run` tests, all owned by the test process: the Archetype and Atlas
emulators (127.0.0.1, ephemeral ports), a pty for the serial port, a notify socket for systemd."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helpers are imported by name (--import-mode=importlib)

from agent_harness import AgentFactory, AgentProcess, NotifySocket, Pty, config_toml

from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

EMULATOR_ATLAS_CREDENTIAL = "e2e-atlas-token"
ATAI_KEY = "e2e-atai-key"


@pytest.fixture
async def archetype() -> AsyncIterator[ArchetypeEmulator]:
    settings = EmulatorSection.model_validate(
        {"api_key": ATAI_KEY, "warmup": 0.2, "inference_interval": 0.05, "baseline_windows": 2}
    )
    emu = ArchetypeEmulator(settings, port=0, seed=7)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture
async def atlas() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate({"atlas_port": 0, "atlas_token": EMULATOR_ATLAS_CREDENTIAL})
    async with AtlasEmulator(settings, seed=7, report_delay=60.0) as emu:
        yield emu


@pytest.fixture
async def pty() -> AsyncIterator[Pty]:
    made = Pty()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def notify() -> AsyncIterator[NotifySocket]:
    sock = NotifySocket()
    sock.start()
    try:
        yield sock
    finally:
        await sock.close()


@pytest.fixture
async def run_agent(
    tmp_path: Path, notify: NotifySocket, pty: Pty, atlas: AtlasEmulator, archetype: ArchetypeEmulator
) -> AsyncIterator[AgentFactory]:
    """`await run_agent(config_text)`: write the config, start `edge-agent run`, wait for READY=1.

    It takes the pty and the emulators so that they are torn down after its agents stop: an agent
    still running would retry its `/dev/pts/N` and the emulators' ports once they are freed, and the
    kernel hands both to other tests running beside this one (another test's pty read by this agent)."""
    started: list[AgentProcess] = []

    async def start(config_text: str, wait_ready: bool = True, **kwargs: Any) -> AgentProcess:
        path = tmp_path / "agent.toml"
        path.write_text(config_text)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        agent = AgentProcess(path, notify, home, **kwargs)
        started.append(agent)
        await agent.start()
        if wait_ready:
            await agent.wait_ready()
        return agent

    yield start
    for agent in started:
        await agent.close()


@pytest.fixture
def make_config(
    tmp_path: Path, archetype: ArchetypeEmulator, atlas: AtlasEmulator, pty: Pty
) -> Callable[..., str]:
    """The config of a healthy bench: the pty, both emulators; keyword arguments override."""

    def make(**overrides: Any) -> str:
        settings: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "serial_url": pty.path,
            "lens_url": archetype.base_url,
            "lens_key": ATAI_KEY,
            "atlas_url": atlas.base_url,
            "atlas_token": EMULATOR_ATLAS_CREDENTIAL,
        }
        settings.update(overrides)
        return config_toml(**settings)

    return make
