"""The anomaly tracker (sans-I/O): turns per-sample conditions into debounced anomalies.

For each key (rule, source, channel) it runs a small state machine:

    idle --active--> streak --(>= hold_samples samples AND >= hold seconds)--> open
    streak --clear--> idle
    open --clear--> open, clearing --(clear for >= clear_after seconds, no active sample between)--> idle

Both debounce conditions must be met, and both default to "met at once" (hold=0, hold_samples=1), so a
rule configures "N samples" or "T seconds" (or both) by setting the one it wants. Hold counts from the
first sample of the streak; clear counts from the first clear sample, and is also checked by `tick()`
so that an anomaly closes even when its samples stop. Times are clamped to never run backwards per key,
so an out-of-order caller can shorten nothing.

The tracker is fed only what matters: callers check `Slot.live` and skip clear samples of idle keys,
which keeps the per-frame cost of quiet channels to one attribute read.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edge_agent.detect.anomaly import (
    Anomaly,
    AnomalyClosed,
    AnomalyEvent,
    AnomalyKey,
    AnomalyOpened,
    AnomalyUpdated,
    CloseReason,
    Severity,
    priority_for,
)

_NO_SCORES: Mapping[str, float] = {}


def uuid4_str() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Debounce:
    hold: float = 0.0  # seconds the condition must hold before opening
    hold_samples: int = 1  # consecutive active samples before opening
    clear_after: float = 0.0  # seconds of continuous clear before closing

    def __post_init__(self) -> None:
        for name in ("hold", "clear_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        if self.hold_samples < 1:
            raise ValueError(f"hold_samples must be >= 1, not {self.hold_samples!r}")


@dataclass(frozen=True, slots=True)
class AnomalySpec:
    """What the tracker copies into every anomaly of a key."""

    kind: str
    description: str
    severity: Severity
    measure: str
    debounce: Debounce = Debounce()
    lens_channels: tuple[str, ...] = ()  # the lens's spec: the channels it reads


class Slot:
    """The state machine of one key. Obtain with `AnomalyTracker.slot(key, spec)`."""

    __slots__ = (
        "_clear_mono",
        "_clear_wall",
        "_count",
        "_last_mono",
        "_next_update",
        "_open_id",
        "_opened_mono",
        "_opened_wall",
        "_peak_excursion",
        "_peak_label",
        "_peak_mono",
        "_peak_scores",
        "_peak_threshold",
        "_peak_value",
        "_peak_wall",
        "_start_mono",
        "_start_wall",
        "_streak_mono",
        "_tracker",
        "key",
        "live",
        "spec",
    )

    def __init__(self, tracker: AnomalyTracker, key: AnomalyKey, spec: AnomalySpec) -> None:
        self._tracker = tracker
        self.key = key
        self.spec = spec
        # True while a streak runs or an anomaly is open: only then does a clear sample change anything.
        self.live = False
        self._count = 0
        self._last_mono = -math.inf
        self._streak_mono = 0.0
        self._start_mono = 0.0
        self._start_wall = 0.0
        self._peak_value = 0.0
        self._peak_excursion = -math.inf
        self._peak_mono = 0.0
        self._peak_wall = 0.0
        self._peak_threshold = ""
        self._peak_label: str | None = None
        self._peak_scores: Mapping[str, float] = _NO_SCORES
        self._open_id: str | None = None
        self._opened_mono = 0.0
        self._opened_wall = 0.0
        self._clear_mono: float | None = None
        self._clear_wall = 0.0
        self._next_update = math.inf

    @property
    def is_open(self) -> bool:
        return self._open_id is not None

    @property
    def pending_since(self) -> float | None:
        """While a streak runs that has not opened yet (its `hold`, `hold_samples`): when its condition
        started, the `started_mono` its anomaly will have; None when idle or open."""
        return self._start_mono if self.live and self._open_id is None else None

    @property
    def counting_samples(self) -> bool:
        """While a streak runs that has fewer active samples in a row than its `hold_samples`."""
        return self.live and self._open_id is None and self._count < self.spec.debounce.hold_samples

    def observe(
        self,
        active: bool,
        value: float,
        excursion: float,
        threshold: str,
        mono: float,
        wall: float,
        *,
        force: bool = False,
        onset_mono: float | None = None,
        onset_wall: float | None = None,
        label: str | None = None,
        scores: Mapping[str, float] | None = None,
    ) -> AnomalyEvent | None:
        """One evaluation of the condition at `mono`/`wall`.

        `force` opens at once, skipping the debounce (a serial unplug is not a glitch). `onset_*`, when
        given, backdates `started_*` of a new streak (a dropout began at the last frame, not at the tick
        that noticed it). `label`/`scores` ride along for lens anomalies.
        """
        if mono < self._last_mono:
            mono = self._last_mono
        self._last_mono = mono
        if self._open_id is not None:
            if active:
                self._clear_mono = None
                self._count += 1
                if excursion > self._peak_excursion:
                    self._set_peak(value, excursion, threshold, mono, wall, label, scores)
                return None
            if self._clear_mono is None:
                self._clear_mono = mono
                self._clear_wall = wall
            if mono - self._clear_mono >= self.spec.debounce.clear_after:
                return self._close(mono, wall, "cleared")
            return None
        if not active:
            self._count = 0
            self.live = False
            return None
        if self._count == 0:
            self.live = True
            self._streak_mono = mono
            self._start_mono = mono if onset_mono is None else min(onset_mono, mono)
            self._start_wall = wall if onset_wall is None else onset_wall
            self._peak_excursion = -math.inf
        self._count += 1
        if excursion > self._peak_excursion:
            self._set_peak(value, excursion, threshold, mono, wall, label, scores)
        debounce = self.spec.debounce
        if force or (self._count >= debounce.hold_samples and mono - self._streak_mono >= debounce.hold):
            return self._open(mono, wall)
        return None

    def _set_peak(
        self,
        value: float,
        excursion: float,
        threshold: str,
        mono: float,
        wall: float,
        label: str | None,
        scores: Mapping[str, float] | None,
    ) -> None:
        self._peak_value = value
        self._peak_excursion = excursion
        self._peak_threshold = threshold
        self._peak_mono = mono
        self._peak_wall = wall
        self._peak_label = label
        self._peak_scores = _NO_SCORES if scores is None else scores

    def _open(self, mono: float, wall: float) -> AnomalyOpened:
        tracker = self._tracker
        self._open_id = tracker.new_id()
        self._opened_mono = mono
        self._opened_wall = wall
        self._clear_mono = None
        self._next_update = math.inf if tracker.update_every is None else mono + tracker.update_every
        tracker._open[self.key] = self
        tracker._open_by_id[self._open_id] = self
        return AnomalyOpened(self.snapshot())

    def _close(self, mono: float, wall: float, reason: CloseReason) -> AnomalyClosed:
        if self._clear_mono is None:  # shutdown while the condition still held: it ends now
            self._clear_mono = mono
            self._clear_wall = wall
        anomaly = self.snapshot(closed_mono=mono, closed_wall=wall, reason=reason)
        self._tracker._open.pop(self.key, None)
        self._tracker._open_by_id.pop(anomaly.id, None)
        self._open_id = None
        self._clear_mono = None
        self._count = 0
        self.live = False
        self._next_update = math.inf
        return AnomalyClosed(anomaly)

    def snapshot(
        self,
        closed_mono: float | None = None,
        closed_wall: float | None = None,
        reason: CloseReason | None = None,
    ) -> Anomaly:
        if self._open_id is None:
            raise RuntimeError(f"no open anomaly for {self.key}")
        spec = self.spec
        return Anomaly(
            id=self._open_id,
            key=self.key,
            kind=spec.kind,
            description=spec.description,
            severity=spec.severity,
            priority=priority_for(spec.severity),
            measure=spec.measure,
            threshold=self._peak_threshold,
            started_mono=self._start_mono,
            started_wall=self._start_wall,
            opened_mono=self._opened_mono,
            opened_wall=self._opened_wall,
            peak_value=self._peak_value,
            peak_excursion=self._peak_excursion,
            peak_mono=self._peak_mono,
            peak_wall=self._peak_wall,
            samples=self._count,
            ended_mono=self._clear_mono if closed_mono is not None else None,
            ended_wall=self._clear_wall if closed_mono is not None else None,
            closed_mono=closed_mono,
            closed_wall=closed_wall,
            close_reason=reason,
            label=self._peak_label,
            scores=dict(self._peak_scores),
            lens_channels=spec.lens_channels,
        )

    def _tick(self, now_mono: float, now_wall: float) -> AnomalyEvent | None:
        if now_mono < self._last_mono:
            return None
        clear = self._clear_mono
        if clear is not None and now_mono - clear >= self.spec.debounce.clear_after:
            self._last_mono = now_mono
            return self._close(now_mono, now_wall, "cleared")
        if now_mono >= self._next_update:
            self._next_update = now_mono + (self._tracker.update_every or math.inf)
            return AnomalyUpdated(self.snapshot())
        return None


class AnomalyTracker:
    """All keys' state machines, the set of open anomalies, id generation.

    `new_id` makes anomaly ids (uuid4 strings; injectable so tests can be deterministic).
    `update_every`: an anomaly open this long gets an `AnomalyUpdated` from `tick()`, and again every
    `update_every` seconds after (None: never) - the hook for a `max_duration` progress report.
    """

    def __init__(self, new_id: Callable[[], str] = uuid4_str, update_every: float | None = None) -> None:
        if update_every is not None and not (math.isfinite(update_every) and update_every > 0):
            raise ValueError(f"update_every must be > 0 seconds, not {update_every!r}")
        self.new_id = new_id
        self.update_every = update_every
        self._slots: dict[AnomalyKey, Slot] = {}
        self._open: dict[AnomalyKey, Slot] = {}
        self._open_by_id: dict[str, Slot] = {}

    def slot(self, key: AnomalyKey, spec: AnomalySpec) -> Slot:
        """The slot of `key`, created with `spec` on first use (later specs are ignored)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = Slot(self, key, spec)
        return slot

    def observe(
        self,
        key: AnomalyKey,
        spec: AnomalySpec,
        active: bool,
        value: float,
        mono: float,
        wall: float,
        *,
        excursion: float = 0.0,
        threshold: str = "",
    ) -> AnomalyEvent | None:
        """Convenience form of `slot(key, spec).observe(...)` for callers off the hot path."""
        return self.slot(key, spec).observe(active, value, excursion, threshold, mono, wall)

    def tick(
        self, now_mono: float, now_wall: float, now_of: Callable[[str], float] | None = None
    ) -> list[AnomalyEvent]:
        """Close anomalies clear for long enough, emit due progress updates. `now_of(source)`, when
        given, is the now of each key's source timeline (else `now_mono` is every source's now)."""
        events: list[AnomalyEvent] = []
        for slot in list(self._open.values()):
            now = now_mono if now_of is None else now_of(slot.key.source)
            event = slot._tick(now, now_wall)
            if event is not None:
                events.append(event)
        return events

    def close_all(
        self, now_mono: float, now_wall: float, now_of: Callable[[str], float] | None = None
    ) -> list[AnomalyClosed]:
        """Close every open anomaly (shutdown) and forget every running streak."""
        closed = []
        for slot in list(self._open.values()):
            now = now_mono if now_of is None else max(now_of(slot.key.source), slot._last_mono)
            closed.append(slot._close(now, now_wall, "shutdown"))
        for slot in self._slots.values():
            slot._count = 0
            slot.live = False
        return closed

    def open_anomalies(self) -> list[Anomaly]:
        return [slot.snapshot() for slot in self._open.values()]

    def is_open(self, key: AnomalyKey) -> bool:
        return key in self._open

    def clearing_since(self, anomaly_id: str) -> float | None:
        """When the open anomaly `anomaly_id` stopped holding (its first clear sample), while it waits
        out `clear_after` before it closes; None while it still holds (or is not open). Its span ends
        there unless it becomes active again: what the incident grouper needs to tell a fault that
        overlaps it from one that merely came before its close."""
        slot = self._open_by_id.get(anomaly_id)
        return slot._clear_mono if slot is not None else None
