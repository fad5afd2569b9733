"""A stop that closes an incident still sends its plot, or says in Atlas why it could not.

The demo's Ctrl-C once logged `evidence_files_missing ... .png`: the incident the stop closed went to
Atlas with its CSV and JSON but without its picture, and nothing in the issue said so (the plot job
skipped drawing while the agent stopped). Now a plot is drawn within the drain's deadline; one that
cannot be (too little time left) is named in the comment with the reason.
"""

from __future__ import annotations

import os
import time
import tty
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import v_agent_config, wait_port_open, wait_until

from edge_agent.agent import Agent
from edge_agent.atlas import evidence_files
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator


def _config(tmp_path: Path, link: Path, atlas_url: str) -> Path:
    return v_agent_config(tmp_path, link, atlas_url, bench="stop-plot", drain_deadline="60s", plots=True)


async def _stop_during_an_incident(tmp_path: Path, atlas: AtlasEmulator, drain_s: float) -> dict[str, Any]:
    """Start a real agent on a pty, raise an anomaly and stop it while the incident is open (the stop
    closes it: its final evidence is written and sent in the drain); the closing comment in Atlas."""
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "ttyBENCH"
    link.symlink_to(os.ttyname(slave))
    agent = Agent(load_config(_config(tmp_path, link, atlas.base_url), environ={}))
    stopped = False
    try:
        await agent.start()

        await wait_port_open(agent, 10)
        os.write(master, b"".join(b"%d,%.1f\n" % (i * 100, 5.0 if i < 20 else 12.0) for i in range(30)))

        async def incident_filed() -> bool:
            return any("stop-plot" in i["tags"] for i in atlas.state()["issues"])

        await wait_until(incident_filed, 20, "the incident's issue in Atlas")
        stopped = True
        assert await agent.stop(time.monotonic() + drain_s), "the outbox did not drain"
    finally:
        if not stopped:
            await agent.stop(time.monotonic() + 10)
        os.close(master)
        os.close(slave)
    (issue,) = [i for i in atlas.state()["issues"] if "stop-plot" in i["tags"]]
    closing = issue["comments"][-1]
    assert closing["content"].splitlines()[-1].endswith(":close"), closing["content"]
    return dict(closing)


async def test_the_incident_a_stop_closes_goes_to_atlas_with_its_plot(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    # 60 s: a plot takes 1-3 s of CPU, many times that on a loaded test machine.
    closing = await _stop_during_an_incident(tmp_path, atlas, drain_s=60.0)
    names = [a["attachment_name"] for a in closing["attachments"]]
    pngs = [a for a in closing["attachments"] if a["attachment_name"].endswith(".png")]
    assert len(pngs) == 1, names
    assert atlas.attachment_bytes(pngs[0]["attachment_id"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "not attached" not in closing["content"]


async def test_a_plot_the_stop_leaves_no_time_for_is_said_in_the_comment(
    tmp_path: Path, atlas: AtlasEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The time kept for the upload and the comment after a plot is longer than the drain: no time is
    # left to draw (a short drain would do the same, but would race the upload on a loaded machine).
    monkeypatch.setattr(evidence_files, "STOP_RESERVE_S", 120.0)
    closing = await _stop_during_an_incident(tmp_path, atlas, drain_s=60.0)
    names = [a["attachment_name"] for a in closing["attachments"]]
    assert [n[-4:] for n in names] == [".csv", "json"], names
    assert "The plot (PNG) is not attached: the agent was stopping" in closing["content"]
