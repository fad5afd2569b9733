"""The simulated cable: turns unplug windows into link changes around a line source's outputs.

While unplugged, data lines are lost (as on a real bench: the device keeps measuring, nobody reads),
step markers are held and written right after the replug (a sequencer buffers its own output; losing
an END marker would leave a step open for ever), and when the cable is back the CSV header is sent
again (a USB-powered device reboots on replug). Unplugs come from the scenario (`Unplug` outputs) or
on request (`request_unplug`, e.g. SIGUSR1). Sans-I/O like the sources it wraps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edge_agent.bench_sim.outputs import LineSource, LinkChange, OracleEntry, Output, Unplug, Write, WriteKind


@dataclass(slots=True)
class _Window:
    start: float
    end: float
    record: dict[str, Any]
    lost: int = 0
    held: list[Write] = field(default_factory=list)


class Feed:
    def __init__(self, source: LineSource, header: bytes | None) -> None:
        self.source = source
        self.header = header
        self._windows: list[_Window] = []  # scheduled, sorted, not overlapping
        self._down: _Window | None = None
        self._requests = 0
        self.lost_while_unplugged = 0

    @property
    def is_down(self) -> bool:
        return self._down is not None

    def request_unplug(self, now: float, duration: float) -> None:
        """Unplug from `now` for `duration` seconds (extends an unplug already in progress)."""
        self._requests += 1
        record = {
            "record": "fault", "id": f"unplug-request-{self._requests}", "run": 0, "kind": "unplug",
            "channel": None, "magnitude": 0.0, "severity": "medium", "expected_rule": "dropout",
            "expect_anomaly": True, "requested": True,
        }  # fmt: skip
        self._schedule(now, now + duration, record)

    def _schedule(self, start: float, end: float, record: dict[str, Any]) -> None:
        if self._down is not None and start <= self._down.end:
            self._down.end = max(self._down.end, end)
            return
        for w in self._windows:
            if start <= w.end and end >= w.start:
                w.start, w.end = min(w.start, start), max(w.end, end)
                return
        self._windows.append(_Window(start, end, record))
        self._windows.sort(key=lambda w: w.start)

    def next_due(self) -> float | None:
        due = self.source.next_due()
        edge = self._next_edge()
        if edge is None:
            return due
        return edge if due is None else min(due, edge)

    def _next_edge(self) -> float | None:
        if self._down is not None:
            return self._down.end
        return self._windows[0].start if self._windows else None

    def advance(self, now: float) -> list[Output]:
        out: list[Output] = []
        for item in self.source.advance(now):
            self._edges_until(item.t, out)  # windows are [start, end): a line at `end` goes out
            if isinstance(item, Unplug):
                self._schedule(item.t, item.until, item.record)
                self._edges_until(item.t, out)
            elif isinstance(item, Write) and self._down is not None:
                if item.kind is WriteKind.MARKER:
                    self._down.held.append(item)
                else:
                    self._down.lost += 1
                    self.lost_while_unplugged += 1
            else:
                out.append(item)
        self._edges_until(now, out)
        return out

    def _edges_until(self, t: float, out: list[Output]) -> None:
        while True:
            edge = self._next_edge()
            if edge is None or edge > t:
                return
            if self._down is None:
                self._down = self._windows.pop(0)
                out.append(LinkChange(edge, up=False))
            else:
                w, self._down = self._down, None
                out.append(LinkChange(edge, up=True))
                if self.header is not None:
                    out.append(Write(edge, self.header, WriteKind.HEADER))
                out.extend(Write(edge, m.data, m.kind) for m in w.held)
                out.append(OracleEntry(edge, self._record(w, w.end)))

    def _record(self, w: _Window, end: float, truncated: bool = False) -> dict[str, Any]:
        record = {
            **w.record, "start_s": w.start, "end_s": end, "start_device_ms": round(w.start * 1000.0),
            "end_device_ms": round(end * 1000.0), "lines_lost": w.lost, "markers_held": len(w.held),
        }  # fmt: skip
        if truncated:
            record["truncated"] = True
        return record

    def close(self, now: float) -> list[Output]:
        out = self.source.close(now)
        if self._down is not None:
            out.append(LinkChange(now, up=True))
            out.extend(Write(now, m.data, m.kind) for m in self._down.held)
            out.append(OracleEntry(now, self._record(self._down, now, truncated=True)))
            self._down = None
        return out

    def stats(self) -> dict[str, int]:
        return {**self.source.stats(), "lost_while_unplugged": self.lost_while_unplugged}
