"""SIGKILL with a session open: the next start destroys the orphan and streams on a new session.
The runner is a real subprocess; the emulator runs in the test over loopback."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from lens_helpers import live_sessions, recorded, runner_killed_streaming, session, wait_for


async def test_sigkill_then_restart_destroys_the_orphan(tmp_path: Path) -> None:
    async with runner_killed_streaming(tmp_path, seed=3) as run:
        emu, state_dir, orphan = run.emu, run.state_dir, run.orphan
        assert recorded(state_dir) == [orphan]
        assert session(emu, orphan)["status"] == "SESSION_STATUS_RUNNING"  # the orphan holds its slot

        second = await run.start()

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
        logs = run.log_file.read_text()
        assert "lens_session_destroyed" in logs and "lens_inference" in logs
        # Neither the configured key nor its echo in the create reply is in logs or state.
        assert run.key not in logs
        for path in state_dir.rglob("*"):
            if path.is_file():
                assert run.key not in path.read_text(errors="replace")
