"""Sans-I/O evidence planner: given anomaly open/close times, says when each evidence file is due and
which span of frames it covers. The caller owns the clock (`mono` seconds) and the ring.

An anomaly's evidence is the frames from `pre` seconds before its start to `post` seconds after its
end. It is due at end + `post` (the post frames must have arrived). A long-running anomaly does not
wait for its end: every `part_span` seconds of it a part is written (due at the part's end), and the
part that contains the end is the final one. Part 1 starts `pre` before the anomaly; each later part
starts where the previous one stopped, so the parts tile the evidence without a gap (a frame whose
`mono` equals a part boundary exactly is in both parts: the ring's slice is inclusive at both ends).

`part_span` is `max_duration`, shortened when the ring could not hold a whole part: part 1 reaches back
`pre` before its start and the final part `post` past its end, and the frames must still be in the
ring when the part is written, so `part_span <= ring_seconds - pre - post - SCHEDULING_SLACK`.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config import EvidenceSection

# How late after its due time a part may be written (the adapter's poll period and a busy loop) and
# still find its oldest frames in the ring.
SCHEDULING_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class EvidenceWindow:
    """One evidence file to write: the frames of `source` with start <= mono <= end."""

    anomaly_id: str
    source: str
    part: int  # 1, 2, ...
    start: float
    end: float
    due: float
    final: bool


@dataclass(slots=True)
class _Tracked:
    source: str
    started: float  # the anomaly's start
    part: int  # the next part to emit
    part_start: float  # the anomaly time the next part covers from
    slice_start: float  # where the next part's frames begin (pre for part 1)
    ended: float | None = None


class EvidencePlanner:
    def __init__(
        self, pre: float, post: float, max_duration: float, ring_seconds: float | None = None
    ) -> None:
        if pre < 0 or post < 0 or max_duration <= 0:
            raise ValueError("evidence needs pre >= 0, post >= 0 and max_duration > 0")
        span = max_duration
        if ring_seconds is not None:
            room = ring_seconds - pre - post - SCHEDULING_SLACK
            if room <= 0:
                raise ValueError(
                    f"evidence.ring_seconds ({ring_seconds:g}) must exceed pre + post"
                    f" + {SCHEDULING_SLACK:g} s ({pre + post + SCHEDULING_SLACK:g})"
                )
            span = min(span, room)
        self.pre = pre
        self.post = post
        self.part_span = span
        self._tracked: dict[str, _Tracked] = {}

    @classmethod
    def from_config(cls, section: EvidenceSection) -> EvidencePlanner:
        return cls(section.pre, section.post, section.max_duration, section.ring_seconds)

    def open(self, anomaly_id: str, source: str, started: float) -> None:
        """An anomaly began at `started` (its first anomalous sample, not when it was confirmed)."""
        if anomaly_id in self._tracked:
            return
        self._tracked[anomaly_id] = _Tracked(
            source=source, started=started, part=1, part_start=started, slice_start=started - self.pre
        )

    def close(self, anomaly_id: str, ended: float) -> None:
        """The anomaly stopped holding at `ended`. Unknown ids are ignored (already flushed)."""
        tracked = self._tracked.get(anomaly_id)
        if tracked is not None and tracked.ended is None:
            # A part already written covers up to part_start: the end cannot be before it.
            tracked.ended = max(ended, tracked.part_start)

    def due(self, now: float) -> list[EvidenceWindow]:
        """Every window due at `now`, oldest first; the planner forgets anomalies whose final part
        it returns."""
        out: list[EvidenceWindow] = []
        for anomaly_id in list(self._tracked):
            tracked = self._tracked[anomaly_id]
            while True:
                window = self._next_window(anomaly_id, tracked)
                if window.due > now:
                    break
                out.append(window)
                if window.final:
                    del self._tracked[anomaly_id]
                    break
                tracked.part += 1
                tracked.part_start = window.end
                tracked.slice_start = window.end
        out.sort(key=lambda w: (w.due, w.anomaly_id, w.part))
        return out

    def next_due(self) -> float | None:
        """When the next window falls due (for the adapter's sleep), or None if nothing is tracked."""
        dues = [self._next_window(aid, t).due for aid, t in self._tracked.items()]
        return min(dues) if dues else None

    def flush(self, now: float) -> list[EvidenceWindow]:
        """Shutdown: a final window for every tracked anomaly with what the ring holds up to `now`."""
        out = [
            EvidenceWindow(
                anomaly_id=aid,
                source=t.source,
                part=t.part,
                start=t.slice_start,
                end=min(now, t.ended + self.post) if t.ended is not None else now,
                due=now,
                final=True,
            )
            for aid, t in self._tracked.items()
        ]
        self._tracked.clear()
        return out

    def __len__(self) -> int:
        return len(self._tracked)

    def _next_window(self, anomaly_id: str, tracked: _Tracked) -> EvidenceWindow:
        boundary = tracked.part_start + self.part_span
        if tracked.ended is not None and tracked.ended <= boundary:
            end = tracked.ended + self.post
            return EvidenceWindow(
                anomaly_id, tracked.source, tracked.part, tracked.slice_start, end, end, True
            )
        return EvidenceWindow(
            anomaly_id, tracked.source, tracked.part, tracked.slice_start, boundary, boundary, False
        )
