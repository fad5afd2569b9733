"""Value types that flow down the data path: frames, step markers and serial link events.

These are created per line on the hot path, so they are slotted dataclasses with no validation:
the decoders that build them are the validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(slots=True, frozen=True)
class Frame:
    """One decoded sample row from one source.

    `mono` is the frame's time on its source's timeline, in monotonic seconds (for intervals and
    ordering; edge_agent.serial.clock): the device's clock anchored at the host's receive time when the
    port has `device_time`, else the host's receive time spread over the read the line came in. `wall`
    is the host's Unix time of that read (for humans and the cloud), `device_time` the device's own
    clock as sent (in the device's units), `values` the numeric channels by name.
    """

    source: str
    mono: float
    wall: float
    values: dict[str, float]
    device_time: float | None = None


class StepEdge(StrEnum):
    START = "start"
    END = "end"


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"


@dataclass(slots=True, frozen=True)
class StepMarker:
    """A `#STEP START name` / `#STEP END name [PASS|FAIL]` line seen in a serial stream; `mono` is on
    its source's timeline, like the frames around it."""

    source: str
    edge: StepEdge
    name: str
    mono: float
    wall: float
    verdict: Verdict | None = None


class LinkState(StrEnum):
    DOWN = "down"  # the port vanished or failed: a dropout starts
    UP = "up"  # the port is (re)open: the dropout, if any, ends


@dataclass(slots=True, frozen=True)
class LinkEvent:
    """The serial link of `source` went down or came back up (`mono`: its source's timeline then)."""

    source: str
    state: LinkState
    mono: float
    wall: float
    reason: str = ""


SerialEvent = Frame | StepMarker | LinkEvent
