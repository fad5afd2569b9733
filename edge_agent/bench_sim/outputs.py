"""What the sans-I/O cores hand to the adapter: timed writes, link changes and oracle records.

`t` is scenario time in seconds from the start of the run; the adapter turns it into host time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class WriteKind(StrEnum):
    HEADER = "header"
    SAMPLE = "sample"
    MARKER = "marker"
    GARBAGE = "garbage"


@dataclass(slots=True, frozen=True)
class Write:
    """Bytes for the serial line (one whole line, newline included)."""

    t: float
    data: bytes
    kind: WriteKind


@dataclass(slots=True, frozen=True)
class LinkChange:
    """The simulated cable: `up=False` closes the pty (unplug), `up=True` opens a new one."""

    t: float
    up: bool


@dataclass(slots=True, frozen=True)
class OracleEntry:
    """One JSON-able record for the oracle file (a fault or step that has ended, ...)."""

    t: float
    record: dict[str, Any]


@dataclass(slots=True, frozen=True)
class Unplug:
    """A scripted unplug from `t` to `until`; the feed turns it into link changes (never seen by the
    adapter). `record` is the fault's oracle record, completed by the feed when the cable is back."""

    t: float
    until: float
    record: dict[str, Any]


Output = Write | LinkChange | OracleEntry | Unplug


class LineSource(Protocol):
    """A timeline of outputs: the scenario player or the CSV replay."""

    def advance(self, now: float) -> list[Output]:
        """Every output due at or before scenario time `now`, in time order."""
        ...

    def next_due(self) -> float | None:
        """Scenario time of the next output; None once the source is exhausted."""
        ...

    def close(self, now: float) -> list[Output]:
        """Records for whatever is still in progress at `now` (marked truncated)."""
        ...

    def stats(self) -> dict[str, int]: ...
