"""Times on /status (README, "Operating it"): a wall-clock time is `<name>_wall` (seconds since the epoch,
for programs) with `<name>_at` beside it (the same instant as ISO 8601 UTC with milliseconds, for people
reading `curl` output); no other field holds an epoch time; durations and ages are `*_s`. Checked on a
whole agent's /status over HTTP mid-run: an anomaly open, a step running, one finished."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from e2e_helpers import Sim, agent_config_toml, fault_toml, get_json, step_toml, wait_until

from edge_agent.agent import Agent
from edge_agent.agent_status import with_times_at
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
DAY = 86_400.0


def epoch_times(doc: Any, now: float, path: str = "") -> dict[str, float]:
    """Every epoch time in `doc` (a number within a day of `now`, in seconds or milliseconds) by its
    path, asserting the rule: each is a `*_wall` with its `*_at` twin, and each `*_wall` has that twin."""
    found: dict[str, float] = {}
    if isinstance(doc, list):
        for item in doc:
            found.update(epoch_times(item, now, path + "[]"))
    if not isinstance(doc, dict):
        return found
    for key, value in doc.items():
        where = f"{path}.{key}"
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (abs(value - now) < DAY or abs(value / 1000.0 - now) < DAY):
            assert key.endswith("_wall") and abs(value - now) < DAY, f"{where} = {value}: an epoch time"
            found[where] = value
        if key.endswith("_wall"):
            twin = doc.get(f"{key[:-5]}_at", "(none)")
            if value is None:
                assert twin is None, f"{where} is None, its _at twin {twin!r}"
            else:
                assert isinstance(twin, str) and ISO_MS.fullmatch(twin), f"{where}'s _at twin: {twin!r}"
                assert abs(datetime.fromisoformat(twin).timestamp() - value) < 0.001, (where, value, twin)
        found.update(epoch_times(value, now, where))
    return found


def test_with_times_at_puts_an_iso_twin_beside_every_wall_time_at_any_depth() -> None:
    doc = {
        "opened_wall": 1764683212.4321,
        "runs": [{"name": "a", "ended_wall": None, "took_s": 2.5}, ({"since_wall": 5},)],
        "peak_wall": 1764683213.0,
        "peak_at": "kept as the component gave it",
        "flag_wall": True,  # not a time
        "inner": {"changed_wall": 1764683212},
    }
    assert with_times_at(doc) == {
        "opened_wall": 1764683212.4321,
        "opened_at": "2025-12-02T13:46:52.432Z",
        "runs": [
            {"name": "a", "ended_wall": None, "ended_at": None, "took_s": 2.5},
            [{"since_wall": 5, "since_at": "1970-01-01T00:00:05.000Z"}],
        ],
        "peak_wall": 1764683213.0,
        "peak_at": "kept as the component gave it",
        "flag_wall": True,
        "inner": {"changed_wall": 1764683212, "changed_at": "2025-12-02T13:46:52.000Z"},
    }
    assert list(with_times_at(doc))[:2] == ["opened_wall", "opened_at"]  # side by side for the reader


async def test_status_gives_every_wall_time_as_iso_utc_beside_its_number(
    tmp_path: Path, atlas: AtlasEmulator
) -> None:
    link = tmp_path / "ttyBENCH0"
    config = tmp_path / "agent.toml"
    config.write_text(agent_config_toml(tmp_path / "state", link, atlas.base_url), encoding="utf-8")
    scenario = tmp_path / "scenario.toml"
    body = 'name = "times"\nduration = "6s"\n' + step_toml("power_on", 0.2, 1.0) + step_toml("load", 1.5, 4.0)
    scenario.write_text(body + fault_toml("supply_v", 2.0, 3.0, 1.8, "high", "f1"), encoding="utf-8")
    agent = Agent(load_config(config, environ={}))
    sim = Sim(scenario, link, tmp_path / "oracle.jsonl")
    await agent.start()
    assert agent.control is not None
    url = agent.control.url + "/status"
    try:
        await sim.start()

        async def mid_run() -> bool:
            status = await get_json(url)
            steps = status["steps"]
            return bool(status["open_anomalies"] and steps["current"] and steps["completed"])

        await wait_until(mid_run, 15, "an open anomaly, a running step and a finished one on /status")
        status = await get_json(url)
        now = time.time()
        found = epoch_times(status, now)

        # The times a person looks for, each readable.
        for name, component in status["components"].items():
            assert ISO_MS.fullmatch(component["changed_at"]), (name, component)
        (anomaly,) = status["open_anomalies"]
        assert {"started_at", "opened_at", "peak_at"} <= set(anomaly)
        assert ISO_MS.fullmatch(status["reporter"]["run"]["started_at"])
        current, done = status["steps"]["current"], status["steps"]["completed"][0]
        assert current["name"] == "load" and ISO_MS.fullmatch(current["started_at"])
        assert done["step"] == "power_on" and ISO_MS.fullmatch(done["ended_at"])
        assert done["started_wall"] < done["ended_wall"] <= current["started_wall"] <= now
        assert len(found) >= len(status["components"]) + 6, found
        await sim.wait(15)
    finally:
        if sim.task is not None and not sim.task.done():
            await sim.stop()
        await agent.stop(time.monotonic() + 5)
