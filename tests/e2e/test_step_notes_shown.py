"""/status and the live page show a step's note as Atlas gets it, never the agent's placeholders.

The note names each anomaly's Atlas issue, which may not be filed yet when the step ends; it was kept
as `{issue:<incident-id>}` and shown that way (the agent's internal id in braces). Now /status and the
live page render it with the one function the outcome job uses: "pending (incident ...)" while the
issue job waits, the Atlas issue id once it is delivered. A real agent on a pty, Atlas emulated.
"""

from __future__ import annotations

import os
import time
import tty
from pathlib import Path
from typing import Any

import aiohttp
from e2e_helpers import SYSTEM_ID, v_agent_config, wait_port_open, wait_until

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator


def _config(tmp_path: Path, link: Path, atlas_url: str) -> Path:
    sections = f"""
[steps]
system_id = "{SYSTEM_ID}"
"""
    return v_agent_config(
        tmp_path, link, atlas_url, bench="notes", drain_deadline="20s", plots=False, sections=sections
    )


async def test_status_and_the_live_page_show_the_note_as_atlas_gets_it(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    atlas.faults.update({"error_rate": 1.0, "path_pattern": "/issues$", "methods": ["POST"]})  # not filed yet
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "ttyBENCH"
    link.symlink_to(os.ttyname(slave))
    agent = Agent(load_config(_config(tmp_path, link, atlas.base_url), environ={}))
    try:
        await agent.start()
        assert agent.control is not None
        url = agent.control.url

        await wait_port_open(agent, 10)
        values = [5.0] * 10 + [12.0] * 10 + [5.0] * 10
        data = b"#STEP START load_test\n" + b"".join(
            b"%d,%.1f\n" % (i * 100, v) for i, v in enumerate(values)
        )
        os.write(master, data + b"#STEP END load_test\n")

        async with aiohttp.ClientSession() as http:

            async def notes() -> tuple[str, str]:
                async with http.get(url + "/status") as response:
                    status: dict[str, Any] = await response.json()
                async with http.get(url + "/live/snapshot?span=60") as response:
                    page: dict[str, Any] = await response.json()
                (shown,) = status["steps"]["completed"] or [{"exception": ""}]
                (drawn,) = page["steps"]["completed"] or [{"exception": ""}]
                return str(shown["exception"] or ""), str(drawn["exception"] or "")

            async def both_noted() -> bool:
                return all("issue " in note for note in await notes())

            await wait_until(both_noted, 15, "the step's note on /status and the live page")
            pending = await notes()
            for note in pending:
                assert "{issue:" not in note and "issue pending (incident " in note, note

            atlas.faults.reset()  # Atlas files the issue: the notes name it

            async def issue_filed() -> bool:
                return any("notes" in i["tags"] for i in atlas.state()["issues"])

            await wait_until(issue_filed, 15, "the issue in Atlas")
            (issue,) = [i for i in atlas.state()["issues"] if "notes" in i["tags"]]
            (tag,) = [t for t in issue["tags"] if t.startswith("edge-agent:")]
            for note in pending:  # the agent's incident id, readable, where the issue id will be
                assert f"[medium, issue pending (incident {tag.removeprefix('edge-agent:')})]" in note, note

            async def both_name_the_issue() -> bool:
                return all(f"issue {issue['uuid']}" in note for note in await notes())

            await wait_until(both_name_the_issue, 15, "the Atlas issue id on /status and the live page")
    finally:
        await agent.stop(time.monotonic() + 20)
        os.close(master)
        os.close(slave)
    (run,) = atlas.state()["test_runs"]
    (step,) = run["test_cards"][0]["test_steps"]
    assert f"issue {issue['uuid']}" in step["exception"]  # what Atlas got: the same text
