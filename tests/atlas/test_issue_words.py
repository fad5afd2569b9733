"""What an incident's Atlas issue says, in words a test engineer reads at a glance: its title for every
kind of anomaly (each rule kind, the lens, the serial link down), its tags, and the count words of its
narratives. The anomalies come from the real Detector and its rules, so the words follow what the
checks really report."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from edge_agent.atlas import AtlasClient
from edge_agent.atlas.headline import NO_PORTS, BenchPorts, describe_anomaly
from edge_agent.atlas.incident_text import (
    closing_comment,
    grew_comment,
    incident_summary,
    incident_tags,
    incident_title,
    issue_tags,
    member_line,
)
from edge_agent.atlas.narrative import MAX_ISSUE_TITLE_CHARS, agent_tag
from edge_agent.config import EdgeAgentConfig, LensSection, RuleSection, SerialPort, load_config
from edge_agent.detect import (
    Anomaly,
    AnomalyEvent,
    AnomalyOpened,
    Debounce,
    Detector,
    LensAnomalyOptions,
    RobustStats,
)
from edge_agent.frames import Frame, LinkEvent, LinkState
from edge_agent.incidents import Incident, IncidentGrouper
from edge_agent.lens.protocol import LensInference
from edge_agent.steps.outcome import step_outcome
from edge_agent.steps.spans import StepSpans

WALL0 = 1_700_000_000.0
LENS_CHANNELS = ["supply_v", "vibration_g"]
ANOMALY_NUMBERS = itertools.count(1)  # one sequence for every detector here: the ids of one incident differ
ONE_PORT = BenchPorts.of([SerialPort(name="bench", url="/dev/ttyUSB0")])  # the frames' source, alone


def detector(*rules: dict[str, Any], lens: bool = False) -> Detector:
    section = LensSection(anomaly_labels=["fault"], channels=LENS_CHANNELS) if lens else None
    options = LensAnomalyOptions(severity="medium", debounce=Debounce(clear_after=2.0))
    return Detector(
        [RuleSection.model_validate(r) for r in rules], section, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}",
        lens_options=options,
    )  # fmt: skip


def frame(t: float, source: str = "bench", **values: float) -> Frame:
    return Frame(source=source, mono=t, wall=WALL0 + t, values=dict(values))


def fed(d: Detector, *frames: Frame) -> list[AnomalyEvent]:
    return [event for f in frames for event in d.on_frame(f)]


def opened(events: Sequence[AnomalyEvent]) -> Anomaly:
    (anomaly,) = [e.anomaly for e in events if isinstance(e, AnomalyOpened)]
    return anomaly


def incident(*members: Anomaly) -> Incident:
    """The incident these anomalies make, in this order (one physical event: all within the window)."""
    grouper = IncidentGrouper(new_id=lambda: "inc-1", join_window=60.0, update_after=0.5)
    grouper.on_events([AnomalyOpened(m) for m in members])
    (made,) = grouper.open_incidents()
    return made


def title(*members: Anomaly) -> str:
    return incident_title(incident(*members), "rig-7", ONE_PORT)


def unplugged(reason: str) -> Anomaly:
    d = detector({"channel": "*", "kind": "dropout", "dropout_after": "2s"})
    fed(d, frame(0.0, v=1.0))
    return opened(d.on_link(LinkEvent("bench", LinkState.DOWN, 0.5, WALL0 + 0.5, reason=reason)))


def lens_anomaly(scores: dict[str, float] | None = None) -> Anomaly:
    d = detector(lens=True)
    inference = LensInference(
        label="fault", scores=scores or {}, source="bench", session_id="lsn-1",
        window_start=WALL0 + 9.0, window_end=WALL0 + 10.0, received_at=WALL0 + 10.5,
    )  # fmt: skip
    return opened(d.on_inference(inference, 10.5, WALL0 + 10.5))


def test_a_lens_title_names_its_port_when_another_port_carries_one_of_its_channels() -> None:
    """The lens reads supply_v and vibration_g of "bench"; on a bench whose dut_b sends a supply_v too,
    the title says whose; where no other port has those channels it reads as on a bench of one port."""
    lens = lens_anomaly({"fault": 0.934})
    shared = BenchPorts({"bench": frozenset({"supply_v", "vibration_g"}), "dut_b": frozenset({"supply_v"})})
    apart = BenchPorts({"bench": frozenset({"supply_v", "vibration_g"}), "dut_b": frozenset({"current_a"})})
    assert describe_anomaly(lens, shared) == "lens: fault on supply_v, vibration_g of bench (score 0.93)"
    assert describe_anomaly(lens, apart) == "lens: fault on supply_v, vibration_g (score 0.93)"
    unknown = BenchPorts({"bench": None, "dut_b": None})  # channels only the devices' headers name
    assert describe_anomaly(lens, unknown).endswith("vibration_g of bench (score 0.93)")


# -- titles: one phrase per kind of anomaly ----------------------------------------------------------


def test_a_limit_title_says_which_bound_and_the_worst_reading() -> None:
    rule = {"channel": "supply_v", "kind": "limits", "min": 11.4, "max": 12.6, "severity": "high"}
    high = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=13.1)))
    low = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=10.2)))
    assert title(high) == "[rig-7] supply_v above max 12.6 (peak 13.1)"
    assert title(low) == "[rig-7] supply_v below min 11.4 (lowest 10.2)"


def test_a_baseline_title_names_the_band_not_its_statistics() -> None:
    d = Detector(
        [RuleSection.model_validate({"channel": "i", "kind": "baseline", "baseline_file": "b.json"})], None,
        new_id=lambda: "a1", load_baseline=lambda _path: {"i": RobustStats(median=1.0, mad=0.01)},
    )  # fmt: skip
    anomaly = opened(fed(d, *(frame(t, i=2.0) for t in (0.0, 0.1, 0.2))))
    assert re.fullmatch(r"\[rig-7\] i above baseline band \[[\d.]+, [\d.]+\] \(peak 2\)", title(anomaly))


def test_a_rate_title_says_rising_or_falling_and_how_fast() -> None:
    rule = {"channel": "temp_c", "kind": "rate", "max_rate": 5.0}
    rising = opened(fed(detector(rule), frame(0.0, temp_c=25.0), frame(1.0, temp_c=39.0)))
    falling = opened(fed(detector(rule), frame(0.0, temp_c=39.0), frame(1.0, temp_c=25.0)))
    assert title(rising) == "[rig-7] temp_c rising at 14/s (max 5/s)"
    assert title(falling) == "[rig-7] temp_c falling at 14/s (max 5/s)"


def test_a_stuck_title_says_the_value_and_for_how_long_never_a_peak() -> None:
    d = detector({"channel": "motor_temp_c", "kind": "stuck", "stuck_for": "3s", "clear_after": 0})
    frames = [frame(t, motor_temp_c=35.23) for t in range(6)]
    anomaly = opened(fed(d, *frames))
    # Filed while it still holds: how long is known only so far, and the title stays true.
    assert title(anomaly) == "[rig-7] motor_temp_c stuck at 35.23 for at least 3 s"
    rest = fed(d, *(frame(t, motor_temp_c=35.23) for t in range(6, 12)), frame(12.0, motor_temp_c=36.0))
    closed = next(e.anomaly for e in rest if not e.anomaly.is_open)
    assert describe_anomaly(closed, ONE_PORT) == "motor_temp_c stuck at 35.23 for 12 s"
    assert "peak" not in title(anomaly) + describe_anomaly(closed, ONE_PORT)


def test_dropout_titles_say_what_went_quiet_and_for_how_long() -> None:
    d = detector({"channel": "v", "kind": "dropout", "dropout_after": "1s"})
    d.tick(0.0, WALL0)
    fed(d, frame(0.0, v=1.0))
    assert title(opened(d.tick(1.5, WALL0 + 1.5))) == "[rig-7] no v readings for at least 1.5 s"
    d = detector({"channel": "*", "kind": "dropout", "dropout_after": "2s"})
    d.tick(0.0, WALL0)
    fed(d, frame(0.0, v=1.0))
    assert title(opened(d.tick(2.5, WALL0 + 2.5))) == "[rig-7] no frames from bench for at least 2.5 s"


def test_an_unplugged_port_is_titled_serial_link_down_with_the_reason() -> None:
    assert title(unplugged("unplugged")) == "[rig-7] serial link down on bench (unplugged)"


def test_a_lens_title_says_the_label_the_channels_it_reads_and_the_score() -> None:
    assert title(lens_anomaly({"fault": 0.934, "normal": 0.066})) == (
        "[rig-7] lens: fault on supply_v, vibration_g (score 0.93)"
    )
    assert title(lens_anomaly()) == "[rig-7] lens: fault on supply_v, vibration_g"  # a lens without scores


def test_a_lens_led_issue_is_retitled_by_the_channel_that_joins_and_long_titles_keep_their_count() -> None:
    rule = {"channel": "supply_v", "kind": "limits", "max": 12.6}
    lens = lens_anomaly({"fault": 0.9})
    supply = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=13.1)))
    assert title(lens, supply) == "[rig-7] supply_v above max 12.6 (peak 13.1) +1 more"
    long = title(unplugged("x" * 300), lens)
    assert len(long) == MAX_ISSUE_TITLE_CHARS and long.endswith("… +1 more")


# -- tags -------------------------------------------------------------------------------------------


def test_tags_are_words_to_filter_by_and_the_unique_tag_is_kept_byte_for_byte() -> None:
    rule = {"channel": "supply_v", "kind": "limits", "max": 12.6}
    supply = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=13.1)))
    made = incident(supply, lens_anomaly({"fault": 0.9}), unplugged("unplugged"))
    tags = incident_tags(made, "rig-7")
    assert tags == [
        "rig-7", "supply_v", "lens", "all-channels", "rule:limits", "rule:dropout", "edge-agent:inc-1",
    ]  # fmt: skip
    assert tags[-1] == agent_tag(made.id) == "edge-agent:inc-1"  # what find_issue_by_tag looks for
    assert not [t for t in tags if re.match(r"rule\d", t)]  # rule ids stay in the JSON summary
    assert [m["rule_id"] for m in incident_summary(made, "rig-7", ONE_PORT)["members"]] == [
        "rule0:limits", "lens", "rule0:dropout",
    ]  # fmt: skip
    # The crash recovery tags the issue from the summary its open record kept: the same tags.
    assert issue_tags("rig-7", incident_summary(made, "rig-7", ONE_PORT)["members"], made.id) == tags


async def test_the_issue_is_found_by_its_unique_tag_among_the_human_ones(atlas: AtlasClient) -> None:
    rule = {"channel": "supply_v", "kind": "limits", "max": 12.6}
    supply = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=13.1)))
    made = incident(supply)
    other = replace(made, id="inc-2")
    for filed in (other, made):
        await atlas.create_issue(incident_title(filed, "rig-7", ONE_PORT), tags=incident_tags(filed, "rig-7"))
    found = await atlas.find_issue_by_tag(agent_tag(made.id))
    assert found is not None and found.tags == ["rig-7", "supply_v", "rule:limits", "edge-agent:inc-1"]
    assert await atlas.find_issue_by_tag("edge-agent:inc-3") is None


# -- narratives: count words, and a lens incident names the lens's channels -------------------------


def test_a_lens_incident_closes_on_the_channels_the_lens_reads() -> None:
    lens = lens_anomaly({"fault": 0.93})
    summary = incident_summary(incident(lens), "rig-7", ONE_PORT)
    closing = closing_comment(summary, [])
    first = closing.splitlines()[0]
    assert first == (
        "Incident over: 1 anomaly on the lens's channels supply_v, vibration_g (source bench),"
        " severity medium."
    )
    assert "0 channel" not in closing and "channel(s)" not in closing
    assert "lens: fault on supply_v, vibration_g (score 0.93); lens on bench, severity medium" in closing
    # An open record kept before the lens's channels were in the summary still reads naturally.
    old = {
        **summary,
        "members": [{k: v for k, v in m.items() if k != "lens_channels"} for m in summary["members"]],
    }
    assert closing_comment(old, []).startswith("Incident over: 1 anomaly on the lens (source bench),")


def test_count_words_read_naturally_as_members_join() -> None:
    rule = {"channel": "supply_v", "kind": "limits", "max": 12.6, "severity": "high"}
    supply = opened(fed(detector(rule), frame(0.0, supply_v=12.0), frame(0.1, supply_v=13.1)))
    lens = lens_anomaly({"fault": 0.9})
    summary = incident_summary(incident(supply, lens), "rig-7", ONE_PORT)
    grew = grew_comment(summary, summary["members"][1:], 1, severity_raised=False)
    assert grew.startswith(
        "1 more anomaly joined this incident (now 2 anomalies on supply_v and the lens's channels"
        " supply_v, vibration_g):\n"
    )
    assert closing_comment(summary, []).startswith(
        "Incident over: 2 anomalies on supply_v and the lens's channels supply_v, vibration_g (source bench),"
        " severity high."
    )
    line = member_line(summary["members"][0], summary["members"][0]["started_wall"])
    assert (
        line
        == "+0.000 s  supply_v above max 12.6 (peak 13.1); limits rule on bench, severity high, still active"
    )


# -- a bench of several ports: a channel name two ports carry says which port -------------------------

TWO_DUTS = """
[agent]
bench = "rig-7"
state_dir = "{state}"
[atlas]
enabled = false
[[rules]]
channel = "temp_c"
kind = "limits"
max = 80
severity = "high"
[[rules]]
channel = "temp_c"
kind = "stuck"
stuck_for = "3s"
[[rules]]
channel = "temp_c"
kind = "rate"
max_rate = 5
[[rules]]
channel = "temp_c"
kind = "dropout"
dropout_after = "2s"
[[rules]]
channel = "supply_v"
kind = "limits"
max = 12.6
[[rules]]
channel = "current_a"
kind = "limits"
max = 2.5
"""
DUT = '\n[[serial]]\nname = "{name}"\nurl = "/dev/ttyUSB{n}"\n'


def two_duts(tmp_path: Path, a: str, b: str) -> EdgeAgentConfig:
    """The bench's config as its file says: ports dut_a and dut_b (`a`, `b`: the rest of each
    [[serial]] table) and rules that watch every port."""
    ports = DUT.format(name="dut_a", n=0) + a + DUT.format(name="dut_b", n=1) + b
    path = tmp_path / "agent.toml"
    path.write_text(TWO_DUTS.format(state=tmp_path) + ports, encoding="utf-8")
    return load_config(path, environ={}, secrets=False)


def identical_duts(tmp_path: Path) -> EdgeAgentConfig:
    """Two identical devices (both send temp_c), each with one channel of its own."""
    return two_duts(tmp_path, 'columns = ["temp_c", "supply_v"]\n', 'columns = ["temp_c", "current_a"]\n')


def hot(config: EdgeAgentConfig, source: str, peak: float) -> Anomaly:
    """The limits anomaly of `source`'s temp_c reaching `peak` (its rate rule sees the jump too)."""
    d = Detector(config.rules, None, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}")
    events = fed(d, frame(0.0, source, temp_c=70.0), frame(0.1, source, temp_c=peak))
    (limits,) = [
        e.anomaly for e in events if isinstance(e, AnomalyOpened) and e.anomaly.kind == "rule:limits"
    ]
    return limits


