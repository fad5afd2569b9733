"""One anomaly in the words a test engineer reads at a glance (pure): what an issue's title and each
line of its narrative say happened, per kind of anomaly.

    supply_v above max 12.6 (peak 13.838)          limits (below: "below min 11.4 (lowest 10.2)")
    temp_c above baseline band [28, 32] (peak 35)   baseline
    current_a rising at 5.2/s (max 2/s)             rate (or "falling at")
    temp_c stuck at 35.23 for 6 s                   stuck ("for at least 3 s" while it still holds)
    no frames from bench for 2.4 s                  dropout of a source (one channel: "no supply_v readings")
    serial link down on bench (unplugged)           dropout: the port itself went away
    lens: fault on supply_v, vibration_g (score 0.93)

Everything works on an anomaly's JSON summary (narrative.anomaly_summary), the form the comments and
the crash recovery have, so the title, the narrative and a test step's note say the same thing. The rule ids
(`rule0:limits`) stay in the JSON summary for machines; people read the rule's kind.

A channel name that another port of the bench could carry too (two identical devices `dut_a` and `dut_b`
both sending `temp_c`) says which port: `temp_c on dut_b above max 80 (peak 93.1)`, `no temp_c readings
from dut_b for 2 s`, `lens: fault on temp_c, vibration_g of dut_b` (BenchPorts). A channel only one
port has reads as above.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.atlas.narrative import anomaly_summary, num, subject
from edge_agent.detect.anomaly import Anomaly

if TYPE_CHECKING:
    from edge_agent.config import SerialPort

LINK_DOWN = "serial link down"  # how edge_agent.detect.dropout words a dropout the port reported


ALL_CHANNELS = "*"  # a whole-source dropout's channel: every port has it


@dataclass(frozen=True, slots=True)
class BenchPorts:
    """The bench's serial ports and the channels each one carries as the config says (None: a port whose
    channels only its data names: a csv header read from the device, jsonl, kv), to tell whether a
    channel name is ambiguous on this bench. Conservative: a port whose channels are not known could carry
    any name, so on a bench of two ports or more every other port's channels name their port."""

    channels: Mapping[str, frozenset[str] | None] = field(default_factory=dict)

    @classmethod
    def of(cls, ports: Iterable[SerialPort]) -> BenchPorts:
        """The `[[serial]]` ports of a config."""
        return cls({p.name: None if p.value_channels is None else frozenset(p.value_channels) for p in ports})

    def shared(self, source: str, channel: str) -> bool:
        """Whether a port other than `source` could also carry `channel` (the lens's "" never: a bench
        has one lens)."""
        if not channel:
            return False
        return any(
            port != source and (known is None or channel == ALL_CHANNELS or channel in known)
            for port, known in self.channels.items()
        )


# A bench of no configured port, where no name is ambiguous: the words of a line that names the port
# beside them (the timeline's "limits rule on dut_b").
NO_PORTS = BenchPorts()


def plural(count: int, word: str) -> str:
    """`1 anomaly`, `2 anomalies`, `1 channel`, `3 channels`."""
    if count == 1:
        return f"1 {word}"
    return f"{count} {word[:-1]}ies" if word.endswith("y") else f"{count} {word}s"


def seconds_text(seconds: float) -> str:
    """`0.4 s`, `2.5 s`, `12 s`: a duration as people say it."""
    if seconds >= 10:
        return f"{seconds:.0f} s"
    return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _lasted(member: Mapping[str, Any]) -> str:
    """How long the condition held: to its end once it ended ("for 6 s"), else as far as it is known,
    to its latest peak ("for at least 3 s": a title filed while it still holds stays true)."""
    started = _float(member.get("started_wall"))
    ended = _float(member.get("ended_wall"))
    if started is None:
        return ""
    if ended is not None:
        return f" for {seconds_text(max(0.0, ended - started))}"
    latest = _float(member.get("peak_wall"))
    return f" for at least {seconds_text(max(0.0, latest - started))}" if latest is not None else ""


def _channel(member: Mapping[str, Any]) -> str:
    return str(member.get("channel") or "")


def _source(member: Mapping[str, Any]) -> str:
    return str(member.get("source") or "")


def _named(member: Mapping[str, Any], ports: BenchPorts) -> str:
    """The member's channel, `temp_c on dut_b` when another port could carry a `temp_c` too."""
    channel = _channel(member)
    return f"{channel} on {_source(member)}" if ports.shared(_source(member), channel) else channel


def named_subject(anomaly: Anomaly, ports: BenchPorts) -> str:
    """narrative.subject with its port where the name is ambiguous: what a title counts as one "more"."""
    what = subject(anomaly)
    return f"{what} on {anomaly.source}" if ports.shared(anomaly.source, anomaly.channel) else what


def _peak(member: Mapping[str, Any]) -> str:
    value = _float(member.get("peak_value"))
    return num(value) if value is not None else "?"


