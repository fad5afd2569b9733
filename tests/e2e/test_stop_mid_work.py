"""A stop that lands while the agent is in the middle of reporting loses nothing.

The periodic tick writes an incident's final evidence when it falls due; the planner forgets the window
as it hands it out, so a tick cancelled between writing the files and enqueueing their jobs lost the
closing narrative for good (CI: an issue left with its opening comment only, the outbox drained clean).
Likewise the anomaly pump handing an incident's close to the reporter. The test holds the agent at
each of those points, stops it, lets the held work go on, and asks Atlas.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import v_agent_config, wait_port_open, wait_until

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.incidents import IncidentClosed


def _config(tmp_path: Path, link: Path, atlas_url: str) -> Path:
    return v_agent_config(tmp_path, link, atlas_url, bench="mid-work", drain_deadline="20s", plots=False)


def _lines(start_ms: int, values: list[float], step_ms: int = 100) -> bytes:
    return b"".join(b"%d,%.1f\n" % (start_ms + i * step_ms, v) for i, v in enumerate(values))


class Hold:
    """Holds one await of the agent's at a point of the test's choosing, and sees if it was cut."""

    def __init__(self) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()
        self.cancelled = 0

    async def here(self) -> None:
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def hold_final_evidence_write(agent: Agent, hold: Hold, monkeypatch: Any) -> str:
    """The tick writing an incident's final evidence (the planner has already handed the window out)."""
    assert agent.reporter is not None
    files = agent.reporter.files
    real_write = files.write

    async def held_write(disk_stem: str, *args: Any, **kwargs: Any) -> Any:
        if "." not in disk_stem:  # the final evidence (the opening one is `<id>.open`)
            await hold.here()
        return await real_write(disk_stem, *args, **kwargs)

    monkeypatch.setattr(files, "write", held_write)
    return "tick"


def hold_close_hand_over(agent: Agent, hold: Hold, monkeypatch: Any) -> str:
    """The anomaly pump handing an incident's close to the reporter (taken off the queue already)."""
    assert agent.reporter_feed is not None
    real_deliver = agent.reporter_feed._deliver

    async def held_deliver(events: Any) -> None:
        if any(isinstance(e, IncidentClosed) for e in events):
            await hold.here()
        await real_deliver(events)

    monkeypatch.setattr(agent.reporter_feed, "_deliver", held_deliver)
    return "anomalies"


@pytest.mark.parametrize("hold_at", [hold_final_evidence_write, hold_close_hand_over])
async def test_a_stop_while_the_agent_is_reporting_an_incident_still_delivers_its_closing_narrative(
    tmp_path: Path, atlas: AtlasEmulator, monkeypatch: Any, hold_at: Callable[[Agent, Hold, Any], str]
) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    link = tmp_path / "ttyBENCH"
    link.symlink_to(os.ttyname(slave))
    agent = Agent(load_config(_config(tmp_path, link, atlas.base_url), environ={}))
    hold = Hold()
    component = hold_at(agent, hold, monkeypatch)
    stopping: asyncio.Task[bool] | None = None
    try:
        await agent.start()

        await wait_port_open(agent, 10)
        # 2 s normal, 1 s over the limit, then 5 s normal: on the device's clock the anomaly clears,
        # the incident's quiet period passes and its final evidence (end + post) falls due.
        os.write(master, _lines(0, [5.0] * 20 + [12.0] * 10 + [5.0] * 50))

        async def held() -> bool:
            return hold.entered.is_set()

        await wait_until(held, 15, f"the {component} component at the held point")
        stopping = asyncio.create_task(agent.stop(time.monotonic() + 20))

        async def component_stopped() -> bool:
            return hold.cancelled > 0 or not agent.supervisor.running(component)

        await wait_until(component_stopped, 10, f"stop() to cancel the {component} component")
        hold.release.set()
        assert await asyncio.wait_for(stopping, 30), "the outbox did not drain"
    finally:
        hold.release.set()
        if stopping is None:
            await agent.stop(time.monotonic() + 10)
        os.close(master)
        os.close(slave)

    assert hold.cancelled == 0, "the stop cut the held work in half"
    (issue,) = [i for i in atlas.state()["issues"] if "mid-work" in i["tags"]]
    markers = [c["content"].splitlines()[-1] for c in issue["comments"]]
    assert markers[0].endswith(":open") and markers[-1].endswith(":close"), markers
    assert not list((tmp_path / "state" / "reporter" / "open").glob("*.json"))  # nothing left half done
