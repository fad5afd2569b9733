"""A full disk under the recordings (a real small tmpfs; root only, as on CI): segment writes fail
with ENOSPC, the rows of those flushes are counted as lost (`frames_dropped.write_error`), the agent's
disk-full flag goes up (/status `state_files`, /readyz), nothing crashes; once space returns the
recording goes on and the flag clears; every segment file is a valid gzip stream to its end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from e2e_helpers import agent_config_toml, step_toml, wait_until
from recorder_helpers import CapturingSim

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.recorder import csvgz

sys.path.insert(0, str(Path(__file__).parents[1] / "state"))
from state_helpers import fill_up, free_up, require_root, small_tmpfs


async def test_disk_full_counts_lost_rows_and_recovers(tmp_path: Path, atlas: AtlasEmulator) -> None:
    require_root()
    with small_tmpfs(tmp_path / "disk", "16m") as disk:
        state_dir = disk / "state"
        link = tmp_path / "ttyBENCH0"
        config_path = tmp_path / "agent.toml"
        extra = '\n[recorder]\nflush_interval = "200ms"\n'
        config_path.write_text(
            agent_config_toml(state_dir, link, atlas.base_url, extra=extra), encoding="utf-8"
        )
        scenario = tmp_path / "scenario.toml"
        scenario.write_text(
            'name = "full"\nduration = "20s"\n' + step_toml("long", 0.5, 19.0), encoding="utf-8"
        )
        agent = Agent(load_config(config_path, environ={}))
        sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl", rate=1000.0)
        await agent.start()
        assert agent.recorder is not None
        recorder = agent.recorder
        try:
            await sim.start()

            async def recording() -> bool:
                return recorder.status()["frames_recorded"] > 1000

            await wait_until(recording, 10, "frames on disk")
            fill_up(state_dir)

            async def refused() -> bool:
                s = recorder.status()
                return s["frames_dropped"]["write_error"] > 0 and agent.state_health.disk_full

            await wait_until(refused, 10, "a segment write refused for lack of space")
            assert recorder.status()["writer_alive"]
            ready, checks = agent.readiness()
            assert not ready and checks["disk"].startswith("full"), checks
            free_up(state_dir)
            before = recorder.status()["frames_recorded"]

            async def resumed() -> bool:
                return (
                    recorder.status()["frames_recorded"] > before + 1000 and not agent.state_health.disk_full
                )

            await wait_until(resumed, 10, "the recording to go on once space returned")
            await sim.stop()
        finally:
            await agent.stop(time.monotonic() + 5)
            await sim.stop()
        lost = recorder.status()["frames_dropped"]["write_error"]
        recorded = recorder.status()["frames_recorded"]
        assert recorded + lost == agent.frames_total(), (recorded, lost, agent.frames_total())
        for path in state_dir.rglob("*.csv.gz"):
            good, _ = csvgz.scan(path)
            assert good == path.stat().st_size, path
