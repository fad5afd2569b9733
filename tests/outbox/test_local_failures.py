"""A job whose own request keeps failing (an upload path refusing while the rest of the API answers)
backs off alone when its handler says so (`Retryable(service_wide=False)`): the other groups go on
at full speed and the outbox stays healthy. A service-wide failure (the default) pauses everyone."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import pytest

from edge_agent.outbox import Job, JobState, Json, Outbox, Retryable

WAIT = 10.0


class RefusedAlone:
    """Fails the job keyed "refused" with a 502 every time; every other job is delivered at once."""

    def __init__(self, service_wide: bool) -> None:
        self.service_wide = service_wide
        self.refusals = 0
        self.third_refusal = asyncio.Event()

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        if job.payload["key"] == "refused":
            self.refusals += 1
            if self.refusals == 3:
                self.third_refusal.set()
            raise Retryable(502, 0.3, "upload path refused", service_wide=self.service_wide)
        return {"key": job.payload["key"]}

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None


@pytest.mark.parametrize("service_wide", [False, True])
async def test_a_job_local_failure_backs_off_alone_and_a_service_wide_one_pauses_everyone(
    make_outbox: Callable[..., Awaitable[Outbox]], service_wide: bool
) -> None:
    handler = RefusedAlone(service_wide)
    # A long service-wide pause after a few failures makes the difference visible.
    outbox = await make_outbox({"item": handler}, section={"retry_base": 1.0, "retry_cap": 3.0})
    await outbox.enqueue("item", "upload", {"key": "refused"})
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    await asyncio.wait_for(handler.third_refusal.wait(), WAIT)
    healthy_then = outbox.healthy()
    started = loop.time()
    ids = [await outbox.enqueue("item", f"comments-{i}", {"key": str(i)}) for i in range(20)]
    while loop.time() < end:
        jobs = [await outbox.job(i) for i in ids]
        if all(j is not None and j.state is JobState.DONE for j in jobs):
            break
        await asyncio.sleep(0.02)
    took = loop.time() - started
    states = [j.state if (j := await outbox.job(i)) is not None else None for i in ids]
    if service_wide:
        # The whole queue waits out each pause the refused job's failures make.
        assert not healthy_then and took > 1.0
    else:
        assert healthy_then and took < 1.0 and states == [JobState.DONE] * 20
    # Either way the refused job is retried on its own backoff (at least the 0.3 s it asked for).
    assert handler.refusals <= 3 + (loop.time() - started) / 0.3 + 1
