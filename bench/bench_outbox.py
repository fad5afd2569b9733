"""Outbox benchmark: jobs/s delivered (to a bare aiohttp server and to the Atlas emulator's
`POST /api/v1/issues`), and the process RSS while 10,000 jobs wait during an outage (the emulator
refusing connections), then how fast the backlog drains once it listens again.

    .venv/bin/python bench/bench_outbox.py [--jobs 2000] [--backlog 10000]

Prints the figures and writes bench/out/outbox.json. The machine is shared: figures are under contention.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import update_results

from edge_agent.config import EmulatorSection, OutboxSection
from edge_agent.logs import setup_logging
from edge_agent.outbox import Job, JobSpec, Json, Outbox, Retryable, error_for_status, parse_retry_after


def rss_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}


def files_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("outbox.sqlite3*"))


class PostHandler:
    """POSTs `body(job)` to `url`; connection refused is a known non-send, everything else unknown."""

    def __init__(self, http: aiohttp.ClientSession, url: str, tag_lookup: str | None = None) -> None:
        self.http = http
        self.url = url
        self.tag_lookup = tag_lookup

    async def deliver(self, job: Job, deps: Mapping[int, Json]) -> Json:
        try:
            async with self.http.post(self.url, json=job.payload) as resp:
                if resp.status >= 300:
                    after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
                    raise error_for_status(resp.status, await resp.text(), after)
                result: Json = await resp.json()
                return result
        except aiohttp.ClientConnectorError as exc:
            raise Retryable(None, None, str(exc), outcome_unknown=False) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(None, None, repr(exc)) from exc

    async def find_existing(self, job: Job, deps: Mapping[int, Json]) -> Json | None:
        if self.tag_lookup is None:
            return None
        tag = job.payload["tags"][0]
        try:
            async with self.http.get(self.tag_lookup, params={"limit": "1000"}) as resp:
                items = (await resp.json())["items"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Retryable(None, None, repr(exc)) from exc
        return next((dict(i) for i in items if tag in i.get("tags", [])), None)


def issue(i: int) -> Json:
    return {
        "title": f"bench anomaly {i}",
        "description": [],
        "priority": "low",
        "tags": [f"edge-agent:a-{i}"],
    }


async def wait_done(outbox: Outbox, n: int, within: float) -> float:
    start = time.perf_counter()
    while (await outbox.counts())["done"] < n:
        if time.perf_counter() - start > within:
            raise RuntimeError(f"not delivered within {within} s: {await outbox.counts()}")
        await asyncio.sleep(0.01)
    return time.perf_counter() - start


async def throughput(
    url: str, headers: dict[str, str], n: int, synchronous: str, tag_lookup: str | None
) -> Json:
    with tempfile.TemporaryDirectory() as tmp:
        async with aiohttp.ClientSession(headers=headers) as http:
            outbox = Outbox(
                Path(tmp),
                OutboxSection(),
                {"issue": PostHandler(http, url, tag_lookup)},
                synchronous=synchronous,
            )
            await outbox.start()
            start = time.perf_counter()
            for i in range(n):
                await outbox.enqueue("issue", f"anomaly-{i % 50}", issue(i))
            enqueued = time.perf_counter() - start
            elapsed = time.perf_counter() - start + await wait_done(outbox, n, 600)
            await outbox.close()
    return {
        "jobs": n,
        "synchronous": synchronous,
        "enqueue_jobs_per_s": round(n / enqueued, 1),
        "delivered_jobs_per_s": round(n / elapsed, 1),
        "seconds": round(elapsed, 2),
    }


async def bare_server() -> tuple[web.AppRunner, str]:
    counter = 0

    async def create(request: web.Request) -> web.Response:
        nonlocal counter
        await request.read()
        counter += 1
        return web.json_response({"uuid": f"id-{counter}"}, status=201)

    app = web.Application()
    app.router.add_post("/items", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/items"


async def outage(backlog: int) -> Json:
    from edge_agent.emulators.atlas import AtlasEmulator

    emulator = AtlasEmulator(EmulatorSection())
    await emulator.start()
    api = emulator.base_url + "/api/v1"
    baseline = rss_mb()
    await emulator.server.refuse_for(3600)
    section = OutboxSection.model_validate({"retry_base": 0.5, "retry_cap": 5.0})
    with tempfile.TemporaryDirectory() as tmp:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {emulator.token}"}) as http:
            handler = PostHandler(http, api + "/issues", api + "/issues")
            outbox = Outbox(Path(tmp), section, {"issue": handler})
            await outbox.start()
            start = time.perf_counter()
            for first in range(0, backlog, 500):  # as a burst of anomalies would, in batches
                specs = [
                    JobSpec("issue", f"anomaly-{i}", issue(i))
                    for i in range(first, min(backlog, first + 500))
                ]
                await outbox.enqueue_many(specs)
            enqueue_s = time.perf_counter() - start
            await asyncio.sleep(10.0)  # the outage goes on: probes fail, 10,000 jobs wait
            during = rss_mb()
            status = await outbox.status()
            db_bytes = files_bytes(Path(tmp))
            await emulator.server.refuse_for(0)  # the service is back
            drain_s = await wait_done(outbox, backlog, 900)
            await outbox.close()
    await emulator.stop()
    return {
        "backlog_jobs": backlog,
        "enqueue_many_jobs_per_s": round(backlog / enqueue_s, 1),
        "rss_before_outbox": baseline,
        "rss_during_outage": during,
        "attempts_during_10s_outage": status["counters"].get("retries", 0),
        "db_bytes_during_outage": db_bytes,
        "recovery_drain_s": round(drain_s, 2),
        "recovery_drain_jobs_per_s": round(backlog / drain_s, 1),
        "note": "drain time includes waiting for the next probe (backoff cap 5 s)",
    }


async def main(args: argparse.Namespace) -> None:
    setup_logging("warning", stream=sys.stderr)
    results: dict[str, Any] = {}
    results["outage"] = await outage(args.backlog)  # first: RSS of a fresh process
    runner, url = await bare_server()
    try:
        for sync in ("FULL", "NORMAL"):
            results[f"bare_server_{sync.lower()}"] = await throughput(url, {}, args.jobs, sync, None)
    finally:
        await runner.cleanup()
    from edge_agent.emulators.atlas import AtlasEmulator

    async with AtlasEmulator(EmulatorSection()) as emulator:
        api = emulator.base_url + "/api/v1"
        headers = {"Authorization": f"Bearer {emulator.token}"}
        results["atlas_emulator_issues_full"] = await throughput(
            api + "/issues", headers, args.jobs, "FULL", None
        )
    for name, figures in results.items():
        print(f"{name}: {figures}")
    path = update_results("outbox", "outbox", results)
    print(f"written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--backlog", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