async def test_a_channel_both_ports_carry_names_its_port_in_the_issue_title(
    atlas: AtlasClient, tmp_path: Path
) -> None:
    config = identical_duts(tmp_path)
    ports = BenchPorts.of(config.serial)
    made = incident(hot(config, "dut_b", 93.1))
    await atlas.create_issue(incident_title(made, "rig-7", ports), tags=incident_tags(made, "rig-7"))
    found = await atlas.find_issue_by_tag(agent_tag(made.id))
    assert found is not None and found.title == "[rig-7] temp_c on dut_b above max 80 (peak 93.1)"
    # Both devices too hot: two channels ("+1 more"), not one temp_c.
    both = incident(hot(config, "dut_a", 95.0), hot(config, "dut_b", 93.1))
    assert incident_title(both, "rig-7", ports) == "[rig-7] temp_c on dut_a above max 80 (peak 95) +1 more"
    # ... and the narratives count two channels, each on its port, not one temp_c.
    summary = incident_summary(both, "rig-7", ports)
    grew = grew_comment(summary, summary["members"][1:], 1, severity_raised=False)
    assert grew.startswith(
        "1 more anomaly joined this incident (now 2 anomalies on temp_c on dut_a, temp_c on dut_b):"
    )
    assert closing_comment(summary, []).startswith(
        "Incident over: 2 anomalies on temp_c on dut_a, temp_c on dut_b (sources dut_a, dut_b),"
    )
    # A channel only one port has reads as on a bench of one port.
    d = Detector(config.rules, None, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}")
    supply = opened(fed(d, frame(0.0, "dut_a", supply_v=12.0), frame(0.1, "dut_a", supply_v=13.1)))
    assert incident_title(incident(supply), "rig-7", ports) == "[rig-7] supply_v above max 12.6 (peak 13.1)"


