"""The outbox delivering to a real HTTP peer: order, dependencies, retries, failures, idempotency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

from outbox_peer import Act, ItemHandler, ScriptedPeer, fail

from edge_agent.outbox import BatchRef, Job, JobSpec, JobState, Json, Outbox, Retryable, RetryPolicy

WAIT = 10.0  # bound on every wait in these tests


async def settle(outbox: Outbox, ids: Iterable[int], states: Iterable[JobState] = (JobState.DONE,)) -> None:
    """Wait (bounded) until every job in `ids` is in one of `states`."""
    wanted, allowed = list(ids), set(states)
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while loop.time() < end:
        jobs = [await outbox.job(i) for i in wanted]
        if all(j is not None and j.state in allowed for j in jobs):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"jobs not settled in {WAIT} s: {[(j.id, j.state) for j in jobs if j]}")


async def until(predicate: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


Make = Callable[..., Awaitable[Outbox]]


async def test_jobs_of_a_group_are_delivered_in_order_and_groups_in_parallel(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    # The first job of each group is slow: without per-group order, its successors would overtake it.
    for g in range(4):
        peer.script(f"g{g}-0", Act("delay", seconds=0.3))
    outbox = await make_outbox({"item": handler}, concurrency=4)
    ids = {}
    for i in range(5):
        for g in range(4):
            ids[(g, i)] = await outbox.enqueue("item", f"g{g}", {"key": f"g{g}-{i}"})
    await settle(outbox, ids.values())

    assert all(n == 1 for n in peer.creates.values()) and len(peer.creates) == 20
    for g in range(4):
        order = [key for _, key in peer.posts if key.startswith(f"g{g}-")]
        assert order == [f"g{g}-{i}" for i in range(5)]
    assert 2 <= peer.max_in_flight <= 4  # groups overlap, within the concurrency limit


async def test_dependency_results_reach_the_handler_and_wait_for_retries(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    peer.script("session", fail(503), fail(503))
    outbox = await make_outbox({"item": handler})
    ids = await outbox.enqueue_many(
        [
            JobSpec("item", "run", {"key": "session"}),
            JobSpec("item", "anomaly-1", {"key": "evidence"}, deps=(BatchRef(0),)),
            JobSpec("item", "anomaly-1", {"key": "issue"}, deps=(BatchRef(0), BatchRef(1))),
        ]
    )
    await settle(outbox, ids)

    session, evidence = peer.records["session"]["id"], peer.records["evidence"]["id"]
    assert peer.records["evidence"]["after"] == [session]
    assert peer.records["issue"]["after"] == [session, evidence]
    assert handler.seen_deps["issue"] == {ids[0]: peer.records["session"], ids[1]: peer.records["evidence"]}
    # The evidence was not sent before the session existed.
    assert [k for _, k in peer.posts] == ["session", "session", "session", "evidence", "issue"]
    assert (await outbox.job(ids[0])).attempts == 3  # type: ignore[union-attr]


async def test_5xx_is_retried_with_backoff_and_creates_once(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    peer.script("k", fail(500), fail(502), fail(503))
    outbox = await make_outbox({"item": handler})
    job_id = await outbox.enqueue("item", "g", {"key": "k"})
    await settle(outbox, [job_id])

    job = await outbox.job(job_id)
    assert job is not None and job.attempts == 4 and job.result == peer.records["k"]
    assert peer.creates["k"] == 1
    assert peer.lookups["k"] == 3  # a 5xx may have been acted on: looked up before each re-send
    assert outbox.counters["retries"] == 3
    gaps = [b - a for (a, _), (b, _) in zip(peer.posts, peer.posts[1:], strict=False)]
    assert all(gap >= 0.004 for gap in gaps)  # backoff base 0.01 s, half jittered


async def test_retry_after_is_honoured(make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler) -> None:
    peer.script("k", fail(429, "slow down", **{"Retry-After": "1"}))
    outbox = await make_outbox({"item": handler})
    job_id = await outbox.enqueue("item", "g", {"key": "k"})
    await settle(outbox, [job_id])

    (first, _), (second, _) = peer.posts
    assert 0.95 <= second - first < 5.0
    assert peer.lookups["k"] == 0  # a 429 was not acted on: no look-up needed
    assert peer.creates["k"] == 1


async def test_4xx_is_kept_failed_with_the_answer_and_its_dependants_fail(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    detail = json.dumps({"detail": [{"loc": ["body", "title"], "msg": "field required"}]})
    peer.script("bad", fail(422, detail))
    outbox = await make_outbox({"item": handler})
    bad = await outbox.enqueue("item", "a1", {"key": "bad"})
    child = await outbox.enqueue("item", "a1", {"key": "child"}, deps=[bad])
    grandchild = await outbox.enqueue("item", "a2", {"key": "grandchild"}, deps=[child])
    sibling = await outbox.enqueue("item", "a1", {"key": "sibling"})  # same group, independent
    await settle(outbox, [bad, child, grandchild], [JobState.FAILED])
    await settle(outbox, [sibling])
    await asyncio.sleep(0.3)  # many backoff periods: a retry would have happened by now

    assert [k for _, k in peer.posts] == ["bad", "sibling"]
    failed = await outbox.job(bad)
    assert failed is not None and failed.failure is not None
    assert failed.failure["status"] == 422 and failed.failure["body"] == detail
    status = await outbox.status()
    assert status["depth"]["failed"] == 3
    by_id = {f["id"]: f for f in status["failures"]}
    assert by_id[bad]["body"] == detail
    assert by_id[child]["reason"] == f"dependency failed (job {bad})"
    assert by_id[grandchild]["reason"] == f"dependency failed (job {child})"
    # A job added later on top of a failed one fails at once instead of waiting forever.
    late = await outbox.enqueue("item", "a3", {"key": "late"}, deps=[bad])
    assert (await outbox.job(late)).state is JobState.FAILED  # type: ignore[union-attr]


async def test_timeout_after_the_server_acted_is_adopted_not_resent(
    make_outbox: Make, peer: ScriptedPeer
) -> None:
    peer.script("k", Act("hang_after_create", seconds=3.0))
    handler = ItemHandler(peer.url, timeout=0.3)
    try:
        outbox = await make_outbox({"item": handler})
        job_id = await outbox.enqueue("item", "g", {"key": "k"})
        await settle(outbox, [job_id])
    finally:
        await handler.close()

    job = await outbox.job(job_id)
    assert job is not None and job.result == peer.records["k"]
    assert peer.creates["k"] == 1 and len(peer.posts) == 1 and peer.lookups["k"] == 1
    assert outbox.counters["adopted"] == 1


async def test_connection_dropped_after_create_is_adopted(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    peer.script("k", Act("drop_after_create"))
    outbox = await make_outbox({"item": handler})
    first = await outbox.enqueue("item", "g", {"key": "k"})
    second = await outbox.enqueue("item", "g", {"key": "after"}, deps=[first])
    await settle(outbox, [first, second])

    assert peer.creates["k"] == 1 and len([k for _, k in peer.posts if k == "k"]) == 1
    assert peer.records["after"]["after"] == [peer.records["k"]["id"]]  # the adopted result flows on


async def test_outage_then_recovery_delivers_everything_once(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    await peer.refuse()
    outbox = await make_outbox({"item": handler})
    ids = [await outbox.enqueue("item", f"g{i % 3}", {"key": f"k{i}"}) for i in range(30)]
    await until(lambda: outbox.counters.get("retries", 0) >= 3, "retries during the outage")
    status = await outbox.status()
    assert status["service_failures"] >= 3 and status["depth"]["done"] == 0
    # During the outage one job probes at a time; the other 29 are not hammering a dead service.
    assert outbox.counters["retries"] < 30

    await peer.start()
    await settle(outbox, ids)
    assert len(peer.creates) == 30 and set(peer.creates.values()) == {1}
    assert sum(peer.lookups.values()) == 0  # refused connections are known not to have been sent


async def test_bad_token_blocks_the_queue_instead_of_failing_jobs(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    peer.default = fail(401, '{"detail": "Not authenticated"}')
    outbox = await make_outbox({"item": handler})
    ids = [await outbox.enqueue("item", f"g{i}", {"key": f"k{i}"}) for i in range(10)]
    await until(lambda: len(peer.posts) >= 2, "auth probes")

    status = await outbox.status()
    assert status["blocked"]["reason"] == "auth" and status["blocked"]["status"] == 401
    assert 0 <= status["blocked"]["refused_ago_s"] < 30 and "since" not in status["blocked"]  # an age
    assert status["depth"]["failed"] == 0
    assert len(peer.posts) < 10  # probes, not the whole queue

    peer.default = None  # the token was fixed
    await settle(outbox, ids)
    assert (await outbox.status())["blocked"] is None
    assert set(peer.creates.values()) == {1} and len(peer.creates) == 10


async def test_never_retries_forever(make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler) -> None:
    peer.default = fail(503, "down for maintenance")
    policy = RetryPolicy(base=0.01, cap=0.05, max_attempts=3)
    outbox = await make_outbox({"item": handler}, policy=policy)
    job_id = await outbox.enqueue("item", "g", {"key": "k"})
    child = await outbox.enqueue("item", "g2", {"key": "child"}, deps=[job_id])
    await settle(outbox, [job_id, child], [JobState.FAILED])

    job = await outbox.job(job_id)
    assert job is not None and job.failure is not None
    assert job.failure["reason"] == "gave up after 3 attempts" and job.failure["status"] == 503
    assert len(peer.posts) == 3


async def test_drain_delivers_then_close_leaves_the_cut_off_job_unknown(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler, tmp_path: object
) -> None:
    peer.script("slow", Act("hang_after_create", seconds=2.0))
    outbox = await make_outbox({"item": handler})
    quick = [await outbox.enqueue("item", f"q{i}", {"key": f"q{i}"}) for i in range(5)]
    slow = await outbox.enqueue("item", "s", {"key": "slow"})
    assert await outbox.drain(0.5) is False  # the slow one is still in flight at the deadline
    await outbox.close()

    reopened = await make_outbox({"item": handler})
    for job_id in quick:
        assert (await reopened.job(job_id)).state is JobState.DONE  # type: ignore[union-attr]
    await settle(reopened, [slow])
    assert peer.creates["slow"] == 1 and reopened.counters["adopted"] == 1
    assert await reopened.drain(1.0) is True


class NotFinishedYet:
    """A poll of a server's progress (like a report's): every attempt says "not finished yet"."""

    def __init__(self) -> None:
        self.attempts = 0

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        self.attempts += 1
        raise Retryable(202, None, "not finished yet")

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        return None


async def test_drain_does_not_wait_for_background_polls_which_go_on_after_a_restart(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    poll = NotFinishedYet()
    outbox = await make_outbox({"item": handler})
    outbox.register("poll", poll, background=True)
    polling = await outbox.enqueue("poll", "report", {})
    item = await outbox.enqueue("item", "g", {"key": "k"})
    assert await outbox.drain(1.0) is True  # the item delivered; the poll is not a delivery
    assert (await outbox.job(item)).state is JobState.DONE  # type: ignore[union-attr]
    job = await outbox.job(polling)
    # Going on in the background: waiting for its next poll, or being polled right now.
    assert job is not None and job.state in (JobState.PENDING, JobState.IN_FLIGHT) and poll.attempts >= 1
    # A "not finished" answer is not an outage: the queue is not paused for it.
    assert (await outbox.status())["service_failures"] == 0
    await outbox.close()

    # Registered as an ordinary kind, the same poll holds the drain until its deadline: False.
    reopened = await make_outbox({"item": handler, "poll": poll})
    before = poll.attempts
    assert await reopened.drain(0.5) is False
    assert poll.attempts > before  # the poll went on after the restart


async def test_jobs_wait_for_their_handler(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler
) -> None:
    outbox = await make_outbox({})
    job_id = await outbox.enqueue("item", "g", {"key": "k"})
    await until(lambda: "retries" in outbox.counters, "an attempt without a handler")
    assert (await outbox.status())["missing_handlers"] == ["item"]
    outbox.register("item", handler)
    await asyncio.sleep(0.3)  # the job waits retry_cap (0.2 s) before its next attempt
    await settle(outbox, [job_id])
    assert peer.creates["k"] == 1


async def test_a_corrupt_database_is_reported_and_the_outbox_still_delivers(
    make_outbox: Make, peer: ScriptedPeer, handler: ItemHandler, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)  # a torn header
    outbox = await make_outbox({"item": handler})
    status = await outbox.status()
    assert status["recovery"] is not None and status["counters"]["corrupt_recovered"] == 1
    assert status["recovery"]["quarantined"].startswith(str(state / "quarantine"))
    job_id = await outbox.enqueue("item", "g", {"key": "k"})
    await settle(outbox, [job_id])
    assert peer.creates["k"] == 1
