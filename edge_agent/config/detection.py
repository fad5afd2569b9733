"""What makes an anomaly and an incident: the `[[rules]]` that watch channels and `[incidents]`, which
groups related anomalies into one Atlas issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.values import Duration, Interval, Section

# A dropout rule's channel meaning any frame of its source (the whole port silent).
ANY_CHANNEL = "*"
RuleKind = Literal["limits", "rate", "stuck", "dropout", "baseline"]
Severity = Literal["low", "medium", "high"]


class RuleSection(Section):
    channel: str = Field(
        min_length=1,
        description="On a csv port with columns, one of them (not the device_time column); dropout: '*'"
        " = any frame.",
    )
    source: str = Field("", description="A [[serial]] port's name; empty = every port.")
    kind: RuleKind
    min: float | None = Field(None, description="limits: in the channel's unit (any finite value).")
    max: float | None = Field(None, description="limits: in the channel's unit (any finite value).")
    max_rate: float | None = Field(None, gt=0, description="rate: the channel's units per second.")
    stuck_for: Duration | None = None
    dropout_after: Duration | None = None
    baseline_file: Path | None = Field(
        None,
        description="baseline: a fixed band from this JSON file (channel -> median, mad), not learned.",
    )
    baseline_warmup: Duration = Field(
        10800.0,
        description="baseline: no verdict until this much data was seen (at start and after a relearn).",
    )
    baseline_k: float = Field(10.0, gt=0, le=1000, description="baseline: band half-width in robust sigmas.")
    baseline_window: Duration = Field(
        14400.0,
        description="baseline: the band is learned from this much recent data; 0 = learn once (static).",
    )
    baseline_update: Interval = Field(
        120.0, description="baseline: the band is recomputed this often (one block of samples)."
    )
    baseline_relearn_after: Duration = Field(
        600.0,
        description="baseline: a gap in the data longer than this forgets the band (learn anew); 0 = never.",
    )
    hold: Duration = 0.0
    hold_samples: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="Active samples in a row before it opens; default 3 for baseline, 1 for the others.",
    )
    clear_after: Duration = 2.0
    severity: Severity = "medium"

    @model_validator(mode="after")
    def _kind_has_its_parameters(self) -> RuleSection:
        needs: dict[str, tuple[str, ...]] = {
            "limits": ("min", "max"),
            "rate": ("max_rate",),
            "stuck": ("stuck_for",),
            "dropout": ("dropout_after",),
        }
        wanted = needs.get(self.kind, ())
        if wanted and all(getattr(self, name) is None for name in wanted):
            raise ValueError(f"a '{self.kind}' rule needs {' or '.join(wanted)}")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


GroupBy = Literal["bench", "source", "channels"]


class IncidentsSection(Section):
    """How related anomalies become one incident (one Atlas issue): see edge_agent/incidents/."""

    group_by: GroupBy = Field(
        "bench",
        description="Anomalies that may form one incident: the whole bench, one source, or channel groups.",
    )
    channel_groups: list[list[str]] = Field(
        default_factory=list,
        description="group_by = channels: lists of channels that fail together; others are a group each.",
    )
    join_window: Duration = Field(
        30.0,
        description="An anomaly starting this long after the incident's last activity still joins it;"
        " also the quiet time after which an incident closes (plus how late the lens reports, measured, or,"
        " while a rule has a condition in progress that could still join, that rule's hold, stuck_for or"
        " dropout_after).",
    )
    update_after: Duration = Field(
        5.0, description="Members that join are reported in one comment per this many seconds."
    )
    hold_samples_wait: Duration = Field(
        10.0,
        description="How much longer an incident waits past its window for a rule still counting the"
        " samples in a row it needs (hold_samples > 1; baseline rules by default): they come at the"
        " device's sample interval, which the configuration does not say. The wait ends when the streak"
        " does; a device slower than this per hold_samples - 1 samples may still split an incident.",
    )
    repeat_window: Duration = Field(
        1800.0,
        description="A new incident like one whose issue is still open becomes a comment on it only"
        " within this long since that issue's last activity.",
    )

    @model_validator(mode="after")
    def _groups_are_disjoint(self) -> IncidentsSection:
        seen: dict[str, int] = {}
        for index, group in enumerate(self.channel_groups):
            if not group:
                raise ValueError(f"channel_groups[{index}] is empty")
            for channel in group:
                if channel in seen and seen[channel] != index:
                    raise ValueError(
                        f"channel {channel!r} is in channel_groups[{seen[channel]}] and [{index}]"
                    )
                seen[channel] = index
        if self.group_by == "channels" and not self.channel_groups:
            raise ValueError("group_by = 'channels' needs channel_groups")
        return self