def test_every_kind_of_check_on_a_shared_channel_names_the_port(tmp_path: Path) -> None:
    config = identical_duts(tmp_path)
    ports = BenchPorts.of(config.serial)
    d = Detector(config.rules, None, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}")
    d.tick(0.0, WALL0)
    events = fed(d, *(frame(t / 2, "dut_a", temp_c=35.23) for t in range(12)))
    events += fed(d, frame(6.0, "dut_a", temp_c=50.0))
    events += d.tick(8.5, WALL0 + 8.5)
    words = sorted(describe_anomaly(e.anomaly, ports) for e in events if isinstance(e, AnomalyOpened))
    assert words == [
        "no temp_c readings from dut_a for at least 2.5 s",
        "temp_c on dut_a rising at 29.54/s (max 5/s)",
        "temp_c on dut_a stuck at 35.23 for at least 3 s",
    ]


def test_the_timeline_names_the_port_once_and_a_step_note_names_it_too(tmp_path: Path) -> None:
    config = identical_duts(tmp_path)
    ports = BenchPorts.of(config.serial)
    d = Detector(config.rules, None, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}")
    events = fed(d, frame(0.0, "dut_b", temp_c=78.0), frame(1.0, "dut_b", temp_c=80.4))
    (member,) = incident_summary(incident(opened(events)), "rig-7", ports)["members"]
    # The timeline line says the port after the words ("limits rule on dut_b"), so the words do not.
    assert member_line(member, member["started_wall"]) == (
        "+0.000 s  temp_c above max 80 (peak 80.4); limits rule on dut_b, severity high, still active"
    )
    spans = StepSpans(ports)
    spans.apply(events)
    note = step_outcome(0.0, 1.0, spans.spans()).exception or ""
    assert note.startswith("anomalies during the step: temp_c on dut_b above max 80 (peak 80.4) [high,")


