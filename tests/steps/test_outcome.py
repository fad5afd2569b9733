"""The pure step-outcome rule: examples and hypothesis properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.steps import AnomalySpan, Outcome, overlaps, step_outcome

RANK = {"todo": 0, "passed": 0, "passed_with_exception": 1, "failed": 2}


def span(severity: str, start: float, end: float | None, aid: str = "a1") -> AnomalySpan:
    return AnomalySpan(aid, severity, f"supply_v on bench ({severity})", start, end)


def test_examples() -> None:
    assert step_outcome(10, 20, []).execution_status == "passed"
    assert step_outcome(10, 20, [], "PASS").exception is None
    high = step_outcome(10, 20, [span("high", 15, 16)])
    assert high.execution_status == "failed" and "a1" in (high.exception or "")
    low = step_outcome(10, 20, [span("low", 5, 10)])  # touching the start counts
    assert low.execution_status == "passed_with_exception" and "supply_v" in (low.exception or "")
    assert step_outcome(10, 20, [span("high", 1, 9.99)]).execution_status == "passed"
    assert step_outcome(10, 20, [span("high", 25, None)]).execution_status == "passed"
    assert step_outcome(10, 20, [span("medium", 2, None)]).execution_status == "passed_with_exception"
    fail = step_outcome(10, 20, [], "FAIL")
    assert fail.execution_status == "failed" and "FAIL" in (fail.exception or "")
    assert step_outcome(10, 20, [span("low", 12, 13)], "FAIL").execution_status == "failed"
    assert step_outcome(10, 20, [span("high", 12, 13)], "PASS").execution_status == "failed"
    # The control API's ERROR (the test broke) fails the step; SKIP (not carried out) leaves it todo
    # unless anomalies happened during it.
    error = step_outcome(10, 20, [], "ERROR")
    assert error.execution_status == "failed" and "ERROR" in (error.exception or "")
    assert step_outcome(10, 20, [], "SKIP") == Outcome("todo", None)
    assert step_outcome(10, 20, [span("low", 12, 13)], "SKIP").execution_status == "passed_with_exception"
    assert step_outcome(10, 20, [span("high", 12, 13)], "SKIP").execution_status == "failed"


times = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
spans = st.builds(
    lambda sev, a, d, open_, i: AnomalySpan(f"id{i}", sev, "x", a, None if open_ else a + d),
    st.sampled_from(["low", "medium", "high"]),
    times,
    st.floats(min_value=0, max_value=1e5),
    st.booleans(),
    st.integers(0, 1000),
)


@given(
    times,
    st.floats(min_value=0, max_value=1e5),
    st.lists(spans, max_size=8),
    st.sampled_from([None, "PASS", "FAIL", "ERROR", "SKIP"]),
)
def test_properties(start: float, length: float, anomalies: list[AnomalySpan], verdict: str | None) -> None:
    end = start + length
    outcome = step_outcome(start, end, anomalies, verdict)
    hit = [a for a in anomalies if overlaps(start, end, a)]
    expected = "todo" if verdict == "SKIP" else "passed"
    if hit:
        expected = "passed_with_exception"
    if any(a.severity == "high" for a in hit) or verdict in ("FAIL", "ERROR"):
        expected = "failed"
    assert outcome.execution_status == expected
    # A note exactly when something is wrong, and it names every overlapping anomaly.
    assert (outcome.exception is None) == (expected in ("passed", "todo"))
    for a in hit:
        assert a.anomaly_id in (outcome.exception or "") or len(outcome.exception or "") >= 1999
    # Anomalies that did not overlap change nothing; adding one can only make it worse.
    assert step_outcome(start, end, hit, verdict) == outcome
    worse = step_outcome(start, end, [*anomalies, AnomalySpan("new", "high", "y", start, end)], verdict)
    assert RANK[worse.execution_status] >= RANK[outcome.execution_status]


def test_per_source_bounds_compare_each_span_on_its_own_timeline() -> None:
    """A step at host [10, 20] is [1010, 1020] on source dev's clock: dev's spans are judged there."""
    on_dev = AnomalySpan("d1", "high", "v on dev", 1015, 1016, source="dev")
    on_host = AnomalySpan("h1", "low", "v on other", 15, 16, source="other")
    per_source = {"dev": (1010.0, 1020.0)}
    outcome = step_outcome(10, 20, [on_dev, on_host], per_source=per_source)
    assert outcome.execution_status == "failed" and "d1" in (outcome.exception or "")
    assert "h1" in (outcome.exception or "")  # no bounds for "other": the step's own
    assert step_outcome(10, 20, [on_dev]).execution_status == "passed"  # on the wrong clock: missed
