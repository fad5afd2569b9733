"""The incident grouper (sans-I/O): anomaly events in, incident events out.

A physical fault trips several channels at once, and the lens sees it too; the test engineer wants one
Atlas issue for it, filed at its first anomaly and growing as more channels join. The rules:

- Every anomaly has a grouping key: the bench (`group_by = "bench"`, the default), its source
  (`"source"`), or its channel group (`"channels"`: `channel_groups` lists channels that fail together;
  any other channel is a group of its own). Lens anomalies (no channel) and whole-source dropouts
  (channel `*`) are about every channel of their source, so under `"channels"` they join the most
  recently active incident of their source, and an incident they opened alone is joined by the next
  anomaly of that source, whatever its group.
- An anomaly that opens joins an incident of its key when their spans overlap (the incident has a
  member that still holds) or when it started within `join_window` of the incident's last activity
  (the end of its last member: its first clear sample, also while the tracker still waits out its
  `clear_after`). Otherwise it opens a new incident, of which it is the lead.
- An incident closes when every member has ended and `join_window` has passed since the last end, plus
  the wait for anomalies that could still join it but are reported late. The lens's: measured
  (`lateness`: its verdict comes a window's span and a round trip after the window's first sample,
  which is the anomaly's start). A rule's: a rule with `hold` reports `hold` after the start, a stuck or
  dropout rule its `stuck_for` or `dropout_after` after it, so it can only report late a condition
  that is already in progress. The detector lists those (`pending_reports`: each one's key, start and
  rule's delay), and the incident waits only while one of them could still join it (its start within
  the join window, its key among those `_candidates` would offer the incident to), each at most its
  rule's delay past the window (its report comes at the first sample at or after start + delay).
  Nothing in progress, no wait: a bench with a 5-minute stuck rule does not keep every incident open
  5 minutes. So the quiet period is the time in which an anomaly starting within the window can still
  be reported, and one reported late joins the incident a fast rule saw (one issue per physical event).
  A member reported later than that finds the incident closed and opens its own. The incident's end
  stays its members' last end; only its close waits, never longer than `close_margin` (the window plus
  the larger of the lens's lateness and the rules' longest configured delay, `rule_delay`), which the
  evidence planner sizes its parts by.
- Members that join are reported in batches: the first join starts a batch, which is emitted as one
  `IncidentGrew` `update_after` seconds later (or folded into `IncidentClosed`).

Times are the anomalies' own (`*_mono`, on their source's timeline: the device's clock where there is
one). `tick(now_of)` takes each source's "now" from the caller, so the quiet period runs on the same
clock as the anomalies, whatever the replay speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence

from edge_agent.config import EdgeAgentConfig, IncidentsSection, RuleSection
from edge_agent.detect.anomaly import (
    Anomaly,
    AnomalyClosed,
    AnomalyEvent,
    AnomalyOpened,
    AnomalyUpdated,
    PendingReport,
)
from edge_agent.detect.rules import any_counts_samples, longest_report_delay
from edge_agent.detect.tracker import uuid4_str
from edge_agent.incidents.live import LiveIncident, end_of
from edge_agent.incidents.model import (
    SEVERITY_RANK,
    Incident,
    IncidentClosed,
    IncidentCloseReason,
    IncidentEvent,
    IncidentGrew,
    IncidentOpened,
    highest_severity,
)

WHOLE_SOURCE_CHANNELS = frozenset({"", "*"})  # lens anomalies, whole-source dropouts
WILDCARD_GROUP_SUFFIX = "|*"


class IncidentGrouper:
    def __init__(
        self,
        *,
        group_by: str = "bench",
        channel_groups: Sequence[Sequence[str]] = (),
        join_window: float = 10.0,
        update_after: float = 5.0,
        new_id: Callable[[], str] = uuid4_str,
        clearing_since: Callable[[str], float | None] = lambda anomaly_id: None,
        lateness: Callable[[], Mapping[str, float]] = dict,
        rule_delay: float = 0.0,
        pending_reports: Callable[[], Sequence[PendingReport]] | None = None,
        sample_wait: float = 0.0,
    ) -> None:
        """`clearing_since(anomaly_id)`: when an open anomaly stopped holding (the tracker's
        `clearing_since`), None while it holds. Without it an open anomaly counts as holding until
        its close, so a fault that starts during another's `clear_after` would join it.
        `lateness()`: source -> how long after its start an anomaly of that source can be reported, on
        its timeline (the detector's `report_lateness`, measured); a source not in it reports at once.
        `rule_delay`: how long after its start any rule can report its anomaly, from the configuration
        (`edge_agent.detect.rules.longest_report_delay`): the most a rule's late report is waited for.
        `pending_reports()`: the rules' conditions in progress (the detector's `pending_reports`), asked
        at tick time by an incident whose window has passed; the incident waits only for those that could
        join it. Without it every incident waits `rule_delay`, as if every rule had one in progress. A
        rule's lateness is not measured like the lens's: a rule reports only on a fault, so nothing
        would be measured before the first one, which is the one that must join.
        `sample_wait`: how much longer than its configured delay a rule still counting its `hold_samples`
        is waited for (`incidents.hold_samples_wait`; 0 when no rule counts samples): those samples come
        at the device's interval, which the configuration does not know; the wait ends when the streak
        does (it opened, and joined, or broke)."""
        if group_by not in ("bench", "source", "channels"):
            raise ValueError(f"group_by must be bench, source or channels, not {group_by!r}")
        for name, value in (
            ("join_window", join_window), ("update_after", update_after), ("rule_delay", rule_delay),
            ("sample_wait", sample_wait),
        ):  # fmt: skip
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        self.group_by = group_by
        self.join_window = join_window
        self.update_after = update_after
        self.new_id = new_id
        self.clearing_since = clearing_since
        self.lateness = lateness
        self.rule_delay = rule_delay
        self.pending_reports = pending_reports
        self.sample_wait = sample_wait
        self._group_of_channel = {
            channel: f"g{index}" for index, group in enumerate(channel_groups) for channel in group
        }
        self._live: dict[str, LiveIncident] = {}  # incident id -> incident, in the order they opened
        self._incident_of: dict[str, str] = {}  # anomaly id -> incident id, for members of live incidents

    @classmethod
    def from_section(
        cls,
        section: IncidentsSection,
        rules: Sequence[RuleSection] = (),
        new_id: Callable[[], str] = uuid4_str,
        clearing_since: Callable[[str], float | None] = lambda anomaly_id: None,
        lateness: Callable[[], Mapping[str, float]] = dict,
        pending_reports: Callable[[], Sequence[PendingReport]] | None = None,
    ) -> IncidentGrouper:
        """The grouper of `section`, waiting for `rules`' late reports: their longest configured delay,
        and `hold_samples_wait` if one of them counts samples."""
        return cls(
            group_by=section.group_by,
            channel_groups=section.channel_groups,
            join_window=section.join_window,
            update_after=section.update_after,
            new_id=new_id,
            clearing_since=clearing_since,
            lateness=lateness,
            rule_delay=longest_report_delay(rules),
            pending_reports=pending_reports,
            sample_wait=section.hold_samples_wait if any_counts_samples(rules) else 0.0,
        )

    @classmethod
    def from_config(
        cls,
        config: EdgeAgentConfig,
        new_id: Callable[[], str] = uuid4_str,
        clearing_since: Callable[[str], float | None] = lambda anomaly_id: None,
        lateness: Callable[[], Mapping[str, float]] = dict,
        pending_reports: Callable[[], Sequence[PendingReport]] | None = None,
    ) -> IncidentGrouper:
        """The grouper of `config`: its [incidents], waiting for its rules' late reports."""
        return cls.from_section(
            config.incidents, config.rules, new_id, clearing_since, lateness, pending_reports
        )

    # -- grouping keys ------------------------------------------------------------------------------

    def group_of(self, anomaly: Anomaly) -> str:
        return self._group_of(anomaly.source, anomaly.channel)

    def _group_of(self, source: str, channel: str) -> str:
        if self.group_by == "bench":
            return "bench"
        if self.group_by == "source":
            return source
        if channel in WHOLE_SOURCE_CHANNELS:
            return source + WILDCARD_GROUP_SUFFIX
        group = self._group_of_channel.get(channel, f"c:{channel}")
        return f"{source}|{group}"

    def _candidates(self, anomaly: Anomaly, group: str) -> list[LiveIncident]:
        return [live for live in self._live.values() if self._offered(live, anomaly.source, group)]

    def _offered(self, live: LiveIncident, source: str, group: str) -> bool:
        """Whether an anomaly of `source` and `group` may join `live` (if it started in time)."""
        if self.group_by != "channels":
            return live.group == group
        if group.endswith(WILDCARD_GROUP_SUFFIX):  # about the whole source: any incident of it
            return source in live.sources()
        return live.group in (group, source + WILDCARD_GROUP_SUFFIX)

    # -- inputs -------------------------------------------------------------------------------------

    def on_events(self, events: Sequence[AnomalyEvent]) -> list[IncidentEvent]:
        """The detector's events of one moment (one frame, one tick). Closes of members already known
        are taken first: the tracker has already closed them when it reports the batch, so an anomaly
        that opens in the same batch must see them ended, not holding."""
        out: list[IncidentEvent] = []
        early: set[int] = set()
        if len(events) > 1:
            early = {
                index
                for index, event in enumerate(events)
                if isinstance(event, AnomalyClosed) and event.anomaly.id in self._incident_of
            }
            for index in sorted(early):
                self._on_events_one(events[index], out)
        for index, event in enumerate(events):
            if index not in early:
                self._on_events_one(event, out)
        return out

    def _on_events_one(self, event: AnomalyEvent, out: list[IncidentEvent]) -> None:
        if isinstance(event, AnomalyOpened):
            self._on_open(event.anomaly, out)
        elif isinstance(event, AnomalyUpdated):
            self._update(event.anomaly)
        elif isinstance(event, AnomalyClosed):
            live = self._update(event.anomaly)
            if live is not None:
                live.open_ids.discard(event.anomaly.id)
                end_mono, end_wall = end_of(event.anomaly)
                if end_mono > live.last_end_mono:
                    live.last_end_mono, live.last_end_wall = end_mono, end_wall

    def _update(self, anomaly: Anomaly) -> LiveIncident | None:
        incident_id = self._incident_of.get(anomaly.id)
        live = self._live.get(incident_id) if incident_id is not None else None
        if live is not None:
            live.members[anomaly.id] = anomaly
        return live

    def _on_open(self, anomaly: Anomaly, out: list[IncidentEvent]) -> None:
        if anomaly.id in self._incident_of:
            return
        # An incident whose quiet period is over by this anomaly's start is closed first: it must not
        # take in an anomaly that came after it ended, however late the tick that would close it runs.
        # Against its longest quiet period (`_margin`): which rule conditions were in progress since is
        # not known here. One whose wait ended sooner is closed by the next tick, and this anomaly, which
        # started past its join window, could not join it anyway.
        lateness = self.lateness()
        for live in list(self._live.values()):
            quiet_until = live.last_end_mono + self._margin(live.sources(), lateness)
            if not live.open_ids and anomaly.started_mono > quiet_until:
                out.append(self._close(live, quiet_until, anomaly.opened_wall, "quiet"))
        group = self.group_of(anomaly)
        window = self.join_window
        clearing = self.clearing_since
        joinable = [
            live
            for live in self._candidates(anomaly, group)
            if anomaly.started_mono <= live.span_end(clearing) + window
        ]
        if not joinable:
            live = LiveIncident(
                id=self.new_id(),
                group=group,
                members={anomaly.id: anomaly},
                started_mono=anomaly.started_mono,
                started_wall=anomaly.started_wall,
                opened_mono=anomaly.opened_mono,
                opened_wall=anomaly.opened_wall,
                open_ids={anomaly.id},
                reported_rank=SEVERITY_RANK[anomaly.severity],
            )
            self._live[live.id] = live
            self._incident_of[anomaly.id] = live.id
            out.append(IncidentOpened(live.snapshot()))
            return
        live = max(joinable, key=lambda candidate: candidate.activity(clearing))
        live.members[anomaly.id] = anomaly
        live.open_ids.add(anomaly.id)
        self._incident_of[anomaly.id] = live.id
        # The earliest start on each clock on its own: a member on another timeline (the lens's, another
        # source's device clock) can be earlier on that clock and later on the wall clock, and the wall
        # start is the one people read (an issue's "started", its timeline's t = 0).
        live.started_mono = min(live.started_mono, anomaly.started_mono)
        live.started_wall = min(live.started_wall, anomaly.started_wall)
        if live.group.endswith(WILDCARD_GROUP_SUFFIX) and not group.endswith(WILDCARD_GROUP_SUFFIX):
            live.group = group  # a lens-only incident takes the group of the first channel that joins it
        if not live.pending:
            live.pending_since = anomaly.opened_mono
        live.pending.append(anomaly.id)

    def tick(self, now_of: Callable[[str], float], now_wall: float) -> list[IncidentEvent]:
        """Report due batches of joins and close incidents whose quiet period is over. `now_of(source)`
        is that source's "now" on its own timeline."""
        out: list[IncidentEvent] = []
        lateness = self.lateness()
        reports: Sequence[PendingReport] | None = None  # asked once, by the first incident that needs it
        for live in list(self._live.values()):
            sources = live.sources()
            now = max((now_of(source) for source in sources), default=-math.inf)
            if not live.open_ids and now >= live.last_end_mono + self._lens_margin(sources, lateness):
                if reports is None:
                    reports = () if self.pending_reports is None else self.pending_reports()
                if now >= self._rule_wait(live, reports):
                    out.append(self._close(live, now, now_wall, "quiet"))
                    continue
            if live.pending and now >= live.pending_since + self.update_after:
                joined, raised = self._take_pending(live)
                out.append(IncidentGrew(live.snapshot(), joined, raised))
        return out

    def close_all(self, now_mono: float, now_wall: float) -> list[IncidentEvent]:
        """Shutdown: close every incident now (call after the detector closed its anomalies)."""
        return [self._close(live, now_mono, now_wall, "shutdown") for live in list(self._live.values())]

    # -- reading ------------------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        return [live.snapshot() for live in self._live.values()]

    def incident_of(self, anomaly_id: str) -> str | None:
        return self._incident_of.get(anomaly_id)

    def __len__(self) -> int:
        return len(self._live)

    # -- internals ----------------------------------------------------------------------------------

    def close_margin(self, sources: Collection[str] = ()) -> float:
        """How long after its last member's end an incident of `sources` closes at the latest, as things
        stand: `join_window` plus the longest wait for a member reported late (the lens's lateness grows
        and shrinks as it is measured; a rule's is its configured delay, waited for only while one of its
        conditions is in progress, `_rule_wait`). The evidence planner sizes its parts by it
        (edge_agent/evidence/planner.py), `end_horizon` the backtest's tail."""
        return self._margin(sources, self.lateness())

    def _margin(self, sources: Collection[str], lateness: Mapping[str, float]) -> float:
        """The longest the incident can stay open after its last end: `join_window` plus the rules'
        configured delay and wait for samples, or the lens's lateness (`_lens_margin`), whichever is
        larger."""
        rules = self.join_window + self.rule_delay + self.sample_wait
        return max(rules, self._lens_margin(sources, lateness))

    def _lens_margin(self, sources: Collection[str], lateness: Mapping[str, float]) -> float:
        """`join_window` plus the measured lateness of every source whose anomalies could join the
        incident (any source of the bench; else its own, as `_candidates` only offers an incident to
        anomalies of its source)."""
        late: Collection[float] = (
            lateness.values()
            if self.group_by == "bench"
            else [lateness.get(source, 0.0) for source in sources]
        )
        return self.join_window + max(late, default=0.0)

    def _rule_wait(self, live: LiveIncident, reports: Sequence[PendingReport]) -> float:
        """Until when an incident whose members have all ended waits for a rule's late report: while a
        condition in progress could still join it (it started within the window, and its key is one
        `_candidates` would offer the incident to), up to that rule's delay past the window. The report
        comes at the first sample at or after start + delay, so a condition that started before the
        window's end has that much more; one still counting its `hold_samples` up to `sample_wait` more
        (never past `close_margin`: the wait is capped at `rule_delay + sample_wait`). -inf when nothing
        can join; without `pending_reports`, the longest wait."""
        window_end = live.last_end_mono + self.join_window  # the latest start that joins it
        longest = self.rule_delay + self.sample_wait
        if self.pending_reports is None:
            return window_end + longest
        wait = -math.inf
        for report in reports:
            report_wait = report.delay + self.sample_wait if report.counting_samples else report.delay
            if report.started_mono <= window_end and report_wait > wait:
                source, channel = report.key.source, report.key.channel
                if self._offered(live, source, self._group_of(source, channel)):
                    wait = report_wait
        return window_end + min(wait, longest)

    def _take_pending(self, live: LiveIncident) -> tuple[tuple[Anomaly, ...], bool]:
        joined = tuple(live.members[anomaly_id] for anomaly_id in live.pending)
        rank = SEVERITY_RANK[highest_severity(tuple(live.members.values()))]
        raised = rank > live.reported_rank
        live.reported_rank = max(rank, live.reported_rank)
        live.pending = []
        live.pending_since = math.inf
        return joined, raised

    def _close(
        self, live: LiveIncident, now_mono: float, now_wall: float, reason: IncidentCloseReason
    ) -> IncidentClosed:
        joined, raised = self._take_pending(live)
        del self._live[live.id]
        for anomaly_id in live.members:
            self._incident_of.pop(anomaly_id, None)
        closed_mono = max(now_mono, live.last_end_mono) if live.last_end_mono > -math.inf else now_mono
        return IncidentClosed(live.snapshot(closed_mono, now_wall, reason), joined, raised)
