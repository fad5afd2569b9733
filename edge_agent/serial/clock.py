"""Each source's own timeline (sans-I/O): the time every frame, step marker and link event carries in `mono`.

Rules must run on the time the samples were taken, not on when the host happened to read them: frames
decoded from one serial read would otherwise share one time (a `hold` or `clear_after` quantised to reads,
a rate computed over a read's length), and a recording replayed faster would give other anomalies.

Two modes, fixed per port:

- **device** (the port has `device_time`): t = device seconds + offset. The offset anchors the timeline at
  the host monotonic receive time of the first frame, so at 1x live t ~= time.monotonic() and the
  timelines of several sources stay comparable. A device time that goes backwards, or forward by more than
  `max_jump` beyond the host time elapsed since the previous frame, is a clock step: counted (`backwards`,
  `jumps`) and the timeline continues from the previous t plus the host time elapsed (re-anchored), so t
  never goes back. A frame without a usable device time takes the receive-time rule (counted `missing`).
- **receive** (no `device_time`): the frames of one read are spread over the time the read's bytes took to
  arrive. A line ending `a` bytes before the end of a chunk of `L` bytes read at host time `T` gets
  `T - a * min(byte_time, (T - T_prev) / L)`: a real serial port cannot deliver faster than its baud rate
  (`byte_time` = bits per character / baud), a pty or socket has no baud rate (`byte_time` None), and its
  bytes are spread evenly since the previous read. t never decreases.

`now(host_mono)` is the source timeline's "now": the last t plus the host time since that frame arrived.
Every tick-driven comparison (dropout gaps, closing an anomaly whose samples stopped) uses it, so a device
crystal that runs slow or fast, or a replay at 200x, never reads as a dropout.

Pure: the adapter passes host times in and logs what the counters say.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate, chain, repeat
from operator import add, le, mul, sub
from typing import Any, Literal

from edge_agent.config import DEFAULT_DEVICE_TIME_MAX_JUMP, SerialPort

# Device seconds per unit of the device_time field.
UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

ClockMode = Literal["device", "receive"]
_NO_TIME = -math.inf


def device_time_scale(field: str, unit: str) -> float:
    """Seconds per unit of `field`. `auto` reads the unit from the name's suffix (`_s`, `_ms`, `_us`,
    `_ns`); a name without one is a ValueError that says what to set."""
    if unit != "auto":
        return UNIT_SECONDS[unit]
    suffix = field.rsplit("_", 1)[-1].lower() if "_" in field else ""
    if suffix in UNIT_SECONDS:
        return UNIT_SECONDS[suffix]
    raise ValueError(
        f"the unit of device_time {field!r} cannot be told from its name (no _s, _ms, _us or _ns suffix):"
        " set device_time_unit"
    )


def byte_seconds(baudrate: int, bytesize: int, parity: str, stopbits: float) -> float:
    """Seconds one character takes on the wire: start bit, data bits, parity bit, stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


