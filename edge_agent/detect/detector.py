"""The detection facade (sans-I/O): frames, link events, lens inferences and ticks in; anomaly events out.

Wires the configured rules (`[[rules]]`, compiled by rules.py) and the lens label mapping to one
`AnomalyTracker`. Rule instances are made per source lazily, on the first frame (or link event) of a
source, so a rule with `source = ""` watches every source separately: a channel of one port never
clears or feeds the same channel of another.

Hot path (`on_frame`): per configured channel one dict lookup, the checks, and the tracker only when a
check is active or its key is live (streak running or anomaly open). Returns a shared empty tuple when
nothing happened, so a quiet frame allocates nothing.

Values that are not ordinary numbers have one meaning for every rule:
- NaN is a missing sample: no check sees it, and it does not count as a frame for a dropout rule of
  that channel (a channel that only sends NaN is in dropout).
- ±inf is an off-scale reading (a meter's "OL"): the checks see the largest finite float with that
  sign, so it is past any limit, a rate into or out of it is the largest finite rate, a stuck
  channel pinned off-scale is stuck, and it counts as a frame for dropout.
- Finite extremes (1e308, subnormals) are ordinary numbers; whatever a check derives from them
  (a difference, a rate, a distance past a threshold) is clamped to a finite float
  (`edge_agent.detect.checks.clamp`), so no anomaly ever holds NaN or ±inf.
- Lens scores that are NaN or ±inf are no score (`LensLabelCheck.score_of`): a `min_score` is then not
  met, the anomaly's value is 1.0, and such scores are left out of the anomaly's `scores`. A lens
  window time that is not finite, in the future or over a day old is not believed (`_at`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from edge_agent.config import LensSection, RuleSection
from edge_agent.detect.anomaly import (
    Anomaly,
    AnomalyClosed,
    AnomalyEvent,
    AnomalyKey,
    PendingReport,
    Severity,
)
from edge_agent.detect.baseline import RobustStats, load_baselines
from edge_agent.detect.baseline_check import BaselineCheck
from edge_agent.detect.batch import Emit, run_batch
from edge_agent.detect.checks import MAX_FLOAT, ValueCheck
from edge_agent.detect.dropout import ANY_CHANNEL, DropoutWatch
from edge_agent.detect.lens_labels import InferenceLike, LensLabelCheck
from edge_agent.detect.lens_lateness import LensLateness
from edge_agent.detect.rules import CompiledRule, LoadBaseline, compile_rule, report_delay
from edge_agent.detect.sample_walls import SampleWalls
from edge_agent.detect.tracker import AnomalySpec, AnomalyTracker, Debounce, Slot, uuid4_str
from edge_agent.frames import Frame, FrameBatch, LinkEvent, LinkState

NO_EVENTS: tuple[AnomalyEvent, ...] = ()
# A lens output's window time older than this is not believed (see `_at`).
MAX_WINDOW_AGE = 86_400.0
LENS_RULE_ID = "lens"
SourceNow = Callable[[str, float], float]


def host_timeline(source: str, host_mono: float) -> float:
    """The default mapping: every source's timeline is the host's monotonic clock."""
    return host_mono


@dataclass(frozen=True, slots=True)
class LensAnomalyOptions:
    """How lens anomalies are debounced and graded (the [lens] table has no keys for these yet)."""

    severity: Severity = "high"
    # Lens outputs come about once a second: one anomalous window opens, two seconds of normal ones close.
    debounce: Debounce = field(default_factory=lambda: Debounce(hold=0.0, hold_samples=1, clear_after=2.0))

    @classmethod
    def from_section(cls, lens: LensSection) -> LensAnomalyOptions:
        return cls(
            severity=lens.anomaly_severity,
            debounce=Debounce(
                hold=0.0, hold_samples=lens.anomaly_hold_windows, clear_after=lens.anomaly_clear_after
            ),
        )


@dataclass(slots=True)
class SourcePlan:
    """Everything one source's frames touch, flattened for the per-frame loop, in the order `on_frame`
    runs it: the any-frame dropout watches, then per channel (in rule order of first mention) its
    dropout watches and its checks with their tracker slots."""

    channels: list[tuple[str, list[tuple[ValueCheck, Slot]], list[DropoutWatch]]]
    any_frame: list[DropoutWatch]
    # The wall time of each sample (its read's, corrected by the timeline for a read that came late).
    walls: SampleWalls = field(default_factory=SampleWalls)


class Detector:
    def __init__(
        self,
        rules: Sequence[RuleSection],
        lens: LensSection | None = None,
        *,
        lens_options: LensAnomalyOptions | None = None,
        new_id: Callable[[], str] = uuid4_str,
        update_every: float | None = None,
        load_baseline: LoadBaseline = load_baselines,
        source_now: SourceNow = host_timeline,
        sources: Collection[str] | None = None,
    ) -> None:
        """Build every rule now, so a bad rule or baseline file fails at start-up (`RuleConfigError`),
        not at the first frame. `load_baseline` reads a baseline file (the only I/O, at construction).

        Frames and link events carry times on their source's timeline (`edge_agent.serial.clock`);
        `source_now(source, host_mono)` is that timeline's now, which every time-driven decision of a
        source (dropout gaps, anomalies closing when samples stop) is made on.
        `sources`: the only sources that will send frames (None: any). A dropout rule bound to another
        source is still checked but never watched, so it cannot report that source silent (`edge-agent
        backtest` replays one source of a bench configured with several)."""
        self.tracker = AnomalyTracker(new_id=new_id, update_every=update_every)
        self._source_now = source_now
        self._rules = [compile_rule(i, section, load_baseline) for i, section in enumerate(rules)]
        self._report_delay = {rule.rule_id: report_delay(rule.section) for rule in self._rules}
        self._plans: dict[str, SourcePlan] = {}
        self._known_sources: set[str] = set()
        # (rule index, source) -> watch; source "" stands in for an any-source rule until a source appears.
        self._watches: dict[tuple[int, str], DropoutWatch] = {}
        for rule in self._rules:
            bound = rule.section.source
            if rule.make_check is None and (sources is None or not bound or bound in sources):
                self._add_watch(rule, bound)
        self._lens: LensLabelCheck | None = None
        self._lens_spec: AnomalySpec | None = None
        self.lens_lateness = LensLateness()
        if lens is not None and lens.anomaly_labels:
            options = lens_options or LensAnomalyOptions.from_section(lens)
            self.lens_lateness = LensLateness(
                hold_windows=options.debounce.hold_samples,
                step_fraction=lens.step_size / max(lens.window_size - 1, 1),
            )
            self._lens = LensLabelCheck(lens.anomaly_labels, lens.min_score)
            self._lens_spec = AnomalySpec(
                kind="lens", description=self._lens.describe(), severity=options.severity,
                measure=LensLabelCheck.measure, debounce=options.debounce,
                lens_channels=tuple(lens.channels),
            )  # fmt: skip

    # -- construction -------------------------------------------------------------------------------

    def _add_watch(self, rule: CompiledRule, source: str) -> DropoutWatch:
        after = rule.section.dropout_after
        assert after is not None  # checked in compile_rule
        key = AnomalyKey(rule.rule_id, source, rule.section.channel)
        watch = DropoutWatch(after, self.tracker.slot(key, rule.spec))
        self._watches[(rule.index, source)] = watch
        return watch

    def _ensure_source(self, source: str, mono: float, wall: float) -> list[AnomalyEvent]:
        """First sight of `source`: any-source dropout rules get a watch of their own for it, and their
        stand-in watch (which covered "no source has sent anything yet") is cleared and retired."""
        if source in self._known_sources:
            return []
        self._known_sources.add(source)
        events: list[AnomalyEvent] = []
        for rule in self._rules:
            if rule.make_check is not None or rule.section.source not in ("", source):
                continue
            if (rule.index, source) not in self._watches:
                self._add_watch(rule, source)
            if not rule.section.source:
                stand_in = self._watches.pop((rule.index, ""), None)
                if stand_in is not None:
                    events.extend(stand_in.seen(mono, wall))
        return events

    def _plan_for(self, source: str) -> SourcePlan:
        by_channel: dict[str, tuple[list[tuple[ValueCheck, Slot]], list[DropoutWatch]]] = {}
        any_frame: list[DropoutWatch] = []
        for rule in self._rules:
            section = rule.section
            if section.source not in ("", source):
                continue
            if rule.make_check is None:
                watch = self._watches[(rule.index, source)]
                if section.channel == ANY_CHANNEL:
                    any_frame.append(watch)
                else:
                    by_channel.setdefault(section.channel, ([], []))[1].append(watch)
                continue
            slot = self.tracker.slot(AnomalyKey(rule.rule_id, source, section.channel), rule.spec)
            by_channel.setdefault(section.channel, ([], []))[0].append((rule.make_check(), slot))
        plan = SourcePlan([(ch, checks, watches) for ch, (checks, watches) in by_channel.items()], any_frame)
        self._plans[source] = plan
        return plan

    def source_plan(self, source: str, mono: float, wall: float) -> tuple[SourcePlan, list[AnomalyEvent]]:
        """`source`'s plan, made as its first frame at `mono`/`wall` would make it (with the events that
        retiring a stand-in dropout watch gives, as `on_frame` would return them). For a batch runner
        (`edge-agent backtest`) that evaluates the same checks on many samples at once and feeds their
        slots and watches itself; the objects are the ones `on_frame` and `tick` use."""
        plan = self._plans.get(source)
        if plan is not None:
            return plan, []
        events = self._ensure_source(source, mono, wall)
        return self._plan_for(source), events

    # -- inputs -------------------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> Sequence[AnomalyEvent]:
        plan = self._plans.get(frame.source)
        events: list[AnomalyEvent] | None = None
        mono = frame.mono
        if plan is None:
            plan, first = self.source_plan(frame.source, mono, frame.wall)
            events = first or None
        wall = plan.walls.wall_of(mono, frame.wall)
        for watch in plan.any_frame:
            found = watch.seen(mono, wall)
            if found:
                events = events or []
                events.extend(found)
        values = frame.values
        for channel, checks, watches in plan.channels:
            value = values.get(channel)
            if value is None:
                continue
            # `value - value` is 0.0 exactly for finite floats and NaN for NaN and ±inf.
            if value - value != 0.0:
                if value != value:
                    continue  # NaN: a missing sample
                value = MAX_FLOAT if value > 0.0 else -MAX_FLOAT  # ±inf: off-scale
            for watch in watches:
                found = watch.seen(mono, wall)
                if found:
                    events = events or []
                    events.extend(found)
            for check, slot in checks:
                verdict = check.observe(value, mono, wall)
                if verdict is None or not (verdict or slot.live):
                    continue
                event = slot.observe(
                    verdict, check.value, check.excursion, check.threshold, mono, wall,
                    onset_mono=check.onset_mono, onset_wall=check.onset_wall,
                )  # fmt: skip
                if event is not None:
                    events = events or []
                    events.append(event)
        return events or NO_EVENTS

    def on_batch(self, batch: FrameBatch, emit: Emit) -> None:
        """The frames of `batch`, as `on_frame` of each in turn would take them; `emit` gets the events
        of each frame that has any, right after that frame (edge_agent/detect/batch.py)."""
        plan = self._plans.get(batch.source)
        if plan is not None and run_batch(plan, batch, emit):
            return
        for frame in batch.frames():
            events = self.on_frame(frame)
            if events:
                emit(events)

    def on_link(self, event: LinkEvent) -> list[AnomalyEvent]:
        """Serial link down opens the source's dropout anomalies at once; up restarts their gap clock."""
        events = self._ensure_source(event.source, event.mono, event.wall)
        for (_, source), watch in list(self._watches.items()):
            if source != event.source:
                continue
            if event.state is LinkState.DOWN:
                result = watch.on_link_down(event.mono, event.wall, event.reason)
            else:
                result = watch.on_link_up(event.mono, event.wall)
            if result is not None:
                events.append(result)
        return events

    def on_inference(self, inference: InferenceLike, now_mono: float, now_wall: float) -> list[AnomalyEvent]:
        """A lens output received at host time `now_*`. Its window's wall times are mapped onto the lens
        source's timeline by their age at receipt, so the anomaly's times line up with the frames it is
        about (exactly at 1x; a recording replayed faster than real time ages 1 s of its timeline per
        host second here, as the lens itself only sees about one window a second)."""
        check = self._lens
        spec = self._lens_spec
        if check is None or spec is None:
            return []
        source_now = self._source_now(inference.source, now_mono)
        end_mono, end_wall = _at(inference.window_end, source_now, now_wall)
        start_mono, start_wall = _at(inference.window_start, source_now, now_wall)
        self.lens_lateness.observe(inference.source, start_mono, end_mono, source_now)
        slot = self.tracker.slot(AnomalyKey(LENS_RULE_ID, inference.source, ""), spec)
        active = check.is_anomalous(inference)
        if not active and not slot.live:
            return []
        score = check.score_of(inference)
        value = 1.0 if score is None else score
        scores = inference.scores
        if not all(math.isfinite(x) for x in scores.values()):
            scores = {name: x for name, x in scores.items() if math.isfinite(x)}
        event = slot.observe(
            active, value, value, check.threshold, end_mono, end_wall,
            onset_mono=start_mono, onset_wall=start_wall, label=inference.label, scores=scores,
        )  # fmt: skip
        return [] if event is None else [event]

    def tick(self, now_mono: float, now_wall: float) -> list[AnomalyEvent]:
        """Host time `now_mono` passes: dropout gaps, anomalies clear for long enough, progress updates,
        each judged on its own source's now. Call it often (every 100-250 ms): it bounds how late a
        dropout is seen and a quiet anomaly closes."""
        now_of = self._now_of(now_mono)
        events: list[AnomalyEvent] = []
        for (_, source), watch in list(self._watches.items()):
            event = watch.check(now_of(source), now_wall)
            if event is not None:
                events.append(event)
        events.extend(self.tracker.tick(now_mono, now_wall, now_of))
        return events

    def close_all(self, now_mono: float, now_wall: float) -> list[AnomalyClosed]:
        """Shutdown: close every open anomaly now (reason "shutdown"), at its source's now."""
        return self.tracker.close_all(now_mono, now_wall, self._now_of(now_mono))

    def _now_of(self, host_mono: float) -> Callable[[str], float]:
        """Each source's now at one host instant (looked up once per source per tick)."""
        source_now = self._source_now
        cache: dict[str, float] = {}

        def now_of(source: str) -> float:
            now = cache.get(source)
            if now is None:
                now = cache[source] = source_now(source, host_mono)
            return now

        return now_of

    def open_anomalies(self) -> list[Anomaly]:
        return self.tracker.open_anomalies()

    def clearing_since(self, anomaly_id: str) -> float | None:
        return self.tracker.clearing_since(anomaly_id)

    def report_lateness(self) -> dict[str, float]:
        """source -> how long after its start a lens anomaly of that source can still be reported (on
        its timeline), measured on its verdicts (`LensLateness`). A rule's is not measured: see
        `pending_reports`."""
        return self.lens_lateness.by_source()

    def pending_reports(
        self, brewing_since: Callable[[ValueCheck], float | None] | None = None
    ) -> list[PendingReport]:
        """Every rule condition in progress that its rule has not reported: a streak waiting out its
        hold, a stuck check's unchanged run, a dropout watch's silence (not the lens's: its lateness is
        measured). The incident grouper waits for these, not for the rules' longest configured delay.
        Read from the state the checks, slots and watches hold anyway, when asked (by an incident waiting
        to close, at tick time): nothing is added to the per-frame path. `brewing_since(check)` stands
        in for `check.pending_since()` for a batch runner that keeps a check's state itself (backtest)."""
        delay = self._report_delay
        out: list[PendingReport] = []
        for plan in self._plans.values():
            for _, checks, _ in plan.channels:
                for check, slot in checks:
                    if slot.is_open:
                        continue
                    if slot.live:
                        since = slot.pending_since
                    else:
                        since = check.pending_since() if brewing_since is None else brewing_since(check)
                    if since is not None:
                        key = slot.key
                        out.append(PendingReport(key, since, delay[key.rule_id], slot.counting_samples))
        for watch in self._watches.values():
            since = watch.pending_since()
            if since is not None:
                key = watch.slot.key
                out.append(PendingReport(key, since, delay[key.rule_id]))
        return out

    def value_checks(self) -> list[tuple[str, str, ValueCheck]]:
        """(source, channel, check) of every value rule of every source seen so far: the live page
        draws the limits and the learned baseline bands from them."""
        return [
            (source, channel, check)
            for source, plan in self._plans.items()
            for channel, checks, _ in plan.channels
            for check, _slot in checks
        ]

    def learned_baselines(self) -> dict[str, dict[str, RobustStats]]:
        """source -> channel -> baseline, for every baseline rule that has one (to save to a file)."""
        out: dict[str, dict[str, RobustStats]] = {}
        for source, plan in self._plans.items():
            for channel, checks, _ in plan.channels:
                for check, _slot in checks:
                    if isinstance(check, BaselineCheck) and check.stats is not None:
                        out.setdefault(source, {})[channel] = check.stats
        return out


def _at(wall_time: float | None, now_mono: float, now_wall: float) -> tuple[float, float]:
    """(mono, wall) of a past wall-clock instant, by its age at `now`; `now` itself when the time is
    unknown, not finite, in the future, or older than `MAX_WINDOW_AGE` (no lens answers about a window
    that old: the time is garbage, and 1e308 or -1e308 would be no date at all)."""
    if wall_time is None or not math.isfinite(wall_time):
        return now_mono, now_wall
    age = now_wall - wall_time
    if not 0 < age <= MAX_WINDOW_AGE:
        return now_mono, now_wall
    return now_mono - age, wall_time
