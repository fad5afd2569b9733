"""Issue 12, item 5, the whole agent: killed (SIGKILL) while it streams and reports, then restarted
with its lens record not UTF-8 and its steps state empty. Before: every start exited 1 (a crash loop
under systemd) and the previous lens session stayed alive. Now the agent starts, each damaged file is
set aside and reported (/status, the log, `edge_agent_state_files_damaged_total`), the previous
process's lens session is found in the org's session list and destroyed, and the incidents before
and after the restart each reach Atlas exactly once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from agent_harness import AgentFactory, Pty, wait_for, wait_for_port_up
from test_disk_full import (  # it puts tests/e2e and tests/state on sys.path
    SEPARATE_INCIDENTS,
    account,
    detected_incidents,
    incidents_in_atlas,
    make_anomaly,
    modes_not_private,
)
from test_run import live_lens_sessions, scrape

from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

DAMAGED = ("edge_agent_state_files_damaged_total", ())


def damage(state_dir: Path) -> dict[str, bytes]:
    files = {
        "lens_sessions.json": b"\xff\xfe\x00 not text \x81",
        "steps/state.json": b"",
    }
    for name, content in files.items():
        assert (state_dir / name).exists(), name
        (state_dir / name).write_bytes(content)
    return files


def aside_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_damaged_state_after_a_kill_the_agent_starts_reports_it_and_reaps_the_orphan(
    run_agent: AgentFactory,
    make_config: Any,
    pty: Pty,
    archetype: ArchetypeEmulator,
    atlas: AtlasEmulator,
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"
    config = make_config() + SEPARATE_INCIDENTS
    agent = await run_agent(config)
    await wait_for_port_up(agent)
    pty.start_writing()
    await wait_for(lambda: len(live_lens_sessions(archetype)) == 1, 20, "a live lens session")
    (orphan,) = [s["session_id"] for s in live_lens_sessions(archetype)]
    await make_anomaly(agent, pty)
    await wait_for(lambda: len(incidents_in_atlas(atlas)) == 1, 20, "the first incident's issue")

    agent.signal(signal.SIGKILL)
    assert await agent.wait_exit(10) == -signal.SIGKILL
    files = damage(state_dir)

    agent = await run_agent(config, wait_ready=False)
    # It starts (before: exit 1, every time). The notify socket still holds the first one's READY=1.
    await wait_for(lambda: bool(agent.events("agent_started")) or agent.exited, 20, "the restart")
    assert not agent.exited, agent.output()
    await wait_for_port_up(agent)
    await wait_for(
        lambda: (
            {s["session_id"] for s in live_lens_sessions(archetype)} - {orphan} != set()
            and orphan not in {s["session_id"] for s in live_lens_sessions(archetype)}
        ),
        30,
        "the orphan destroyed and a new session live",
    )
    status = await agent.status()
    damaged = {Path(d["path"]).relative_to(state_dir).as_posix(): d for d in status["state_files"]["damaged"]}
    assert set(damaged) == set(files), damaged
    for name, content in files.items():
        assert aside_bytes(damaged[name]["aside"]) == content  # kept for a human
        assert Path(damaged[name]["aside"]).name.startswith(Path(name).name + ".damaged-")
    assert "not UTF-8" in damaged["lens_sessions.json"]["reason"]
    assert damaged["steps/state.json"]["reason"] == "empty file"
    assert status["state_files"]["damaged_total"] == 2
    assert (await scrape(agent))[DAMAGED] == 2.0
    assert len(agent.events("state_file_damaged")) == 2

    await make_anomaly(agent, pty)
    await wait_for(lambda: len(incidents_in_atlas(atlas)) == 2, 20, "the second incident's issue")
    agent.signal(signal.SIGTERM)
    assert await agent.wait_exit(25) == 0, agent.output()
    assert live_lens_sessions(archetype) == []
    incidents = detected_incidents(state_dir)  # the agent's own record, across both processes
    assert len(incidents) == 2
    account(atlas.state(), incidents)  # each once, with its evidence; no duplicate issue or comment
    assert set(incidents_in_atlas(atlas).values()) == {1}
    # Every file the agent left in its state directory is 0600, every folder 0700 (item 8).
    assert modes_not_private(state_dir) == []