@dataclass(slots=True)
class ClockStats:
    backwards: int = 0  # device time went back: re-anchored
    jumps: int = 0  # device time ran ahead of the host by more than max_jump: re-anchored
    missing: int = 0  # device-mode frames without a usable device time: placed by receive time

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SourceClock:
    """The timeline of one source. `scale` (seconds per device unit) None means receive mode."""

    __slots__ = (
        "_dev_h", "_last_dev", "_last_h", "_last_t", "_offset", "_prev_read",
        "byte_time", "max_jump", "scale", "stats",
    )  # fmt: skip

    def __init__(
        self,
        scale: float | None = None,
        *,
        byte_time: float | None = None,
        max_jump: float = DEFAULT_DEVICE_TIME_MAX_JUMP,
    ) -> None:
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be > 0 seconds per unit, not {scale!r}")
        if not (math.isfinite(max_jump) and max_jump > 0):
            raise ValueError(f"max_jump must be > 0 seconds, not {max_jump!r}")
        self.scale = scale
        self.byte_time = byte_time  # None: no physical bound (pty, socket)
        self.max_jump = max_jump
        self.stats = ClockStats()
        self._last_t = _NO_TIME  # timeline time of the last frame
        self._last_h = _NO_TIME  # host receive time of the last frame
        self._last_dev: float | None = None  # device time (in its units) of the last frame that had one
        self._dev_h = _NO_TIME  # host receive time of that frame (jumps are measured against it)
        self._offset = 0.0
        self._prev_read: float | None = None  # host time of the previous read

    @classmethod
    def for_port(cls, port: SerialPort) -> SourceClock:
        """A port's clock: device mode when it names a device_time field. Until the reader opens the port
        and knows better, a byte takes its time on the wire at the configured baud rate."""
        scale = (
            None if port.device_time is None else device_time_scale(port.device_time, port.device_time_unit)
        )
        byte_time = byte_seconds(port.baudrate, port.bytesize, port.parity, port.stopbits)
        return cls(scale, byte_time=byte_time, max_jump=port.device_time_max_jump)

    @property
    def mode(self) -> ClockMode:
        return "receive" if self.scale is None else "device"

    def opened(self, host_mono: float, byte_time: float | None) -> None:
        """The port (re)opened: the first read's bytes arrived after this, at most `byte_time` apart."""
        self._prev_read = host_mono
        self.byte_time = byte_time

    def read_without_lines(self, host_mono: float) -> None:
        """A read that completed no line: the next read's bytes arrived after this one's."""
        self._prev_read = host_mono

    def now(self, host_mono: float) -> float:
        """The timeline's now: the last frame's t plus the host time since it arrived (never below it)."""
        last = self._last_t
        if last == _NO_TIME:
            return host_mono
        elapsed = host_mono - self._last_h
        return last + elapsed if elapsed > 0.0 else last

    def mark(self, host: float) -> float:
        """The time of an event without a device time (a step marker) that arrived at `host`: the
        timeline's now then; later frames are placed no earlier, so the stream's order is kept."""
        t = self.now(host)
        if t > self._last_t:
            self._last_t = t
            self._last_h = host
        return t

    def spread(self, host_mono: float, chunk_len: int, tails: Sequence[int]) -> list[float]:
        """Host arrival time of each line of a chunk read at `host_mono`; `tails[i]` = bytes of the
        chunk after line i's newline. Call once per read (it remembers the read's time)."""
        per_byte = self._per_byte(host_mono, chunk_len)
        return [host_mono - tail * per_byte for tail in tails]

    def _per_byte(self, host_mono: float, chunk_len: int) -> float:
        prev = self._prev_read
        self._prev_read = host_mono
        bound = self.byte_time
        if prev is None or chunk_len <= 0:
            return bound or 0.0
        even = (host_mono - prev) / chunk_len
        if even <= 0.0:
            return 0.0
        return even if bound is None or even < bound else bound

    def stamp(self, host: float, device: float | None) -> float:
        """The timeline time of one frame that arrived at `host` carrying `device` (None: none)."""
        last_t = self._last_t
        scale = self.scale
        if scale is None:
            t = host if host > last_t else last_t
        elif device is None or device - device != 0.0:  # absent, NaN or inf
            self.stats.missing += 1
            t = self._by_receive(host)
        else:
            last_dev = self._last_dev
            if last_dev is None:
                t = self._reanchor(host, device)  # the first device time anchors the timeline
            elif device < last_dev:
                self.stats.backwards += 1
                t = self._reanchor(host, device)
            elif (device - last_dev) * scale - (host - self._dev_h) > self.max_jump:
                self.stats.jumps += 1
                t = self._reanchor(host, device)
            else:
                t = device * scale + self._offset
                if t < last_t:
                    t = last_t
            self._last_dev = device
            self._dev_h = host
        self._last_t = t
        self._last_h = host
        return t

    def _by_receive(self, host: float) -> float:
        last_t = self._last_t
        if last_t == _NO_TIME:
            return host
        elapsed = host - self._last_h
        return last_t + elapsed if elapsed > 0.0 else last_t

    def _reanchor(self, host: float, device: float) -> float:
        assert self.scale is not None
        t = self._by_receive(host)
        self._offset = t - device * self.scale
        return t

    def stamp_chunk(
        self,
        host_mono: float,
        chunk_len: int,
        lines: Sequence[bytes],
        after_last: int,
        devices: Sequence[float] | None,
    ) -> list[float]:
        """`spread` and `stamp` for every line of a chunk at once (the CSV batch path): one call per read.
        `after_last`: bytes of the chunk after the last line's newline. In device mode the common case
        needs no per-line arrival times, so they are computed only when a frame needs one."""
        per_byte = self._per_byte(host_mono, chunk_len)
        last_host = host_mono - after_last * per_byte
        if self.scale is not None and devices and self._fast_path(devices):
            scale, offset = self.scale, self._offset
            times = list(map(add, map(mul, devices, repeat(scale)), repeat(offset)))
            if times[0] < self._last_t:
                last = self._last_t
                times = [t if t > last else last for t in times]
            self._last_t = times[-1]
            self._last_h = self._dev_h = last_host
            self._last_dev = devices[-1]
            return times
        tails = chunk_tails(lines, after_last)
        if self.scale is None:
            last = self._last_t
            # host_mono - tail * per_byte for each line, in C-level passes (hot path)
            times = list(map(sub, repeat(host_mono), map(mul, tails, repeat(per_byte))))
            if times:
                if times[0] < last:
                    times = [t if t > last else last for t in times]
                self._last_t = times[-1]
                self._last_h = host_mono - tails[-1] * per_byte
            return times
        # A read with a first frame, a missing value or a clock step (rare): frame by frame.
        hosts = [host_mono - tail * per_byte for tail in tails]
        if devices is None:
            return [self.stamp(host, None) for host in hosts]
        return [self.stamp(host, device) for host, device in zip(hosts, devices, strict=True)]

    def _fast_path(self, devices: Sequence[float]) -> bool:
        """True when no frame of the read is special, checked in C-level passes: every value finite (a
        finite sum has no NaN or inf), none going back, and the whole read advancing at most max_jump
        (then no two of its frames can step by more: host time between them only lowers the excess)."""
        last_dev = self._last_dev
        if last_dev is None:
            return False
        total = sum(devices)
        assert self.scale is not None
        return (
            total - total == 0.0
            and (devices[-1] - last_dev) * self.scale <= self.max_jump
            and all(map(le, chain((last_dev,), devices), devices))
        )

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, **self.stats.as_dict()}
        if self.scale is None:
            out.pop("missing")
        return out


