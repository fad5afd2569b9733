"""The lab's Prometheus alert rules (monitoring/prometheus): promtool accepts them and passes their unit
tests; every alert is shaped for a fleet (for:, severity, the bench named, a runbook that exists in the
README) and tested both firing and silent; the unit tests can fail; the example scrape config is valid
and gives every target a bench label."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from monitoring_files import (
    PROMETHEUS_DIR,
    README,
    RULE_TESTS,
    RULES,
    SCRAPE_CONFIG,
    alert_rules,
    load_yaml,
    run_promtool,
)

SEVERITIES = {"warning", "critical"}
HEALTHY = "a healthy bench fires no alert"
_DURATION = re.compile(r"^(\d+)(s|m|h)$")


def seconds(duration: str) -> int:
    match = _DURATION.match(duration)
    assert match, f"not a simple duration: {duration!r}"
    return int(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2]]


def test_promtool_check_rules_accepts_every_rule() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout, result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_every_alert_has_for_severity_and_annotations_naming_the_bench() -> None:
    rules = alert_rules()
    assert len(rules) >= 15, [r["alert"] for r in rules]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), names
    for rule in rules:
        name = rule["alert"]
        assert name.startswith("EdgeAgent"), name
        assert seconds(rule["for"]) > 0, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, name
        assert "$labels.bench" in annotations["description"], name
        assert "$labels.bench" in annotations["summary"] or "$labels.instance" in annotations["summary"], name
        assert len(annotations["summary"]) <= 120, name  # fits a notification's title line


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_runbook_points_at_a_readme_section_and_row_that_exist() -> None:
    readme = README.read_text()
    anchors = {_slug(line.lstrip("#")) for line in readme.splitlines() if line.startswith("#")}
    table_rows = {line.split("|")[1].strip() for line in readme.splitlines() if line.startswith("| ")}
    pattern = re.compile(
        r"^README\.md#(?P<anchor>[a-z0-9-]+)(?:, (?:failure|alert) table row '?(?P<row>[^']+)'?)?"
    )
    for rule in alert_rules():
        runbook = rule["annotations"]["runbook"]
        match = pattern.match(runbook)
        assert match, f"{rule['alert']}: runbook {runbook!r} does not point at the README"
        assert match["anchor"] in anchors, f"{rule['alert']}: no README section #{match['anchor']}"
        if match["row"]:
            assert match["row"] in table_rows, f"{rule['alert']}: no README table row {match['row']!r}"


def test_the_readme_alert_table_lists_every_alert_with_its_for_and_severity() -> None:
    rows = {
        cells[1]: cells
        for line in README.read_text().splitlines()
        if line.startswith("| EdgeAgent")
        for cells in [[c.strip() for c in line.split("|")]]
    }
    rules = {r["alert"]: r for r in alert_rules()}
    assert set(rows) == set(rules), set(rows) ^ set(rules)
    for name, rule in rules.items():
        row = " | ".join(rows[name])
        assert f"for {rule['for']}" in row, (name, row)
        assert rule["labels"]["severity"] in row, (name, row)


def _unit_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = load_yaml(RULE_TESTS)["tests"]
    return tests


def test_every_alert_is_tested_firing_and_silent() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in _unit_tests():
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - firing == set(), f"never shown firing: {sorted(names - firing)}"
    assert names - silent == set(), f"never shown silent: {sorted(names - silent)}"
    assert (firing | silent) - names == set(), (
        f"tests of alerts that do not exist: {(firing | silent) - names}"
    )


def test_a_healthy_bench_is_checked_against_every_alert() -> None:
    healthy = [case for case in _unit_tests() if case["name"] == HEALTHY]
    assert len(healthy) == 1
    checked = {c["alertname"] for c in healthy[0]["alert_rule_test"] if not c["exp_alerts"]}
    assert checked == {r["alert"] for r in alert_rules()}


def _tests_of(alert: str) -> dict[str, Any]:
    """The promtool test file cut down to the checks of one alert (the others only cost time), the
    healthy bench left out: a pending period shows where an alert fires."""
    doc = load_yaml(RULE_TESTS)
    cases = []
    for case in doc["tests"]:
        if case["name"] == HEALTHY:
            continue
        checks = [c for c in case.get("alert_rule_test", []) if c["alertname"] == alert]
        if checks:
            cases.append({**case, "alert_rule_test": checks})
    return {**doc, "tests": cases}


def test_the_unit_tests_catch_an_alert_without_its_for(tmp_path: Path) -> None:
    """Each alert's pending period is tested: with `for: 0s` in its place, its promtool tests fail.
    (The unchanged rules, rewritten the same way, pass the same cut-down tests: the failures are the
    mutation's.)"""
    rules = load_yaml(RULES)
    unchanged = tmp_path / "unchanged"
    unchanged.mkdir()
    (unchanged / RULES.name).write_text(yaml.safe_dump(rules, sort_keys=False))
    survived = []
    for g, group in enumerate(rules["groups"]):
        for r, rule in enumerate(group["rules"]):
            name = rule["alert"]
            tests = yaml.safe_dump(_tests_of(name), sort_keys=False)
            (unchanged / f"{name}.test.yml").write_text(tests)
            mutant = copy.deepcopy(rules)
            mutant["groups"][g]["rules"][r]["for"] = "0s"
            folder = tmp_path / name
            folder.mkdir()
            (folder / RULES.name).write_text(yaml.safe_dump(mutant, sort_keys=False))
            (folder / "test.yml").write_text(tests)
            if run_promtool("test", "rules", "test.yml", cwd=folder).returncode == 0:
                survived.append(name)
    control = run_promtool(
        "test", "rules", *sorted(p.name for p in unchanged.glob("*.test.yml")), cwd=unchanged
    )
    assert control.returncode == 0, control.stdout + control.stderr
    assert not survived, f"for: untested (tests still pass with for: 0s): {survived}"


def test_example_scrape_config_is_valid_and_labels_every_target_with_its_bench(tmp_path: Path) -> None:
    token = tmp_path / "edge-agent-control-token"
    token.write_text("a-token\n")
    config = SCRAPE_CONFIG.read_text()
    assert "/etc/prometheus/edge-agent-control-token" in config
    (tmp_path / SCRAPE_CONFIG.name).write_text(
        config.replace("/etc/prometheus/edge-agent-control-token", str(token))
    )
    shutil.copy(RULES, tmp_path / RULES.name)

    checked = run_promtool("check", "config", SCRAPE_CONFIG.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout, checked.stdout

    discovered = run_promtool(
        # Static targets are there at once; promtool otherwise waits 30 s for more to be discovered.
        "check",
        "service-discovery",
        "--timeout=3s",
        SCRAPE_CONFIG.name,
        "edge-agent",
        cwd=tmp_path,
    )
    assert discovered.returncode == 0, discovered.stdout + discovered.stderr
    targets = json.loads(discovered.stdout)
    benches = {t["labels"]["instance"]: t["labels"].get("bench") for t in targets}
    assert benches == {
        "10.20.0.13:8321": "bench-03",
        "10.20.0.14:8321": "bench-04",
        "bench-07.lab.example:8321": "bench-07",  # from the host name: relabelled
        "bench-08.lab.example:8321": "bench-08",
    }, benches
    assert {t["labels"]["job"] for t in targets} == {"edge-agent"}  # what the rules select
    quiet = {t["labels"]["instance"] for t in targets if t["labels"].get("quiet_between_steps") == "true"}
    assert quiet == {"10.20.0.14:8321"}
