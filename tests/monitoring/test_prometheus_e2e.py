"""A real Prometheus server (Debian's, from the package that ships promtool) scrapes a real agent with
the example scrape job (bearer token, bench labels) and evaluates the rules every second:

- every rule evaluates without error on real series (a many-to-many match or a duplicate label set
  would show here, not in the synthetic unit tests);
- every dashboard query answers, with data, except the ones that list firing alerts;
- alerts go pending, with the bench in their annotations, for a target that does not answer, a target
  whose bench label is not the agent's, and a serial port unplugged; a healthy bench raises none.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from live_agent import LiveBench, live_bench
from monitoring_files import (
    INSTALL_HINT,
    RULES,
    SCRAPE_CONFIG,
    alert_rules,
    dashboard_queries,
    grafana_to_promql,
    load_dashboard,
)

CONTROL_TOKEN = "lab-prometheus-token"
WAIT = 45.0
# Queries that list firing alerts or failed components: empty on a healthy bench a minute old.
EMPTY_WHEN_HEALTHY = {
    "panel 'Firing alerts' A",
    "annotation 'edge-agent alerts'",
    "panel 'Watchdog and component restarts' C",
}
# Alerts of the test machine, not of the bench: its disk may be fuller than the thresholds.
HOST_DEPENDENT = {"EdgeAgentDiskFilling", "EdgeAgentDiskFull"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_config(tmp: Path, live: str, dead: str) -> Path:
    """The example scrape job, pointed at the live agent (under its own bench name and, as a second
    target, under a wrong one) and at a port nobody listens on; scraped and evaluated every second."""
    example = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = example["scrape_configs"]
    token = tmp / "control-token"
    token.write_text(CONTROL_TOKEN)
    job["authorization"]["credentials_file"] = str(token)
    job["static_configs"] = [
        {"targets": [live], "labels": {"bench": "bench-live"}},
        {"targets": [live], "labels": {"bench": "bench-wrong"}},
        {"targets": [dead], "labels": {"bench": "bench-gone"}},
    ]
    shutil.copy(RULES, tmp / RULES.name)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / RULES.name)],
        "scrape_configs": [job],
    }
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Prometheus:
    def __init__(self, config: Path, data: Path) -> None:
        self.config, self.data = config, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.log = data / "prometheus.log"

    async def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail(INSTALL_HINT.replace("promtool is", "prometheus (the server) is"), pytrace=False)
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
                stdout=log, stderr=log,
            )  # fmt: skip
        await until(self.ready, WAIT, "Prometheus ready", self)

    async def ready(self) -> bool:
        try:
            async with self.http.get(self.url + "/-/ready") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def api(self, path: str, **params: str) -> Any:
        async with self.http.get(self.url + "/api/v1/" + path, params=params) as response:
            body = await response.json()
            assert body["status"] == "success", (path, params, body)
            return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        data = await self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    async def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = (await self.api("alerts"))["alerts"]
        return alerts

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    async def close(self) -> None:
        await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def until(
    check: Callable[[], Any], within: float, what: str, prometheus: Prometheus | None = None
) -> Any:
    """Poll `check()` (sync or async) until truthy; its last value is returned. Bounded in time."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            log = prometheus.output() if prometheus is not None else ""
            raise AssertionError(f"timed out after {within}s waiting for {what}\n{log}")
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def lab(tmp: Path) -> AsyncIterator[tuple[LiveBench, Prometheus]]:
    (tmp / "bench").mkdir()
    async with live_bench(tmp / "bench", bench="bench-live", control_token=CONTROL_TOKEN) as bench:
        (tmp / "prometheus").mkdir()
        config = prometheus_config(tmp / "prometheus", bench.address, f"127.0.0.1:{free_port()}")
        prometheus = Prometheus(config, tmp / "prometheus")
        try:
            await prometheus.start()
            yield bench, prometheus
        finally:
            await prometheus.close()


def alerts_of(alerts: list[dict[str, Any]], name: str, bench: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name and a["labels"].get("bench") == bench]


