"""The supervisor restarts failed components with backoff, stops on fatal errors and reports both."""

from __future__ import annotations

import asyncio

from edge_agent.supervisor import Supervisor


class Refused(Exception):
    pass


async def test_failed_component_is_restarted_and_visible() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.02)
    runs = 0
    healthy = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"port gone #{runs}")
        healthy.set()
        await asyncio.Event().wait()

    supervisor.spawn("serial:bench", flaky)
    await asyncio.wait_for(healthy.wait(), 5)
    status = supervisor.status()["serial:bench"]
    assert runs == 3
    assert status["restarts"] == 2
    assert status["state"] == "running"
    assert status["last_error"] == "RuntimeError: port gone #2"
    await supervisor.stop()
    assert supervisor.status()["serial:bench"]["state"] == "stopped"


async def test_fatal_error_stops_without_retrying() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.02)
    runs = 0

    async def refused() -> None:
        nonlocal runs
        runs += 1
        raise Refused("401 from the lens API")

    supervisor.spawn("lens", refused, fatal=(Refused,))
    for _ in range(100):
        if supervisor.status()["lens"]["state"] == "failed":
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert runs == 1
    assert supervisor.status()["lens"] == supervisor.components["lens"].as_dict()
    assert supervisor.components["lens"].last_error == "Refused: 401 from the lens API"
    await supervisor.stop()


async def test_one_failing_component_does_not_touch_the_others() -> None:
    supervisor = Supervisor(backoff_base=0.01, backoff_cap=0.02)
    ticks = 0

    async def steady() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def broken() -> None:
        raise OSError("no such device")

    supervisor.spawn("steady", steady)
    supervisor.spawn("broken", broken)
    await asyncio.sleep(0.2)
    assert supervisor.running("steady")
    assert not supervisor.running("broken")
    assert supervisor.components["broken"].restarts >= 2
    assert ticks > 5
    await supervisor.stop()
