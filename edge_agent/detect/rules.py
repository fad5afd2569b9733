"""The configured rules (`[[rules]]`) compiled once, at start-up: each one checked and given its anomaly
spec and a factory of its check, so a bad rule or baseline file fails before the first frame
(`RuleConfigError`). The `Detector` makes the checks per source from the factories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_agent.config import RuleSection
from edge_agent.detect.baseline import BaselineFileError, RobustStats
from edge_agent.detect.baseline_check import BaselineCheck
from edge_agent.detect.checks import LimitsCheck, RateCheck, StuckCheck, ValueCheck
from edge_agent.detect.dropout import ANY_CHANNEL, DropoutWatch
from edge_agent.detect.tracker import AnomalySpec, Debounce

# `hold_samples` when a rule does not set it. A baseline band is a statistical threshold: a lone
# heavy-tailed sample or spike crosses it now and then, so it must hold for 3 samples in a row
# (README "Baseline defaults" for the measurements); every other rule opens on its first sample.
DEFAULT_HOLD_SAMPLES = {"baseline": 3}
LoadBaseline = Callable[[Path], Mapping[str, RobustStats]]


def report_delay(section: RuleSection) -> float:
    """How long after its anomaly's start a rule can report it, known from its configuration: `hold`
    (the condition must hold that long first), after the `stuck_for` of a stuck rule or the
    `dropout_after` of a dropout rule (both backdate the start to the last change, the last frame).
    Not counted: `hold_samples`, whose duration is the device's sample interval (`any_counts_samples`),
    and the interval to the sample that confirms it (a sample's worth)."""
    detection = section.stuck_for if section.kind == "stuck" else None
    if section.kind == "dropout":
        detection = section.dropout_after
    return section.hold + (detection or 0.0)


def hold_samples_of(section: RuleSection) -> int:
    """The active samples in a row `section`'s rule needs before it opens (its default if unset)."""
    if section.hold_samples is not None:
        return section.hold_samples
    return DEFAULT_HOLD_SAMPLES.get(section.kind, 1)


def any_counts_samples(rules: Iterable[RuleSection]) -> bool:
    """Whether a rule waits for more than one sample in a row (`hold_samples` > 1, a baseline rule's
    default): its report is late by samples whose interval is the device's, not in the configuration
    (the incident grouper's `sample_wait`, `incidents.hold_samples_wait`)."""
    return any(hold_samples_of(section) > 1 for section in rules)


def longest_report_delay(rules: Iterable[RuleSection]) -> float:
    """The largest `report_delay` among `rules` (0 without rules): how long past its quiet period an
    incident waits for a rule's late report (`IncidentGrouper`'s `rule_delay`)."""
    return max(map(report_delay, rules), default=0.0)


class RuleConfigError(ValueError):
    """A rule that cannot be used; the message names `rules[i]` and the reason."""


@dataclass(slots=True)
class CompiledRule:
    index: int
    section: RuleSection
    rule_id: str
    spec: AnomalySpec
    make_check: Callable[[], ValueCheck] | None  # None for dropout (time-driven, not a value check)


def compile_rule(index: int, section: RuleSection, load_baseline: LoadBaseline) -> CompiledRule:
    """`rules[index]` checked and compiled; `load_baseline` reads its baseline file, if it names one."""
    where = f"rules[{index}] ({section.kind} on {section.channel})"
    try:
        debounce = Debounce(section.hold, hold_samples_of(section), section.clear_after)
        make_check = _check_factory(section, load_baseline)
        if make_check is None:
            if section.dropout_after is None or not section.dropout_after > 0:
                raise ValueError("dropout_after must be > 0 seconds")
            after = section.dropout_after
            what = "frames" if section.channel == ANY_CHANNEL else section.channel
            description = f"{what} dropout (no frame for {after:g}s, or serial link down)"
            measure = DropoutWatch.measure
        else:
            probe = make_check()  # validates the parameters once, now
            description = probe.describe(section.channel)
            measure = probe.measure
    except (ValueError, BaselineFileError) as exc:
        raise RuleConfigError(f"{where}: {exc}") from None
    if section.source:
        description += f" on {section.source}"
    spec = AnomalySpec(
        kind=f"rule:{section.kind}", description=description, severity=section.severity,
        measure=measure, debounce=debounce,
    )  # fmt: skip
    return CompiledRule(index, section, f"rule{index}:{section.kind}", spec, make_check)


def _check_factory(section: RuleSection, load_baseline: LoadBaseline) -> Callable[[], ValueCheck] | None:
    kind = section.kind
    if kind == "limits":
        return lambda: LimitsCheck(section.min, section.max)
    if kind == "rate":
        max_rate = section.max_rate
        if max_rate is None:
            raise ValueError("a 'rate' rule needs max_rate")
        return lambda: RateCheck(max_rate)
    if kind == "stuck":
        stuck_for = section.stuck_for
        if stuck_for is None:
            raise ValueError("a 'stuck' rule needs stuck_for")
        return lambda: StuckCheck(stuck_for)
    if kind == "baseline":
        stats: RobustStats | None = None
        if section.baseline_file is not None:
            table = load_baseline(section.baseline_file)
            if section.channel not in table:
                where = section.baseline_file
                raise BaselineFileError(f"{where}: no entry for channel {section.channel!r}")
            stats = table[section.channel]
        return lambda: BaselineCheck(
            section.baseline_k, section.baseline_warmup, stats, window=section.baseline_window,
            update=section.baseline_update, relearn_after=section.baseline_relearn_after,
        )  # fmt: skip
    return None
