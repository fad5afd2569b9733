"""What the lab's alerts read off the outbox (through the real metrics source, against the scripted
peer on 127.0.0.1): the queue blocked on a refused token, and the age of the oldest undelivered job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from outbox_peer import ItemHandler, ScriptedPeer, fail

from edge_agent.metrics import Metrics
from edge_agent.outbox import Outbox
from edge_agent.service.metric_sources import outbox_source

WAIT = 10.0
Make = Callable[..., Awaitable[Outbox]]


async def scrape(metrics: Metrics, name: str, **labels: str) -> float | None:
    await metrics.refresh()
    return metrics.value(name, **labels)


async def until_metric(metrics: Metrics, name: str, wanted: float, **labels: str) -> None:
    end = time.monotonic() + WAIT
    while (value := await scrape(metrics, name, **labels)) != wanted:
        if time.monotonic() > end:
            raise AssertionError(f"{name}{labels} stayed {value}, wanted {wanted}")
        await asyncio.sleep(0.02)


async def test_refused_token_shows_as_blocked_and_the_backlog_ages(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    metrics = Metrics()
    peer.default = fail(401, '{"detail": "Not authenticated"}')
    outbox = await make_outbox({"item": handler})
    metrics.add_async_source("outbox", outbox_source(outbox))
    # Before anything went wrong the series is there, at 0: the alert has something to compare.
    assert await scrape(metrics, "outbox_blocked", reason="auth") == 0
    assert await scrape(metrics, "outbox_oldest_waiting_seconds") == 0
    # Shed reasons too: increase() needs a 0 before the first shed to see it.
    assert metrics.value("outbox_shed_total", reason="quota_disk") == 0

    enqueued_at = time.monotonic()
    for i in range(3):
        await outbox.enqueue("item", f"g{i}", {"key": f"k{i}"})
    await until_metric(metrics, "outbox_blocked", 1, reason="auth")
    await asyncio.sleep(0.3)
    age = await scrape(metrics, "outbox_oldest_waiting_seconds")
    assert age is not None and 0.3 <= age <= time.monotonic() - enqueued_at + 0.5, age
    assert metrics.value("outbox_jobs", state="pending") == 3
    assert metrics.value("outbox_failed_total") in (None, 0)  # a refused token fails no job

    peer.default = None  # the token was fixed
    await until_metric(metrics, "outbox_jobs", 3, state="done")
    assert await scrape(metrics, "outbox_blocked", reason="auth") == 0
    assert await scrape(metrics, "outbox_oldest_waiting_seconds") == 0
