"""Reading monitoring/: the alert rules, their promtool unit tests, the Grafana dashboard's queries,
and the metric selectors inside any PromQL expression."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
RULES = PROMETHEUS_DIR / "edge-agent.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "edge-agent.rules.test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "edge-agent-lab.json"
README = REPO / "README.md"

INSTALL_HINT = (
    "promtool is not on PATH. Install it with Debian's/Ubuntu's Prometheus package:\n"
    "    sudo apt-get install --no-install-recommends prometheus   # ships /usr/bin/promtool\n"
    "or put the promtool of a Prometheus release on PATH. `make test` installs it; these tests never skip."
)

# Labels Prometheus adds to every series of a target (the scrape config's job/instance and target
# labels), not the agent: a rule may match on them whatever the agent exports.
TARGET_LABELS = frozenset({"job", "instance", "bench", "quiet_between_steps"})
# Series Prometheus makes itself: `up` per target, `ALERTS` per alert.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def run_promtool(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value)


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in a PromQL expression (raises ValueError on a syntax error)."""
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple((m.name, str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers)
            name = node.name or next((v for label, _, v in matchers if label == "__name__"), "")
            found.append(Selector(name, tuple(m for m in matchers if m[0] != "__name__")))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


# What Grafana puts in place of its variables when it sends a query (the bench variable: two chosen).
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "30s",
    "$__range": "6h",
}
CHOSEN_BENCHES = "bench-03|bench-04"
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_]\w*)\)$")


def grafana_to_promql(expr: str, benches: str = CHOSEN_BENCHES) -> str:
    for variable, value in {**GRAFANA_VARIABLES, "${bench}": benches, "$bench": benches}.items():
        expr = expr.replace(variable, value)
    if "$" in expr.replace("$1", ""):
        raise ValueError(f"unknown Grafana variable in {expr!r}")
    return expr


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every query the dashboard sends: panel targets (rows' nested panels too),
    annotation queries, and the selector inside each `label_values(...)` variable query."""
    queries: list[tuple[str, str]] = []

    def panels(items: list[dict[str, Any]]) -> None:
        for panel in items:
            for target in panel.get("targets", []):
                queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
            panels(panel.get("panels", []))

    panels(dashboard["panels"])
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            queries.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(text)
            assert match, f"variable {variable['name']}: not a label_values(selector, label) query: {text}"
            queries.append((f"variable {variable['name']!r}", match["selector"]))
    return queries


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data
