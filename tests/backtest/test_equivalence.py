"""The backtest engine gives exactly what the live path gives: the same recording through the live
decoder, `Detector.on_frame` frame by frame with `Detector.tick` at every tick of the agent, and the
incident grouper (tests/backtest/reference.py) -> the same anomaly events (keys, start/open/end times,
peaks, sample counts: the whole snapshots, in order), the same incident events, the same decode counts.

Random recordings with NaN/inf, gaps, repeated values, spikes, clock steps back, bad lines and markers;
random rules of every kind and incident settings; read in blocks as small as a few lines, so every
state the batches carry from block to block is crossed too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from backtest_reference import config_of, live_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.backtest import engine
from edge_agent.backtest.runner import BacktestOptions, run_backtest
from edge_agent.backtest.verdicts import SequentialBatch, batch_for
from edge_agent.serial.decoders import make_decoder

CHANNELS = ("a", "b", "c")
# Steps between rows, in units of the time column: milliseconds, or seconds in binary fractions (with
# values moving by 0.5, rates, gaps and stuck times then land exactly on the thresholds: the boundaries).
STEPS = {"t_ms": (0, 1, 10, 40, 100, 250, 700, 1500, 4000), "t_s": (0, 0.25, 0.5, 1, 2, 4)}
BACK = {"t_ms": -300, "t_s": -0.5}

token = st.one_of(
    st.sampled_from(["same"] * 6 + ["noise"] * 6 + ["spike", "-spike", "nan", "inf", "-inf"]),
    st.sampled_from([" 1.5", "1_0", "+nan", "1e3", "x", "1.2.3", "Infinity", "-0", "1e500", "#"]),
)
data_row = st.tuples(
    st.integers(0, 8),  # the step after the previous row: STEPS[...][n], 7 goes back, 8 is no time ("nan")
    st.tuples(token, token, token),
)
# "t_ms,c,a" then "1,2,3": the device restarts with other columns (header change on the fly), and
# "t_ms,a,b,c" then a row changes them back.
other_line = st.sampled_from(
    ["", "# a comment", "1,2", "#STEP START s1", "#STEP END s1 PASS", "#STEP START s2", "#STEP END s2",
     "t_ms,a,b,c", "\xff\xfe,1,2,3", "1,2,3,4,5", "t_ms,c,a", "1,2,3"]
)  # fmt: skip
line = st.one_of(data_row, data_row, data_row, data_row, data_row, data_row, other_line)


def render(lines: list[Any], fmt: str, column: str) -> bytes:
    t: float = 0
    prev = [1.0, 2.0, 3.0]
    steps = STEPS[column]
    out = [f"{column},a,b,c"] if fmt == "csv" else []
    for item in lines:
        if isinstance(item, str):
            out.append(item)
            continue
        step, tokens = item
        if step == 8:
            time_text = "nan"
        else:
            t += BACK[column] if step == 7 else steps[step % len(steps)]
            time_text = repr(t)
        fields = []
        for i, tok in enumerate(tokens):
            if tok == "same":
                text = repr(prev[i])
            elif tok == "noise":
                prev[i] += 0.5 if (int(t) + i + len(out)) % 3 else -0.5
                text = repr(prev[i])
            elif tok in ("spike", "-spike"):
                text = "60.0" if tok == "spike" else "-60.0"
            else:
                text = tok
            fields.append(text)
        if fmt == "csv":
            out.append(",".join([time_text, *fields]))
        else:
            obj: dict[str, Any] = {column: _json_value(time_text)}
            obj.update({ch: _json_value(text) for ch, text in zip(CHANNELS, fields, strict=True)})
            out.append(json.dumps(obj))
    return ("\n".join(out) + "\n").encode("utf-8", "surrogateescape")


def _json_value(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text  # JSON has no NaN: the decoder reads numeric strings


def rule_for(kind: str, channel: str, draw: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"channel": channel, "kind": kind}
    if kind == "limits":
        rule.update(min=draw(st.sampled_from([-5.0, 0.5])), max=draw(st.sampled_from([5.0, 1.0, 3.5])))
    elif kind == "rate":
        rule["max_rate"] = draw(st.sampled_from([1.0, 2.0, 20.0, 500.0]))
    elif kind == "stuck":
        rule["stuck_for"] = draw(st.sampled_from([0.05, 0.3, 0.5, 1.0, 3.0]))
    elif kind == "baseline":
        # Blocks of a second or so, so that the band forms, rolls, and relearns within a recording.
        rule.update(
            baseline_warmup=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
            baseline_k=draw(st.sampled_from([1.0, 3.0])),
            baseline_update=draw(st.sampled_from([0.25, 0.5, 1.0, 2.0])),
            baseline_window=draw(st.sampled_from([0.0, 2.0, 6.0])),
            baseline_relearn_after=draw(st.sampled_from([0.0, 1.5, 5.0])),
        )
    else:
        rule["dropout_after"] = draw(st.sampled_from([0.3, 1.0, 2.0, 2.5]))
    rule["hold"] = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    rule["hold_samples"] = draw(st.sampled_from([1, 1, 2, 3]))
    rule["clear_after"] = draw(st.sampled_from([0.0, 0.25, 1.0, 2.0]))
    rule["severity"] = draw(st.sampled_from(["low", "medium", "high"]))
    return rule


@st.composite
def scenarios(draw: Any) -> tuple[list[dict[str, Any]], dict[str, Any], bytes, str, str, int]:
    fmt = draw(st.sampled_from(["csv", "csv", "jsonl"]))
    column = draw(st.sampled_from(["t_ms", "t_s"]))
    # Half of them long: the boundaries need runs of rows (repeats, gaps) that short lists rarely hold.
    lines = draw(st.lists(line, max_size=150) | st.lists(line, min_size=40, max_size=150))
    kinds = ["limits", "rate", "stuck", "baseline", "dropout"]
    rules = []
    for _ in range(draw(st.integers(1, 16))):
        channel = draw(st.sampled_from([*CHANNELS, "*", "zz"]))
        kind = "dropout" if channel == "*" else draw(st.sampled_from(kinds))
        rules.append(rule_for(kind, channel, draw))
    group_by = draw(st.sampled_from(["bench", "source", "channels"]))
    incidents: dict[str, Any] = {
        "group_by": group_by,
        "join_window": draw(st.sampled_from([0.0, 0.5, 2.0, 10.0])),
        "update_after": draw(st.sampled_from([0.0, 1.0, 5.0])),
    }
    if group_by == "channels":
        incidents["channel_groups"] = [["a", "b"]]
    chunk = draw(st.sampled_from([16, 64, 300, 1 << 20]))
    return rules, incidents, render(lines, fmt, column), fmt, column, chunk


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios(), st.booleans())
def test_backtest_gives_what_the_live_detector_and_grouper_give(
    tmp_path_factory: Any,
    scenario: tuple[list[dict[str, Any]], dict[str, Any], bytes, str, str, int],
    sample_by_sample: bool,
) -> None:
    """`sample_by_sample`: every check through the exact fallback (`SequentialBatch`, what a check of
    a shape the batches do not know gets), instead of its numpy batch."""
    rules, incidents, data, fmt, column, chunk = scenario
    port = {"name": "bench", "url": "loop://", "format": fmt, "device_time": column}
    config = config_of([port], rules, incidents=incidents)
    path: Path = tmp_path_factory.mktemp("rec") / "recording"
    path.write_bytes(data)

    evaluator = SequentialBatch if sample_by_sample else batch_for
    with patch.object(engine, "batch_for", evaluator):
        result = run_backtest(config, path, BacktestOptions(keep_events=True, chunk_bytes=chunk))
    live = live_run(config, config.serial[0], data, 1e-3 if column == "t_ms" else 1.0)

    assert result.frames == live.frames
    assert result.anomaly_events == live.anomaly_events
    assert result.incident_events == live.incident_events
    # Bad lines are counted exactly as the live decoder counts them.
    decoder = make_decoder(config.serial[0])
    for raw in data.split(b"\n")[:-1]:
        decoder.feed(raw + b"\n", 0.0, 0.0)
    assert result.decode == decoder.stats.as_dict()


def same_as_live(
    tmp_path: Path, rules: list[dict[str, Any]], data: bytes, chunk: int = 1 << 20, **incidents: Any
) -> Any:
    port = {"name": "bench", "url": "loop://", "device_time": "t_s"}
    config = config_of([port], rules, incidents=incidents or {"join_window": 1.0})
    path = tmp_path / "rec.csv"
    path.write_bytes(data)
    result = run_backtest(config, path, BacktestOptions(keep_events=True, chunk_bytes=chunk))
    live = live_run(config, config.serial[0], data, 1.0)
    assert result.anomaly_events == live.anomaly_events
    assert result.incident_events == live.incident_events
    return result


def csv_rows(times: Any, value: Any = lambda t: 1.0) -> bytes:
    return b"".join(f"{t!r},{value(t)!r}\n".encode() for t in times)


def test_a_dropout_that_comes_back_while_it_clears(tmp_path: Path) -> None:
    """Frames return (the dropout starts clearing), then stop again before clear_after: the tick in the
    second gap makes it active again, and the frame after that gap is its new first clear frame."""
    times = [i * 0.01 for i in range(100)] + [2.0 + i * 0.01 for i in range(50)]
    times += [3.2 + i * 0.01 for i in range(300)]  # a 0.7 s gap at 2.49 s, 0.5 s after the frames came back
    data = b"t_s,a\n" + csv_rows(times)
    result = same_as_live(
        tmp_path, [{"channel": "a", "kind": "dropout", "dropout_after": 0.3, "clear_after": 2.0}], data
    )
    [closed] = [e.anomaly for e in result.anomaly_events if type(e).__name__ == "AnomalyClosed"]
    # Active at the ticks at 1.5 and 1.75 s, clear from 2.0 s, active again at 3.0 s, clear from 3.2 s.
    assert closed.ended_mono == 3.2 and closed.samples == 3 and closed.closed_mono == pytest.approx(5.2)


def test_an_anomaly_clearing_across_blocks_and_closed_by_a_tick(tmp_path: Path) -> None:
    """Rows once a minute: the anomaly clears at a row and closes on a tick between rows; read in
    blocks of a few rows, so the clearing slot crosses block boundaries."""
    times = [60.0 * i for i in range(40)]
    data = b"t_s,a\n" + csv_rows(times, lambda t: 9.0 if 600 <= t < 900 else 1.0)
    rules = [{"channel": "a", "kind": "limits", "max": 5.0, "clear_after": 90.0}]
    result = same_as_live(tmp_path, rules, data, chunk=64, join_window=30.0, update_after=10.0)
    [closed] = [e.anomaly for e in result.anomaly_events if type(e).__name__ == "AnomalyClosed"]
    assert (
        closed.ended_mono == 900.0 and closed.closed_mono == 990.0
    )  # a tick, between the rows at 960 and 1020
    assert [type(e).__name__ for e in result.incident_events] == ["IncidentOpened", "IncidentClosed"]


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_a_device_restarting_with_a_wider_header_is_read_by_its_new_columns(
    tmp_path: Path, chunk: int
) -> None:
    """The device restarts mid-recording with a header of another width: temp_c moves to the third
    column and current_a is new. The rows after it are read by the new columns, as the live decoder
    reads them; a row of the old width after the change is skipped as live skips it (read by the old
    columns it would be a temp_c of 95)."""
    before = b"".join(f"{i / 10!r},25.0\n".encode() for i in range(20))
    current = {30: 3.2, 31: 3.4, 32: 3.1}  # above current_a's max from t = 3.0 to 3.2 s
    temp = {40: 91.0, 41: 93.5}  # above temp_c's max at t = 4.0 and 4.1 s
    after = b"".join(
        f"{i / 10!r},{current.get(i, 1.0)!r},{temp.get(i, 25.0)!r}\n".encode() for i in range(21, 60)
    )
    stray = b"4.55,95.0\n"  # the old width, after the change
    cut = after.index(b"4.6,")
    data = b"t_s,temp_c\n" + before + b"t_s,current_a,temp_c\n" + after[:cut] + stray + after[cut:]
    rules = [
        {"channel": "current_a", "kind": "limits", "max": 2.5, "severity": "high"},
        {"channel": "temp_c", "kind": "limits", "max": 80.0},
    ]
    result = same_as_live(tmp_path, rules, data, chunk=chunk, join_window=0.0, update_after=0.0)
    opened = [e.anomaly for e in result.anomaly_events if type(e).__name__ == "AnomalyOpened"]
    assert [(a.channel, a.started_mono, a.peak_value) for a in opened] == [
        ("current_a", 3.0, 3.2),
        ("temp_c", 4.0, 91.0),
    ]
    closed = [e.anomaly for e in result.anomaly_events if type(e).__name__ == "AnomalyClosed"]
    assert [(a.channel, a.ended_mono, a.peak_value, a.samples) for a in closed] == [
        ("current_a", 3.3, 3.4, 3),
        ("temp_c", 4.2, 93.5, 2),
    ]
    assert result.frames == 20 + 39
    assert result.decode["header_changes"] == 1 and result.decode["skipped_wrong_columns"] == 1


# A limits rule on `a`; a stuck rule of 5 minutes on `b`. The incidents wait only for a stuck run in
# progress that could join them, in the backtest as in the live path (the stuck state is the batches').
LIMITS_A = {"channel": "a", "kind": "limits", "max": 5.0, "clear_after": 0.0}


def stuck_b(stuck_for: float) -> dict[str, Any]:
    return {"channel": "b", "kind": "stuck", "stuck_for": stuck_for, "clear_after": 0.0}


def two_channels(times: Any, a: Any, b: Any) -> bytes:
    return b"t_s,a,b\n" + b"".join(f"{t!r},{a(t)!r},{b(t)!r}\n".encode() for t in times)


@pytest.mark.parametrize("evaluator", [batch_for, SequentialBatch])
def test_a_5min_stuck_rule_on_a_changing_channel_does_not_hold_the_incident_open(
    tmp_path: Path, evaluator: Any
) -> None:
    """`a` is over its limit from 1.0 to 1.5 s; `b` changes at every row. The incident closes at its end
    + join_window (2 s; a tick later at most: at the tick at 3.5 s `b`'s last row is a stuck run that
    started then), not 300 s later as it did when every incident waited the rules' longest delay. Read
    a few rows a block."""
    times = [i * 0.1 for i in range(200)]
    data = two_channels(times, lambda t: 9.0 if 1.0 <= t < 1.5 else 1.0, lambda t: float(round(t * 10) % 7))
    with patch.object(engine, "batch_for", evaluator):
        result = same_as_live(tmp_path, [LIMITS_A, stuck_b(300.0)], data, chunk=64, join_window=2.0)
    [record] = result.incidents
    incident = record.closed.incident
    assert incident.ended_mono == 1.5 and incident.close_reason == "quiet"
    assert incident.closed_mono is not None and 3.5 <= incident.closed_mono <= 3.5 + engine.TICK_SECONDS


@pytest.mark.parametrize("evaluator", [batch_for, SequentialBatch])
def test_a_channel_that_freezes_in_the_incident_joins_it_when_its_stuck_rule_reports(
    tmp_path: Path, evaluator: Any
) -> None:
    """`b` freezes at 1.25 s, within `a`'s incident (window over at 3.5 s), and its 30 s stuck rule reports
    at 31.25 s: the incident waited for that run in progress, read across many small blocks."""
    times = [i * 0.25 for i in range(160)]
    data = two_channels(
        times, lambda t: 9.0 if 1.0 <= t < 1.5 else 1.0, lambda t: float(round(min(t, 1.25) * 4) % 7)
    )
    with patch.object(engine, "batch_for", evaluator):
        result = same_as_live(tmp_path, [LIMITS_A, stuck_b(30.0)], data, chunk=64, join_window=2.0)
    [record] = result.incidents
    assert [(m.channel, m.started_mono, m.opened_mono) for m in record.closed.incident.members] == [
        ("a", 1.0, 1.0),
        ("b", 1.25, 31.25),
    ]


def test_after_the_last_row_a_silence_in_progress_starts_at_the_last_row(tmp_path: Path) -> None:
    """The recording ends at 10.0 s; `a`'s incident ended at 8.0 s, so its window (1.9 s) ends at 9.9 s,
    after the last tick that saw the rows (9.75 s). After the last row a dropout rule's silence starts at
    that row (10.0 s), past the window: nothing in progress could join, and the incident closes at the
    first tick at or after 9.9 s, in the backtest as in the live path (not at 9.9 + dropout_after)."""
    times = [i * 0.1 for i in range(101)]
    data = b"t_s,a\n" + csv_rows(times, lambda t: 9.0 if 1.0 <= t < 8.0 else 1.0)
    rules = [LIMITS_A, {"channel": "*", "kind": "dropout", "dropout_after": 5.0}]
    result = same_as_live(tmp_path, rules, data, join_window=1.9)
    [record] = result.incidents
    assert record.closed.incident.ended_mono == 8.0 and record.closed.incident.closed_mono == 10.0