def chunk_tails(lines: Sequence[bytes], after_last: int) -> list[int]:
    """Bytes of a chunk after each line's newline: `after_last` (the unterminated rest) for the last line,
    plus each later line and its newline for the earlier ones. C-level passes only (hot path): with
    `upto[i]` the bytes of lines 0..i and their newlines, tail_i = after_last + upto[-1] - upto[i]."""
    if not lines:
        return []
    lengths = list(map(len, lines))
    base = after_last + sum(lengths) + len(lengths)
    return list(map(sub, repeat(base), accumulate(map(add, lengths, repeat(1)))))


class SourceClocks:
    """The agent's registry: one clock per configured source."""

    def __init__(self, clocks: Iterable[tuple[str, SourceClock]] = ()) -> None:
        self._clocks: dict[str, SourceClock] = dict(clocks)

    @classmethod
    def for_ports(cls, ports: Iterable[SerialPort]) -> SourceClocks:
        return cls((port.name, SourceClock.for_port(port)) for port in ports)

    def __getitem__(self, source: str) -> SourceClock:
        return self._clocks[source]

    def __contains__(self, source: object) -> bool:
        return source in self._clocks

    def add(self, source: str, clock: SourceClock) -> SourceClock:
        self._clocks[source] = clock
        return clock

    def now(self, source: str, host_mono: float) -> float:
        """`source`'s timeline at host monotonic time `host_mono` (an unknown source: `host_mono`)."""
        clock = self._clocks.get(source)
        return host_mono if clock is None else clock.now(host_mono)

    def all_now(self, host_mono: float) -> dict[str, float]:
        """Every source's timeline at host monotonic time `host_mono`."""
        return {source: clock.now(host_mono) for source, clock in self._clocks.items()}

    def status(self) -> dict[str, dict[str, Any]]:
        return {source: clock.status() for source, clock in self._clocks.items()}
