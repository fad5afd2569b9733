"""`edge-agent lens list|sessions|destroy|cleanup` as a subprocess against the emulator."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from lens_helpers import LENS_ID, live_sessions, runner_toml

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.lens.client import LensClient
from edge_agent.lens.store import PendingCreate, SessionRecord, SessionStore

REPO = Path(__file__).resolve().parents[2]


async def edge_agent(*argv: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_") and k != "ATAI_API_KEY"}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_agent", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(REPO),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_lens_commands(emulator: ArchetypeEmulator, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emulator.base_url, emulator.api_key, str(state_dir)))
    async with LensClient(emulator.base_url, emulator.api_key) as client:
        ours = await client.create_session(LENS_ID)
        other = await client.create_session(LENS_ID)
    SessionStore(state_dir).add_session(SessionRecord(ours.session_id, LENS_ID, time.time()))

    code, out, _ = await edge_agent("lens", "--config", str(config), "list")
    assert code == 0 and LENS_ID in out and "Emulated Machine State" in out

    code, out, _ = await edge_agent("lens", "--config", str(config), "sessions")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {ours.session_id, other.session_id}
    assert lines[ours.session_id].rstrip().endswith("yes")
    assert not lines[other.session_id].rstrip().endswith("yes")

    code, out, _ = await edge_agent("lens", "--config", str(config), "destroy", other.session_id)
    assert code == 0 and f"destroyed {other.session_id}" in out
    code, out, _ = await edge_agent("lens", "--config", str(config), "cleanup")
    assert code == 0 and f"destroyed {ours.session_id}" in out
    assert live_sessions(emulator) == []
    assert SessionStore(state_dir).load().sessions == []
    code, out, _ = await edge_agent("lens", "--config", str(config), "cleanup")
    assert code == 0 and "no recorded sessions" in out
    code, out, _ = await edge_agent("lens", "--config", str(config), "destroy", "lsn-does-not-exist")
    assert code == 0 and "already gone" in out


async def test_options_after_the_action(emulator: ArchetypeEmulator, tmp_path: Path) -> None:
    """`edge-agent lens list --config X`: README says every command takes `--config PATH`, and users put
    it last; the command's own options (`--json`, the log options) go there too."""
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emulator.base_url, emulator.api_key, str(tmp_path / "state")))
    code, out, err = await edge_agent("lens", "list", "--config", str(config))
    assert code == 0 and LENS_ID in out, err
    code, out, err = await edge_agent(
        "lens", "sessions", "--config", str(config), "--json", "--log-level", "debug"
    )
    # JSON (no table header), and the debug lines the agent logs to stdout
    assert code == 0 and out.rstrip().endswith("[]") and "SESSION_ID" not in out, err
    assert '"level": "debug"' in out
    code, out, err = await edge_agent("lens", "destroy", "lsn-not-there", "--config", str(config))
    assert code == 0 and "already gone" in out, err


async def test_lens_command_errors(emulator: ArchetypeEmulator, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emulator.base_url, "wrong-key-123", str(tmp_path / "state")))
    code, _, err = await edge_agent("lens", "--config", str(config), "list")
    assert code == 77 and "refused the API key" in err and "wrong-key-123" not in err
    code, _, err = await edge_agent("lens", "--config", str(tmp_path / "missing.toml"), "list")
    assert code == 78 and "missing.toml" in err


async def test_cleanup_destroys_what_a_lost_create_made(emulator: ArchetypeEmulator, tmp_path: Path) -> None:
    """A create sent 10 s ago whose answer never came (on file as pending): cleanup finds the session
    it made in the org's list and destroys it; a session of another lens made then is left alone."""
    state_dir = tmp_path / "state"
    config = tmp_path / "agent.toml"
    config.write_text(runner_toml(emulator.base_url, emulator.api_key, str(state_dir)))
    sent = time.time() - 10.0  # older than connect + read timeouts (7 s): the search settles it
    SessionStore(state_dir).add_pending_create(PendingCreate(LENS_ID, sent, sent, in_flight=True))
    async with LensClient(emulator.base_url, emulator.api_key) as client:
        lost = await client.create_session(LENS_ID)
        other_lens = await client.register_lens("another-bench", {})
        unrelated = await client.create_session(other_lens)
        code, out, err = await edge_agent("lens", "--config", str(config), "cleanup")
        assert code == 0, err
        assert f"destroyed {lost.session_id} (made by a create whose answer was lost)" in out
        assert [s["session_id"] for s in live_sessions(emulator)] == [unrelated.session_id]
        assert SessionStore(state_dir).load().pending_creates == []
        code, out, _ = await edge_agent("lens", "--config", str(config), "cleanup")
        assert code == 0 and "no recorded sessions" in out
        await client.destroy_session(unrelated.session_id)
        await client.delete_lens(other_lens)