def _threshold(member: Mapping[str, Any]) -> str:
    return str(member.get("threshold") or "")


def _past_a_bound(member: Mapping[str, Any], channel: str, fallback: str) -> str:
    """limits and baseline: `above max 12.6 (peak 13.1)`, `below baseline band [a, b] (lowest 9.8)`."""
    threshold = _threshold(member)
    if threshold.startswith(("max ", "above ")):
        return f"{channel} above {threshold.removeprefix('above ').split(' (')[0]} (peak {_peak(member)})"
    if threshold.startswith(("min ", "below ")):
        return f"{channel} below {threshold.removeprefix('below ').split(' (')[0]} (lowest {_peak(member)})"
    return f"{channel} {fallback} (peak {_peak(member)})"


def _rate(member: Mapping[str, Any], channel: str) -> str:
    value = _float(member.get("peak_value"))
    if value is None:
        return f"{channel} changing too fast"
    limit = _threshold(member).removeprefix("max_rate ")
    direction = "rising" if value >= 0 else "falling"
    return f"{channel} {direction} at {num(abs(value))}/s (max {limit})"


def _dropout(member: Mapping[str, Any], ports: BenchPorts) -> str:
    source = _source(member) or "the port"
    threshold = _threshold(member)
    if threshold.startswith(LINK_DOWN):
        reason = threshold.removeprefix(LINK_DOWN).removeprefix(":").strip()
        return f"{LINK_DOWN} on {source}" + (f" ({reason})" if reason else "")
    channel = _channel(member)
    if channel in ("", ALL_CHANNELS):
        what = f"no frames from {source}"
    else:
        where = f" from {source}" if ports.shared(_source(member), channel) else ""
        what = f"no {channel} readings{where}"
    return what + _lasted(member)


def lens_words(member: Mapping[str, Any], ports: BenchPorts = NO_PORTS) -> str:
    """`lens: fault on supply_v, vibration_g (score 0.93)`: the label, the channels the lens reads;
    `... vibration_g of dut_b` when another of `ports` could carry one of those channels too."""
    label = member.get("label") or "anomalous label"
    channels: Sequence[str] = member.get("lens_channels") or ()
    where = f" on {', '.join(channels)}" if channels else ""
    source = _source(member)
    if any(ports.shared(source, channel) for channel in channels):
        where += f" of {source}"
    scores = member.get("scores") or {}
    # The score shown is the label's own (a lens that sends none has its anomaly valued 1.0: no score)
    scored = str(label).casefold() in {str(name).casefold() for name in scores}
    value = _float(member.get("peak_value"))
    score = f" (score {value:.2f})" if scored and value is not None else ""
    return f"lens: {label}{where}{score}"


def anomaly_words(member: Mapping[str, Any], ports: BenchPorts) -> str:
    """What happened, for a title or a timeline line (see the module's examples); a channel name that
    another of `ports` could carry names its port."""
    kind = str(member.get("kind") or "")
    if kind == "lens":
        return lens_words(member, ports)
    if kind == "rule:limits":
        return _past_a_bound(member, _named(member, ports), "outside its limits")
    if kind == "rule:baseline":
        return _past_a_bound(member, _named(member, ports), "outside its baseline band")
    if kind == "rule:rate":
        return _rate(member, _named(member, ports))
    if kind == "rule:stuck":
        return f"{_named(member, ports)} stuck at {_peak(member)}{_lasted(member)}"
    if kind == "rule:dropout":
        return _dropout(member, ports)
    return str(member.get("description") or kind or "anomaly")


def describe_anomaly(anomaly: Anomaly, ports: BenchPorts) -> str:
    """anomaly_words of an Anomaly record: an issue's title, a test step's note."""
    return anomaly_words(anomaly_summary(anomaly, ""), ports)


def rule_words(member: Mapping[str, Any]) -> str:
    """Which check saw it, as a person names it: `limits rule`, `stuck rule`, `lens`."""
    kind = str(member.get("kind") or "")
    return f"{kind.removeprefix('rule:')} rule" if kind.startswith("rule:") else (kind or "?")


def channels_words(channels: Sequence[str], members: Sequence[Mapping[str, Any]]) -> str:
    """Where an incident's anomalies are: `supply_v`, `supply_v, temp_c`, `all channels`, and for the
    lens `the lens's channels supply_v, vibration_g` (the channels it reads), joined with "and"."""
    named = ["all channels" if c == "*" else c for c in channels if c]
    parts = [", ".join(dict.fromkeys(named))] if named else []
    lens = next((m for m in members if m.get("kind") == "lens"), None)
    if lens is not None:
        read: Sequence[str] = lens.get("lens_channels") or ()
        parts.append(f"the lens's channels {', '.join(read)}" if read else "the lens")
    return " and ".join(parts) or "no channel"
