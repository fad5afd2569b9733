"""Sans-I/O evidence planner: given incident open/close times, says when each evidence file is due and
which span of frames (of which sources) it covers. The caller owns the clocks and the rings.

An incident's evidence is the frames of every source involved from `pre` seconds before its start to
`post` seconds after its end. It is due at end + `post` (the post frames must have arrived). A long
incident does not wait for its end: every `part_span` seconds of it a part is written (due at the
part's end), and the part that contains the end is the final one. Part 1 starts `pre` before the
incident; each later part starts where the previous one stopped, so the parts tile the evidence without
a gap (a frame whose time equals a part boundary exactly is in both parts: the ring's slice is
inclusive at both ends).

Times are on the incident's lead source's timeline; `due(now_of)` asks the caller for that source's
"now" (`now_of(source)`), so a device clock or a fast replay moves the evidence with the data.

`part_span` is `max_duration`, shortened when the ring could not hold a whole part: part 1 reaches back
`pre` before its start, the final part `post` past its end, the incident is only known to be over
`close_delay` after its end (the incidents' quiet period), and the frames must still be in the ring
when the part is written: `part_span <= ring_seconds - pre - max(post, close_delay) - SCHEDULING_SLACK`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.config import EvidenceSection

# How late after its due time a part may be written (the adapter's poll period and a busy loop) and
# still find its oldest frames in the ring.
SCHEDULING_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class EvidenceWindow:
    """One evidence file to write: the frames of `sources` with start <= mono <= end."""

    incident_id: str
    sources: tuple[str, ...]
    part: int  # 1, 2, ...
    start: float
    end: float
    due: float
    final: bool


@dataclass(slots=True)
class _Tracked:
    sources: tuple[str, ...]  # the lead's source first: its timeline is the one `due` reads
    started: float  # the incident's start
    part: int  # the next part to emit
    part_start: float  # the anomaly time the next part covers from
    slice_start: float  # where the next part's frames begin (pre for part 1)
    ended: float | None = None


class EvidencePlanner:
    def __init__(
        self,
        pre: float,
        post: float,
        max_duration: float,
        ring_seconds: float | None = None,
        close_delay: float = 0.0,
    ) -> None:
        if pre < 0 or post < 0 or max_duration <= 0 or close_delay < 0:
            raise ValueError("evidence needs pre >= 0, post >= 0, close_delay >= 0 and max_duration > 0")
        span = max_duration
        if ring_seconds is not None:
            after = max(post, close_delay)
            room = ring_seconds - pre - after - SCHEDULING_SLACK
            if room <= 0:
                raise ValueError(
                    f"evidence.ring_seconds ({ring_seconds:g}) must exceed pre + max(post,"
                    f" incidents.join_window) + {SCHEDULING_SLACK:g} s ({pre + after + SCHEDULING_SLACK:g})"
                )
            span = min(span, room)
        self.pre = pre
        self.post = post
        self.part_span = span
        self._tracked: dict[str, _Tracked] = {}

    @classmethod
    def from_config(cls, section: EvidenceSection, close_delay: float = 0.0) -> EvidencePlanner:
        return cls(section.pre, section.post, section.max_duration, section.ring_seconds, close_delay)

    def open(self, incident_id: str, sources: tuple[str, ...], started: float) -> None:
        """An incident began at `started` (its first anomalous sample, not when it was confirmed)."""
        if incident_id in self._tracked:
            return
        self._tracked[incident_id] = _Tracked(
            sources=sources, started=started, part=1, part_start=started, slice_start=started - self.pre
        )

    def add_sources(self, incident_id: str, sources: tuple[str, ...]) -> None:
        """Members on more sources joined: their frames belong in the evidence from the next part on."""
        tracked = self._tracked.get(incident_id)
        if tracked is not None:
            tracked.sources = tuple(dict.fromkeys((*tracked.sources, *sources)))

    def close(self, incident_id: str, ended: float) -> None:
        """The incident's last member stopped holding at `ended`. Unknown ids are ignored (flushed)."""
        tracked = self._tracked.get(incident_id)
        if tracked is not None and tracked.ended is None:
            # A part already written covers up to part_start: the end cannot be before it.
            tracked.ended = max(ended, tracked.part_start)

    def due(self, now_of: Callable[[str], float]) -> list[EvidenceWindow]:
        """Every window due by now (`now_of(lead source)` per incident), oldest first; the planner
        forgets incidents whose final part it returns."""
        out: list[EvidenceWindow] = []
        for incident_id in list(self._tracked):
            tracked = self._tracked[incident_id]
            now = now_of(tracked.sources[0]) if tracked.sources else -float("inf")
            while True:
                window = self._next_window(incident_id, tracked)
                if window.due > now:
                    break
                out.append(window)
                if window.final:
                    del self._tracked[incident_id]
                    break
                tracked.part += 1
                tracked.part_start = window.end
                tracked.slice_start = window.end
        out.sort(key=lambda w: (w.due, w.incident_id, w.part))
        return out

    def next_due(self) -> float | None:
        """When the next window falls due (for the adapter's sleep), or None if nothing is tracked."""
        dues = [self._next_window(iid, t).due for iid, t in self._tracked.items()]
        return min(dues) if dues else None

    def flush(self, now_of: Callable[[str], float]) -> list[EvidenceWindow]:
        """Shutdown: a final window for every tracked incident with what the ring holds up to now."""
        out = []
        for iid, t in self._tracked.items():
            now = now_of(t.sources[0]) if t.sources else t.slice_start
            end = min(now, t.ended + self.post) if t.ended is not None else now
            out.append(
                EvidenceWindow(iid, t.sources, t.part, t.slice_start, max(end, t.slice_start), now, True)
            )
        self._tracked.clear()
        return out

    def part_of(self, incident_id: str) -> int | None:
        """The part the incident's next window will be (None: not tracked)."""
        tracked = self._tracked.get(incident_id)
        return tracked.part if tracked is not None else None

    def __len__(self) -> int:
        return len(self._tracked)

    def _next_window(self, incident_id: str, tracked: _Tracked) -> EvidenceWindow:
        boundary = tracked.part_start + self.part_span
        if tracked.ended is not None and tracked.ended <= boundary:
            end = tracked.ended + self.post
            return EvidenceWindow(
                incident_id, tracked.sources, tracked.part, tracked.slice_start, end, end, True
            )
        return EvidenceWindow(
            incident_id, tracked.sources, tracked.part, tracked.slice_start, boundary, boundary, False
        )
