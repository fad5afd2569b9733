"""Issue 12, item 5: a damaged `lens_sessions.json` after a SIGKILL. The runner (a real subprocess)
still starts (before: non-UTF-8 bytes made every start exit 1, a crash loop; garbage or an empty file
made the first start exit 1 and left the old session alive), sets the file aside, and finds the
previous process's session through the org's session list and destroys it. The account has ONE
runner slot: while the orphan lives, no new session can be created, so streaming again proves it."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from lens_helpers import live_sessions, recorded, runner_killed_streaming, session, wait_for

DAMAGE = {
    "not-utf8": b"\xff\xfe\x00\x81 not text",
    "utf8-garbage": b'{"sessions": [{"session_id": "lsn-',
    "empty": b"",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_a_damaged_record_is_set_aside_and_the_orphan_found_in_the_org_list(
    tmp_path: Path, damage: str
) -> None:
    async with runner_killed_streaming(tmp_path, seed=5, emulator={"runner_slots": 1}, clock_skew=5.0) as run:
        emu, state_dir, orphan, log_file = run.emu, run.state_dir, run.orphan, run.log_file
        (state_dir / "lens_sessions.json").write_bytes(DAMAGE[damage])

        second = await run.start()

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