async def test_a_real_prometheus_scrapes_the_agent_evaluates_every_rule_and_raises_pending_alerts(
    tmp_path: Path,
) -> None:
    async with lab(tmp_path) as (bench, prometheus):
        await bench.exercise()
        bench.pty.supply_v = 12.0

        # The target is scraped with the token, under its bench label.
        targets = await until(
            lambda: prometheus.query('up{job="edge-agent", bench="bench-live"} == 1'),
            WAIT,
            "the agent up",
            prometheus,
        )
        assert targets[0]["metric"]["instance"] == bench.address
        # Two scrapes at least, so that rate() over real series has something to say.
        await until(
            lambda: prometheus.query('count_over_time(edge_agent_info{bench="bench-live"}[1m]) >= 3'),
            WAIT,
            "three scrapes",
            prometheus,
        )

        # Every rule has been evaluated, without error, on the real series.
        async def rules_evaluated() -> list[dict[str, Any]] | None:
            groups = (await prometheus.api("rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return rules if all(r["health"] != "unknown" for r in rules) else None

        rules = await until(rules_evaluated, WAIT, "every rule evaluated", prometheus)
        assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
        broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
        assert not broken, broken

        # Every dashboard query answers with data (the alert lists excepted: nothing fires yet).
        empty = []
        for where, expr in dashboard_queries(load_dashboard()):
            result = await prometheus.query(grafana_to_promql(expr, benches="bench-live"))
            if not result and where not in EMPTY_WHEN_HEALTHY:
                empty.append(f"{where}: {expr}")
        assert not empty, "dashboard queries without data on a live bench:\n" + "\n".join(empty)

        # Pending: the target nobody answers, and the target labelled with another bench's name.
        alerts = await until(
            lambda: _pending(
                prometheus, ("EdgeAgentDown", "bench-gone"), ("EdgeAgentBenchLabelMismatch", "bench-wrong")
            ),
            WAIT,
            "EdgeAgentDown and EdgeAgentBenchLabelMismatch pending",
            prometheus,
        )
        (down,) = alerts_of(alerts, "EdgeAgentDown", "bench-gone")
        assert down["annotations"]["summary"] == "bench-gone: edge-agent is not answering"
        (mismatch,) = alerts_of(alerts, "EdgeAgentBenchLabelMismatch", "bench-wrong")
        assert mismatch["labels"]["agent_bench"] == "bench-live"
        # The healthy bench itself raises nothing (the disk alerts depend on this machine's disk). A
        # loop-lag alert is the machine's too when the agent really measured a stall over 0.5 s (a loaded
        # CI machine starves the in-process bench): allowed only if its own series says so.
        raised = {a["labels"]["alertname"] for a in alerts if a["labels"].get("bench") == "bench-live"}
        if "EdgeAgentEventLoopLag" in raised:
            stalled = await prometheus.query(
                'max_over_time(edge_agent_event_loop_lag_seconds{bench="bench-live"}[5m]) > 0.5'
            )
            assert stalled, "EdgeAgentEventLoopLag pending without a lag over 0.5 s in its series"
            raised.discard("EdgeAgentEventLoopLag")
        assert raised <= HOST_DEPENDENT, raised

        # Unplug the bench's serial cable: the agent sees it, and so does the rule.
        await bench.pty.close()
        alerts = await until(
            lambda: _pending(prometheus, ("EdgeAgentSerialLinkDown", "bench-live")),
            WAIT,
            "EdgeAgentSerialLinkDown pending",
            prometheus,
        )
        (link,) = alerts_of(alerts, "EdgeAgentSerialLinkDown", "bench-live")
        assert link["labels"]["source"] == "bench" and link["labels"]["severity"] == "critical"
        assert link["annotations"]["summary"] == "bench-live: serial port bench is down"


async def _pending(prometheus: Prometheus, *wanted: tuple[str, str]) -> list[dict[str, Any]] | None:
    alerts = await prometheus.alerts()
    ok = all(any(a["state"] == "pending" for a in alerts_of(alerts, name, bench)) for name, bench in wanted)
    return alerts if ok else None
