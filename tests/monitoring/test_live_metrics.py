"""The rules and the dashboard only name metrics (and labels, and label values they match exactly)
that a real agent exports: `edge-agent run` as a subprocess on a pty, with the Archetype and Atlas
emulators on 127.0.0.1, driven until every kind of series exists (frames, a garbage line, lens
inferences, an anomaly, a running step), then scraped at /metrics. The exposition also passes
`promtool check metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_agent import Exposition, live_bench
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


async def scrape_exercised_agent(tmp: Path) -> Exposition:
    async with live_bench(tmp) as bench:
        return await bench.exercise()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exposition]:
    yield asyncio.run(scrape_exercised_agent(tmp_path_factory.mktemp("live-agent")))


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


def test_incidents_are_counted_as_they_open_and_grow(live: Exposition) -> None:
    """The exercise drove an anomaly (supply over its limit): one incident opened, every event kind has
    a series from the first scrape (an alert's increase() needs the sample before the jump)."""
    values = {
        sample.labels["event"]: sample.value
        for family in text_string_to_metric_families(live.text)
        for sample in family.samples
        if sample.name == "edge_agent_incident_events_total"
    }
    assert set(values) == {"opened", "grew", "closed"}
    assert values["opened"] >= 1