def test_a_port_whose_channels_come_from_its_data_could_carry_any_name(tmp_path: Path) -> None:
    """Conservative: dut_b reads its channels from a header (or jsonl), so it could send a temp_c too."""
    for dut_b in ("", 'format = "jsonl"\n'):
        config = two_duts(tmp_path, 'columns = ["temp_c", "supply_v"]\n', dut_b)
        ports = BenchPorts.of(config.serial)
        made = incident(hot(config, "dut_a", 93.1))
        assert incident_title(made, "rig-7", ports) == "[rig-7] temp_c on dut_a above max 80 (peak 93.1)"
        made = incident(hot(config, "dut_b", 93.1))
        assert incident_title(made, "rig-7", ports) == "[rig-7] temp_c on dut_b above max 80 (peak 93.1)"
        # ... but a channel that dut_a's columns do not have can only be dut_b's.
        d = Detector(config.rules, None, new_id=lambda: f"a{next(ANOMALY_NUMBERS)}")
        current = opened(fed(d, frame(0.0, "dut_b", current_a=2.0), frame(0.1, "dut_b", current_a=3.1)))
        assert (
            incident_title(incident(current), "rig-7", ports) == "[rig-7] current_a above max 2.5 (peak 3.1)"
        )
    # Alone on its bench, a port whose channels come from its data names none.
    alone = BenchPorts.of([SerialPort(name="dut_a", url="/dev/ttyUSB0", format="jsonl")])
    made = incident(hot(identical_duts(tmp_path), "dut_a", 93.1))
    assert (
        incident_title(made, "rig-7", alone)
        == incident_title(made, "rig-7", NO_PORTS)
        == "[rig-7] temp_c above max 80 (peak 93.1)"
    )
