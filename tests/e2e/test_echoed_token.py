"""Issue 11: an error page that echoes the Authorization header, cut at any offset inside the token,
leaves no piece of 4 or more of its first characters in any exception, log line, outbox row or
/status answer. Through the real clients for every offset, then through the whole agent."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from e2e_helpers import TOKEN, Sim, agent_config_toml, fault_toml, get_json, wait_until

from edge_agent.agent import Agent
from edge_agent.atlas import AtlasClient, AtlasError, AtlasRetryPolicy
from edge_agent.config import EmulatorSection, load_config
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.lens.client import LensClient, RetryPolicy
from edge_agent.lens.errors import LensError
from edge_agent.logs import setup_logging

# Random-looking, like real credentials: a prefix of them does not occur in ordinary text.
ATLAS_SECRET = "Zq7vK2mP9xR4tW8yB3nL6cF1hJ5dG0sA"
LENS_SECRET = "Hn4Tw9Lp2Xc7Vb5Qm8Rk3Fj6Gd1Sz0Ya"


def leaks(text: str, secret: str) -> list[str]:
    return [secret[:n] for n in range(4, len(secret) + 1) if secret[:n] in text]


@pytest.fixture
async def echoing_atlas() -> AsyncIterator[AtlasEmulator]:
    settings = EmulatorSection.model_validate(
        {"host": "127.0.0.1", "atlas_port": 0, "atlas_token": ATLAS_SECRET}
    )
    async with AtlasEmulator(settings, seed=3, report_delay=60.0) as emu:
        yield emu


async def test_every_cut_of_an_echoed_token_through_the_real_clients(echoing_atlas: AtlasEmulator) -> None:
    stream = io.StringIO()
    setup_logging(
        "debug", stream=stream, json=True
    )  # no secrets registered: the transport alone must hide it
    lens_settings = EmulatorSection.model_validate(
        {"host": "127.0.0.1", "archetype_port": 0, "api_key": LENS_SECRET}
    )
    texts: list[str] = []

    async def no_sleep(delay: float) -> None:
        return None

    async with ArchetypeEmulator(lens_settings, seed=3) as lens_emu:
        atlas = AtlasClient(
            echoing_atlas.api_url, ATLAS_SECRET, retry=AtlasRetryPolicy(attempts=2), sleep=no_sleep
        )
        lens = LensClient(lens_emu.base_url, LENS_SECRET, retry=RetryPolicy(attempts=2), sleep=no_sleep)
        try:
            for status in (400, 502):  # permanent, and retried (each retry is logged with the error)
                for emu in (echoing_atlas, lens_emu):
                    emu.faults.update({"echo_auth_status": status})
                for cut in [*range(len(ATLAS_SECRET) + 1), -1]:
                    echoing_atlas.faults.update({"echo_auth_cut": cut})
                    lens_emu.faults.update({"echo_auth_cut": cut})
                    with pytest.raises(AtlasError) as atlas_err:
                        await atlas.list_issues()
                    with pytest.raises(LensError) as lens_err:
                        await lens.list_sessions()
                    for err in (atlas_err.value, lens_err.value):
                        fields = [getattr(err, name, None) for name in ("detail", "errors", "message")]
                        texts += [str(err), repr(err), json.dumps(fields)]
        finally:
            await atlas.close()
            await lens.close()
        injected = lens_emu.faults.injected["echo_auth"]
    assert echoing_atlas.faults.injected["echo_auth"] == injected == 3 * (len(ATLAS_SECRET) + 2)
    logged = stream.getvalue()
    assert "atlas_api_retry" in logged and "lens_api_retry" in logged
    for text in [*texts, logged]:
        assert leaks(text, ATLAS_SECRET) == [] and leaks(text, LENS_SECRET) == [], text[:300]


async def test_the_whole_agent_behind_an_echoing_proxy_keeps_the_token_everywhere_out(
    tmp_path: Path, echoing_atlas: AtlasEmulator
) -> None:
    stream = io.StringIO()
    setup_logging("debug", stream=stream, json=True)
    link, state_dir = tmp_path / "ttyBENCH0", tmp_path / "state"
    config_path = tmp_path / "agent.toml"
    toml = agent_config_toml(state_dir, link, echoing_atlas.base_url).replace(TOKEN, ATLAS_SECRET)
    config_path.write_text(toml, encoding="utf-8")
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        'name = "echo"\nduration = "2s"\n' + fault_toml("supply_v", 0.5, 0.4, 1.5, "high", "f1"),
        encoding="utf-8",
    )
    # Permanent refusals (400) for what the run sends first, then a retried 502, each echoing a
    # different cut of the token.
    echoing_atlas.faults.update({"echo_auth_status": 400, "echo_auth_cut": 13, "methods": ["POST"]})
    agent = Agent(load_config(config_path, environ={}))
    sim = Sim(scenario, link, tmp_path / "oracle.jsonl")
    await agent.start()
    assert agent.control is not None
    try:
        await sim.start()
        await sim.wait(15)
        await wait_until(lambda: _failed_jobs(agent), 15, "a job failed by the echoing proxy")
        echoing_atlas.faults.update({"echo_auth_status": 502, "echo_auth_cut": 21, "methods": []})
        before = echoing_atlas.faults.injected["echo_auth"]
        await agent.outbox.enqueue("atlas.session", "echo", {"title": "probe", "not_before": ""})
        await wait_until(_after(echoing_atlas, before + 3), 15, "retries against the 502 page")
        status = await get_json(agent.control.url + "/status")
    finally:
        await agent.stop(time.monotonic() + 3)
        if sim.task is not None and not sim.task.done():
            await sim.stop()
    rows = _every_row(state_dir)
    assert "Authorization" in rows  # the echo page's text reached the stored failures, scrubbed
    assert status["outbox"]["failures"], status["outbox"]
    for name, text in (("log", stream.getvalue()), ("outbox rows", rows), ("/status", json.dumps(status))):
        assert leaks(text, ATLAS_SECRET) == [], name


async def _failed_jobs(agent: Agent) -> bool:
    return bool((await agent.outbox.status())["depth"].get("failed", 0))


def _after(emu: AtlasEmulator, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return emu.faults.injected["echo_auth"] >= count

    return check


def _every_row(state_dir: Path) -> str:
    """Every value of every table of the outbox database, as text."""
    db = next(iter(sorted(state_dir.rglob("outbox.sqlite3"))))
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in con.execute(f"SELECT * FROM {table}"))
    finally:
        con.close()
