"""The Grafana dashboard (monitoring/grafana): importable JSON with the datasource and the bench as
variables, every query valid PromQL (promtool parses each one as a recording rule), every query scoped
to the chosen benches, and the panels a lab looks at all there. That its metric names exist in a real
agent's /metrics is test_live_metrics.py's."""

from __future__ import annotations

from pathlib import Path

import yaml
from monitoring_files import (
    CHOSEN_BENCHES,
    PROMETHEUS_SERIES,
    dashboard_queries,
    grafana_to_promql,
    load_dashboard,
    run_promtool,
    selectors,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def visual_panels() -> list[dict[str, object]]:
    found = []
    for panel in load_dashboard()["panels"]:
        found += [p for p in [panel, *panel.get("panels", [])] if p["type"] != "row"]
    return found


def test_dashboard_is_importable_with_datasource_and_bench_variables() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    bench = variables["bench"]
    assert bench["type"] == "query" and bench["datasource"] == DATASOURCE
    assert bench["multi"] is True and bench["includeAll"] is True and bench["allValue"] == ".*"
    panels = visual_panels()
    assert len(panels) >= 15
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), ids
    for panel in panels:
        # The datasource is chosen on import, never a uid of the machine it was exported from.
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert isinstance(targets, list) and targets, panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert isinstance(grid, dict) and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in as Grafana would) as a recording rule."""
    queries = dashboard_queries(load_dashboard())
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard-queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout


def test_a_broken_query_is_caught(tmp_path: Path) -> None:
    """The check above can fail: promtool rejects a query with a syntax error."""
    path = tmp_path / "broken.rules.yml"
    rule = {"record": "dashboard:broken", "expr": "sum by (bench (rate(edge_agent_serial_frames_total[1m]))"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [rule]}]}))
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_every_query_is_scoped_to_the_chosen_benches() -> None:
    for where, expr in dashboard_queries(load_dashboard()):
        if where.startswith("variable"):
            continue  # the variable's own query lists the benches
        for selector in selectors(grafana_to_promql(expr)):
            benches = [m for m in selector.matchers if m[0] == "bench"]
            assert benches == [("bench", "Re", CHOSEN_BENCHES)], (where, selector)
            # Series other jobs have too: only the edge-agent job's, only the edge-agent alerts.
            if selector.name == "ALERTS":
                assert ("alertname", "Re", "EdgeAgent.*") in selector.matchers, (where, selector)
            elif selector.name.startswith("process_") or selector.name in PROMETHEUS_SERIES:
                assert ("job", "Equal", "edge-agent") in selector.matchers, (where, selector)


def test_the_panels_a_lab_looks_at_are_there() -> None:
    by_metric: dict[str, list[str]] = {}
    for panel in visual_panels():
        for target in panel["targets"]:  # type: ignore[attr-defined]
            for selector in selectors(grafana_to_promql(target["expr"])):
                by_metric.setdefault(selector.name, []).append(target["legendFormat"])
    wanted_labels = {
        "edge_agent_serial_frames_total": "{{source}}",
        "edge_agent_serial_link_up": "{{source}}",
        "edge_agent_serial_decode_errors_total": "{{reason}}",
        "edge_agent_lens_windows_sent_total": "",
        "edge_agent_lens_inferences_total": "{{label}}",
        "edge_agent_anomalies_opened_total": "{{kind}} {{severity}}",
        "edge_agent_outbox_jobs": "{{state}}",
        "edge_agent_outbox_retries_total": "",
        "edge_agent_event_loop_lag_seconds": "",
        "edge_agent_state_dir_filesystem_avail_bytes": "",
        "process_resident_memory_bytes": "",
        "process_cpu_seconds_total": "",
    }
    for metric, legend_part in wanted_labels.items():
        assert metric in by_metric, f"no panel shows {metric}"
        legends = by_metric[metric]
        assert any(legend_part in legend and "{{bench}}" in legend for legend in legends), (metric, legends)
