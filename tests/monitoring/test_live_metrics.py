"""The rules and the dashboard only name metrics (and labels, and label values they match exactly)
that a real agent exports: `edge-agent run` as a subprocess on a pty, with the Archetype and Atlas
emulators on 127.0.0.1, driven until every kind of series exists (frames, a garbage line, lens
inferences, an anomaly, a running step), then scraped at /metrics. The exposition also passes
`promtool check metrics`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_harness import AgentProcess, NotifySocket, Pty, config_toml
from monitoring_files import (
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    alert_rules,
    dashboard_queries,
    grafana_to_promql,
    load_dashboard,
    run_promtool,
    selectors,
)
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.config import EmulatorSection
from edge_agent.emulators.archetype import ArchetypeEmulator
from edge_agent.emulators.atlas import AtlasEmulator

ATAI_KEY = "live-atai-key"
ATLAS_TOKEN = "live-atlas-token"
WAIT = 30.0


@dataclass(frozen=True)
class Exposition:
    text: str
    # sample name -> label name -> the values seen
    series: dict[str, dict[str, set[str]]]


def parse(text: str) -> Exposition:
    series: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                labels.setdefault(label, set()).add(value)
    return Exposition(text, series)


def wanted(expo: Exposition) -> list[str]:
    """What is still missing from a scrape for every metric family the rules and panels use to have a
    sample (counters with labels appear with their first event)."""
    checks = {
        "a frame": "edge_agent_serial_frames_total",
        "a decode error": "edge_agent_serial_decode_errors_total",
        "an inference": "edge_agent_lens_inferences_total",
        "an anomaly": "edge_agent_anomalies_opened_total",
        "the state disk": "edge_agent_state_dir_filesystem_avail_bytes",
        "the process collector": "process_resident_memory_bytes",
    }
    missing = [what for what, name in checks.items() if name not in expo.series]
    if "edge_agent_step_running 1.0" not in expo.text:
        missing.append("a running step")
    return missing


async def run_and_scrape(tmp: Path) -> Exposition:
    settings = EmulatorSection.model_validate(
        {"api_key": ATAI_KEY, "atlas_token": ATLAS_TOKEN, "atlas_port": 0, "warmup": 0.2,
         "inference_interval": 0.05, "baseline_windows": 2}
    )  # fmt: skip
    archetype = ArchetypeEmulator(settings, port=0, seed=7)
    await archetype.start()
    pty, notify = Pty(), NotifySocket()
    notify.start()
    agent: AgentProcess | None = None
    try:
        async with AtlasEmulator(settings, seed=7) as atlas:
            config = tmp / "agent.toml"
            config.write_text(
                config_toml(
                    state_dir=tmp / "state", serial_url=pty.path, lens_url=archetype.base_url,
                    lens_key=ATAI_KEY, atlas_url=atlas.base_url, atlas_token=ATLAS_TOKEN, bench="bench-live",
                )
            )  # fmt: skip
            home = tmp / "home"
            home.mkdir()
            agent = AgentProcess(config, notify, home)
            await agent.start()
            await agent.wait_ready(within=WAIT)
            pty.start_writing(rate_hz=100.0)
            code, body = await agent.post("/steps/start", {"name": "soak"})
            assert code == 200, body
            deadline = time.monotonic() + WAIT
            expo = Exposition("", {})
            while missing := wanted(expo):
                assert time.monotonic() < deadline, f"after {WAIT}s still no {missing}:\n{agent.output()}"
                pty.write_now(b"1,not-a-number,25\n")  # a decode error
                pty.supply_v = 13.5  # over the limits rule's max: an anomaly
                await asyncio.sleep(0.3)
                code, text = await agent.get("/metrics")
                assert code == 200, text
                expo = parse(text)
            return expo
    finally:
        if agent is not None:
            await agent.close()
        await pty.close()
        await notify.close()
        await archetype.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposition]:
    yield asyncio.run(run_and_scrape(tmp_path_factory.mktemp("live-agent")))


def check_selectors(where: str, expr: str, expo: Exposition) -> list[str]:
    """Each selector's metric is exported, with the labels it matches on, and with the exact values
    it asks for (a typo in `state="pendng"` would silently never match)."""
    problems = []
    for selector in selectors(expr):
        if selector.name in PROMETHEUS_SERIES:
            continue
        labels = expo.series.get(selector.name)
        if labels is None:
            problems.append(f"{where}: {selector.name} is not in the agent's /metrics")
            continue
        for label, op, value in selector.matchers:
            if label in TARGET_LABELS:
                continue
            if label not in labels:
                problems.append(f"{where}: {selector.name} has no label {label!r} (has {sorted(labels)})")
            elif op == "Equal" and value not in labels[label]:
                problems.append(
                    f"{where}: {selector.name}{{{label}={value!r}}} never exported: {labels[label]}"
                )
    return problems


def test_every_metric_the_alert_rules_use_is_exported(live: Exposition) -> None:
    problems = []
    for rule in alert_rules():
        problems += check_selectors(rule["alert"], rule["expr"], live)
    assert not problems, "\n".join(problems)


def test_every_metric_the_dashboard_uses_is_exported(live: Exposition) -> None:
    problems = []
    for where, expr in dashboard_queries(load_dashboard()):
        problems += check_selectors(where, grafana_to_promql(expr), live)
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_misspelt_name_or_label_value(live: Exposition) -> None:
    assert check_selectors("typo", 'edge_agent_serial_frame_total{bench="x"}', live)
    assert check_selectors("typo", 'edge_agent_outbox_jobs{state="pendng"}', live)
    assert check_selectors("typo", 'edge_agent_serial_link_up{port="bench"}', live)
    assert not check_selectors("ok", 'edge_agent_outbox_jobs{state="pending", bench="x"}', live)


def test_the_agents_exposition_passes_promtool_check_metrics(live: Exposition) -> None:
    result = run_promtool("check", "metrics", stdin=live.text)
    assert result.returncode == 0, result.stdout + result.stderr
    # edge_agent_info carries the configured bench: what EdgeAgentBenchLabelMismatch compares.
    assert 'edge_agent_info{agent_bench="bench-live"' in live.text
