"""Value types that flow down the data path: frames, step markers and serial link events.

These are created per line on the hot path, so they are slotted dataclasses with no validation:
the decoders that build them are the validation. At speed the CSV decoder makes no per-line objects at
all: the plain data lines of one read become one `FrameBatch` (packed rows), which the agent's consumers
take whole (issue 12 item 4: per-read, not per-frame, work).
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


class DeviceText:
    """What a FrameBatch's values were parsed from, for the recorder (a number written as the device
    spelled it costs no float formatting): the rows as read, one a line (joined by newlines), each row's
    `width` fields joined by `delimiter` (the batch's channels in order, with the device time's field at
    `time_index` when the port has one). A field may carry the blanks float() strips."""

    __slots__ = ("data", "delimiter", "time_index", "width")

    def __init__(self, data: bytes, delimiter: bytes, width: int, time_index: int | None) -> None:
        self.data = data
        self.delimiter = delimiter
        self.width = width
        self.time_index = time_index


class FrameBatch:
    """Consecutive frames of one source from one read, packed: row i has time `monos[i]` on the source's
    timeline, channel values `values[i * width : (i + 1) * width]` (named by `names`, at least one, in
    that order: every row has every channel) and device time `device_times[i]` (`device_times` None:
    the port has no device time). All rows share `wall`, the read's host wall time, as the frames of one
    read do. `text`, when there is one, is what the values were parsed from (`DeviceText`).

    It stands for exactly the frames `frames()` makes, in that order: a consumer that takes a batch whole
    must end in the state (and give the results) that those frames one by one would.
    """

    __slots__ = ("device_times", "monos", "names", "source", "text", "values", "wall", "width")

    def __init__(
        self,
        source: str,
        wall: float,
        names: tuple[str, ...],
        monos: list[float],
        values: list[float],
        device_times: list[float] | None = None,
        text: DeviceText | None = None,
    ) -> None:
        self.source = source
        self.wall = wall
        self.names = names
        self.width = len(names)
        self.monos = monos
        self.values = values
        self.device_times = device_times
        self.text = text

    def __len__(self) -> int:
        return len(self.monos)

    def column(self, index: int) -> list[float]:
        """Channel `names[index]` of every row."""
        return self.values[index :: self.width]

    def frame(self, row: int) -> Frame:
        """Row `row` as the Frame it stands for."""
        width = self.width
        values = dict(zip(self.names, self.values[row * width : (row + 1) * width], strict=True))
        device = None if self.device_times is None else self.device_times[row]
        return Frame(self.source, self.monos[row], self.wall, values, device)

    def frames(self) -> list[Frame]:
        """The frames this batch stands for (the per-frame path of a consumer, for the rare batch its
        fast path does not take)."""
        source, wall, names, width, values = self.source, self.wall, self.names, self.width, self.values
        devices = self.device_times if self.device_times is not None else [None] * len(self.monos)
        return [
            Frame(source, mono, wall, dict(zip(names, values[i : i + width], strict=True)), device)
            for mono, device, i in zip(self.monos, devices, range(0, len(values), width), strict=True)
        ]


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
PackedEvent = SerialEvent | FrameBatch  # what a reader gives a sink that takes batches
