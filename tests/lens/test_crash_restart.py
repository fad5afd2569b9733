"""SIGKILL with a session open: the next start destroys the orphan and streams on a new session.
The runner is a real subprocess; the emulator runs in the test over loopback."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from lens_helpers import fast_emulator_settings, live_sessions, runner_toml, wait_for

from edge_agent.emulators.archetype import ArchetypeEmulator

REPO = Path(__file__).resolve().parents[2]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_") and k != "ATAI_API_KEY"}
    env["PYTHONPATH"] = str(REPO)
    return env


async def start_runner(config: Path, log_file: Path) -> asyncio.subprocess.Process:
    out = log_file.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "edge_agent.lens.runner", "--config", str(config)],
            *["--generate", "--rate", "400"],
            stdout=out, stderr=out, env=clean_env(), cwd=str(REPO),
        )  # fmt: skip
    finally:
        out.close()


def session(emu: ArchetypeEmulator, session_id: str) -> dict[str, Any]:
    return next(s for s in emu.state()["sessions"] if s["session_id"] == session_id)


def recorded(state_dir: Path) -> list[str]:
    path = state_dir / "lens_sessions.json"
    if not path.exists():
        return []
    return [s["session_id"] for s in json.loads(path.read_text())["sessions"]]


async def test_sigkill_then_restart_destroys_the_orphan(tmp_path: Path) -> None:
    key = "atai-test-" + secrets.token_hex(12)
    emu = ArchetypeEmulator(fast_emulator_settings(api_key=key), port=0, seed=3)
    await emu.start()
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emu.base_url, key, str(state_dir)))
    log_file = tmp_path / "runner.log"
    procs: list[asyncio.subprocess.Process] = []
    try:
        first = await start_runner(config, log_file)
        procs.append(first)

        def first_streaming() -> bool:
            live = live_sessions(emu)
            return len(live) == 1 and live[0]["counts"]["windows_accepted"] >= 3 and bool(recorded(state_dir))

        await wait_for(first_streaming, 30, "the first run to stream")
        orphan = live_sessions(emu)[0]["session_id"]
        assert recorded(state_dir) == [orphan]
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        assert session(emu, orphan)["status"] == "SESSION_STATUS_RUNNING"  # the orphan holds its slot

        second = await start_runner(config, log_file)
        procs.append(second)

        def replaced() -> bool:
            live = live_sessions(emu)
            return (
                session(emu, orphan)["status"] == "SESSION_STATUS_DESTROYED"
                and len(live) == 1
                and live[0]["session_id"] != orphan
                and live[0]["counts"]["windows_accepted"] >= 3
                and live[0]["counts"]["inferences"] >= 1
            )

        await wait_for(replaced, 30, "the orphan destroyed and a new session streaming")
        fresh = live_sessions(emu)[0]["session_id"]
        assert recorded(state_dir) == [fresh]
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 20) == 0
        assert live_sessions(emu) == []
        assert recorded(state_dir) == []
        assert emu.state()["runner_slots"]["in_use"] == 0
        logs = log_file.read_text()
        assert "lens_session_destroyed" in logs and "lens_inference" in logs
        # Neither the configured key nor its echo in the create reply is in logs or state.
        assert key not in logs
        for path in state_dir.rglob("*"):
            if path.is_file():
                assert key not in path.read_text(errors="replace")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await emu.stop()
