"""Issue 12, item 5: a damaged `lens_sessions.json` after a SIGKILL. The runner (a real subprocess)
still starts (before: non-UTF-8 bytes made every start exit 1, a crash loop; garbage or an empty file
made the first start exit 1 and left the old session alive), sets the file aside, and finds the
previous process's session through the org's session list and destroys it. The account has ONE
runner slot: while the orphan lives, no new session can be created, so streaming again proves it."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from pathlib import Path

import pytest
from lens_helpers import fast_emulator_settings, live_sessions, runner_toml, wait_for
from test_crash_restart import recorded, session, start_runner

from edge_agent.emulators.archetype import ArchetypeEmulator

DAMAGE = {
    "not-utf8": b"\xff\xfe\x00\x81 not text",
    "utf8-garbage": b'{"sessions": [{"session_id": "lsn-',
    "empty": b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_record_is_set_aside_and_the_orphan_found_in_the_org_list(
    tmp_path: Path, damage: str
) -> None:
    key = "atai-test-" + secrets.token_hex(12)
    emu = ArchetypeEmulator(fast_emulator_settings(api_key=key, runner_slots=1), port=0, seed=5)
    await emu.start()
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emu.base_url, key, str(state_dir), clock_skew=5.0))
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
        first.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        (state_dir / "lens_sessions.json").write_bytes(DAMAGE[damage])

        second = await start_runner(config, log_file)
        procs.append(second)

        def replaced() -> bool:
            live = live_sessions(emu)
            return (
                session(emu, orphan)["status"] == "SESSION_STATUS_DESTROYED"
                and len(live) == 1
                and live[0]["counts"]["windows_accepted"] >= 3
            )

        await wait_for(replaced, 40, "the orphan destroyed and a new session streaming")
        assert second.returncode is None  # it started and runs
        aside = list(state_dir.glob("lens_sessions.json.damaged-*"))
        assert [p.read_bytes() for p in aside] == [DAMAGE[damage]]
        fresh = live_sessions(emu)[0]["session_id"]
        assert recorded(state_dir) == [fresh]
        events = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
        names = [e.get("event") for e in events]
        assert names.count("state_file_damaged") == 1, names
        assert "lens_records_lost" in names
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 20) == 0
        assert live_sessions(emu) == []
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await emu.stop()
