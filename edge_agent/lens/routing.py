"""Which reader gets the lens's outputs: `session.read` polls on the websocket, or the SSE consumer.

Public sources say a lens routes its outputs to one of the two, never both, chosen by its
output_streams (research/archetype-protocol.md §5.1), and nothing in the session says which. With
`lens.reader = "auto"` the agent starts with `session.read` and watches: once windows were accepted
and no output came on the current reader for `no_output_after` seconds, it switches to the other one
(said once in the log, and on /status and /readyz). The first output on a reader settles the route
for the rest of the run: the route is the lens's, so a quiet spell later is the lens's too.

If the other reader stays silent as well, the agent keeps alternating (a lens may warm up longer than
expected) but says so only once more. Sans-I/O: the adapter feeds the counters and the monotonic time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.logs import get_logger

_log = get_logger(__name__)

SESSION_READ = "session_read"
SSE = "sse"
Mode = Literal["auto", "session_read", "sse"]
LABELS = {SESSION_READ: "session.read", SSE: "SSE"}


@dataclass(slots=True)
class Switch:
    source: str
    target: str
    after: float  # seconds with accepted windows and no output


class OutputRouting:
    def __init__(self, mode: Mode, no_output_after: float, *, logger: Any = _log) -> None:
        self.log = logger
        self.mode = mode
        self.no_output_after = no_output_after
        self.reader = SSE if mode == SSE else SESSION_READ
        self.settled = mode != "auto"  # a fixed reader is never switched
        self.switches: list[Switch] = []
        self._waiting_since: float | None = None
        self._accepted_mark = 0
        self._outputs_mark = 0
        self._silent_everywhere = False

    def observe(self, now: float, accepted: int, outputs: int) -> str | None:
        """Counters so far (windows the lens accepted, outputs read): the reader to switch to, or None."""
        if outputs > self._outputs_mark:
            self._outputs_mark = outputs
            self._accepted_mark = accepted
            self._waiting_since = None
            if not self.settled:
                self.settled = True
                self.log.info("lens_output_route_found", reader=self.reader, switches=len(self.switches))
            return None
        if self.settled:
            return None
        if accepted > self._accepted_mark and self._waiting_since is None:
            self._waiting_since = now
        if self._waiting_since is None or now - self._waiting_since < self.no_output_after:
            return None
        switch = Switch(self.reader, SESSION_READ if self.reader == SSE else SSE, now - self._waiting_since)
        self.switches.append(switch)
        self.reader = switch.target
        self._accepted_mark = accepted
        self._waiting_since = None
        if len(self.switches) == 1:
            self.log.warning(
                "lens_output_reader_switched",
                source=switch.source,
                target=switch.target,
                after_s=round(switch.after, 1),
                reason="windows were accepted but no output came on the reader: the lens routes its"
                " outputs to the other one",
            )
        elif not self._silent_everywhere:
            self._silent_everywhere = True
            self.log.error(
                "lens_no_output_on_either_reader",
                after_s=round(self.no_output_after, 1),
                note="windows are accepted but neither reader gets an output; still alternating",
            )
        return switch.target

    def waiting_for(self, now: float) -> float | None:
        """Seconds the current reader has waited for an output since windows were accepted."""
        return None if self._waiting_since is None else now - self._waiting_since

    def problem(self) -> str | None:
        """Why outputs are not arriving, once the agent knows (for /readyz); None when they may be."""
        if self.settled or not self.switches:
            return None
        last = self.switches[-1]
        if self._silent_everywhere:
            reader = LABELS[self.reader]
            return f"no lens output on either reader although windows are accepted; now reading {reader}"
        return (
            f"no lens output {last.after:.0f} s after windows were accepted on {LABELS[last.source]};"
            f" switched to {LABELS[last.target]}, waiting for its first output"
        )

    def summary(self) -> str | None:
        """What happened, once a switch settled the route (for /readyz, as an "ok: ..." note)."""
        if not self.settled or not self.switches:
            return None
        first = self.switches[0]
        return (
            f"ok: reading {LABELS[self.reader]} (switched from {LABELS[first.source]} after"
            f" {first.after:.0f} s without output)"
        )

    def status(self, now: float) -> dict[str, Any]:
        waiting = self.waiting_for(now)
        return {
            "mode": self.mode,
            "reader": self.reader,
            "settled": self.settled,
            "no_output_after": self.no_output_after,
            "waiting_for_output_s": None if waiting is None else round(waiting, 1),
            "switches": [
                {"from": s.source, "to": s.target, "after_s": round(s.after, 1)} for s in self.switches
            ],
            "problem": self.problem(),
        }
