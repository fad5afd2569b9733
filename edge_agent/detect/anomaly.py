"""What detection hands downstream: the `Anomaly` record and the events that open, update and close it.

Anomalies are immutable snapshots: the tracker builds a new one for every event, so a consumer that
queues an event (the outbox, the reporter) never sees it change underneath it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Severity = Literal["low", "medium", "high"]
Priority = Literal["low", "medium", "high"]

# Atlas issues take priority low|medium|high (api/atlas-issues.md). The severities are named after them,
# but the table stays so that a future severity scale maps here in one place.
PRIORITY_FOR_SEVERITY: Mapping[str, Priority] = {"low": "low", "medium": "medium", "high": "high"}


def priority_for(severity: Severity) -> Priority:
    return PRIORITY_FOR_SEVERITY[severity]


class AnomalyKey(NamedTuple):
    """At most one anomaly is open per key at any time."""

    rule_id: str  # "rule3:limits", or "lens"
    source: str  # serial source name ("" only for a rule that has not seen any source yet)
    channel: str  # channel name; "" for lens anomalies, "*" for a whole-source dropout


class PendingReport(NamedTuple):
    """A rule's condition in progress that the rule has not reported (yet): a limits or rate excursion
    held for its `hold`, a channel unchanged but not yet for `stuck_for`, a source silent but not yet for
    `dropout_after`. If it is reported, its anomaly (of `key`) starts at `started_mono` (its source's
    timeline), up to `delay` seconds later (`edge_agent.detect.rules.report_delay`): what the incident
    grouper waits for before it closes an incident that the anomaly would join. `counting_samples`: the
    rule is still counting the active samples in a row it needs (`hold_samples`), which come at the
    device's sample interval, not known from the configuration: the grouper waits for them while the
    streak lasts, up to `incidents.hold_samples_wait` more."""

    key: AnomalyKey
    started_mono: float
    delay: float
    counting_samples: bool = False


CloseReason = Literal["cleared", "shutdown"]


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One anomaly, from the first sample of the condition to the moment it cleared.

    `started_*` is when the condition began (the first sample of the streak that opened it, which is
    earlier than `opened_*` when a hold debounced it), `ended_*` when it stopped holding (the first clear
    sample), `closed_*` when the tracker decided it was over (`ended` + `clear_after`, or shutdown).
    `peak_value` is the `measure` at the worst sample, `peak_excursion` how far beyond the threshold
    that sample was (>= 0, in the measure's units; for lens anomalies the label's score).
    """

    id: str
    key: AnomalyKey
    kind: str  # "rule:limits" | "rule:rate" | "rule:stuck" | "rule:dropout" | "rule:baseline" | "lens"
    description: str  # the rule in words: "supply_v outside [11.4, 12.6]"
    severity: Severity
    priority: Priority
    measure: str  # what peak_value is: "value", "rate (units/s)", "seconds unchanged", ...
    threshold: str  # the threshold the peak sample broke: "max 12.6", "serial link down: unplugged"
    started_mono: float
    started_wall: float
    opened_mono: float
    opened_wall: float
    peak_value: float
    peak_excursion: float
    peak_mono: float
    peak_wall: float
    samples: int  # active samples seen, the debounce streak included
    ended_mono: float | None = None
    ended_wall: float | None = None
    closed_mono: float | None = None
    closed_wall: float | None = None
    close_reason: CloseReason | None = None
    label: str | None = None  # lens anomalies: the label of the peak inference
    scores: Mapping[str, float] = field(default_factory=dict)
    # Lens anomalies: the channels the lens reads (config lens.channels). A lens anomaly has no channel of
    # its own (key.channel is ""), so this is what its issue names as where the lens saw the fault.
    lens_channels: tuple[str, ...] = ()

    @property
    def rule_id(self) -> str:
        return self.key.rule_id

    @property
    def source(self) -> str:
        return self.key.source

    @property
    def channel(self) -> str:
        return self.key.channel

    @property
    def is_open(self) -> bool:
        return self.closed_mono is None


@dataclass(frozen=True, slots=True)
class AnomalyOpened:
    anomaly: Anomaly


@dataclass(frozen=True, slots=True)
class AnomalyUpdated:
    """An anomaly open for longer than the tracker's `update_every`: a progress report (peak, samples)."""

    anomaly: Anomaly


@dataclass(frozen=True, slots=True)
class AnomalyClosed:
    anomaly: Anomaly


AnomalyEvent = AnomalyOpened | AnomalyUpdated | AnomalyClosed
