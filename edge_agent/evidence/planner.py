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

A part spans `max_duration`, shortened when the ring could not hold a whole part: part 1 reaches back
`pre` before its start, the final part `post` past its end, the incident is only known to be over
`close_margin(sources)` after its end, and the frames must still be in the ring when the part is
written: `part_span <= ring_seconds - pre - max(post, close_margin) - SCHEDULING_SLACK`. The margin is
the incident grouper's own (`IncidentGrouper.close_margin`: the join window plus the wait for a late
lens verdict or rule report), asked again for each part, since the lens's lateness is measured and
moves: an incident that closes late still finds its last part's frames in the ring. The construction
checks the margin known before any frame (the join window and the rules' configured delays).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edge_agent.config import EvidenceSection

# How late after its due time a part may be written (the adapter's poll period and a busy loop) and
# still find its oldest frames in the ring.
SCHEDULING_SLACK = 2.0
# The shortest part when the measured close margin has outgrown what the ring can hold (a lens answering
# later than the ring reaches back): the parts stay this long rather than pile up, and the evidence of
# such an incident may start late (its JSON says from when).
MIN_PART_SPAN = 5.0
CloseMargin = Callable[[Sequence[str]], float]


def closes_at_end(sources: Sequence[str]) -> float:
    """No close margin: an incident is known to be over at its end."""
    return 0.0


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
        close_margin: CloseMargin = closes_at_end,
    ) -> None:
        """`close_margin(sources)`: how long after its end an incident of `sources` closes (the
        grouper's `close_margin`)."""
        if pre < 0 or post < 0 or max_duration <= 0:
            raise ValueError("evidence needs pre >= 0, post >= 0 and max_duration > 0")
        self.pre = pre
        self.post = post
        self.max_duration = max_duration
        self.ring_seconds = ring_seconds
        self.close_margin = close_margin
        # The shortest part (see MIN_PART_SPAN), never longer than what the ring holds at the start.
        self._min_span = min(MIN_PART_SPAN, max_duration)
        if ring_seconds is not None:
            after = max(post, close_margin(()))
            self._min_span = min(self._min_span, self._room(after))
            if self._min_span <= 0:
                raise ValueError(
                    f"evidence.ring_seconds ({ring_seconds:g}) must exceed pre + max(post,"
                    f" incidents.join_window + the longest rule hold/stuck_for/dropout_after"
                    f" + incidents.hold_samples_wait if a rule has hold_samples > 1)"
                    f" + {SCHEDULING_SLACK:g} s ({pre + after + SCHEDULING_SLACK:g})"
                )
        self._tracked: dict[str, _Tracked] = {}

    @classmethod
    def from_config(
        cls, section: EvidenceSection, close_margin: CloseMargin = closes_at_end
    ) -> EvidencePlanner:
        return cls(section.pre, section.post, section.max_duration, section.ring_seconds, close_margin)

    def part_span(self, sources: Sequence[str] = ()) -> float:
        """How long a part of an incident of `sources` is now: `max_duration`, or what the ring holds
        beside `pre` and the close margin as it stands."""
        if self.ring_seconds is None:
            return self.max_duration
        room = self._room(max(self.post, self.close_margin(sources)))
        return min(self.max_duration, max(room, self._min_span))

    def _room(self, after: float) -> float:
        assert self.ring_seconds is not None
        return self.ring_seconds - self.pre - after - SCHEDULING_SLACK

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
        boundary = tracked.part_start + self.part_span(tracked.sources)
        if tracked.ended is not None and tracked.ended <= boundary:
            end = tracked.ended + self.post
            return EvidenceWindow(
                incident_id, tracked.sources, tracked.part, tracked.slice_start, end, end, True
            )
        return EvidenceWindow(
            incident_id, tracked.sources, tracked.part, tracked.slice_start, boundary, boundary, False
        )
