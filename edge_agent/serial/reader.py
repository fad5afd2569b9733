"""The asyncio adapter of one serial port: open, read, decode, deliver; survive unplug and replug.

Ways to read, chosen per opened port (`io_mode`, default "auto"):
- `fd` (auto for anything with a file descriptor: ttys, ptys, `socket://`): a thread of its own
  reads the descriptor into a fixed buffer of the port's (os.readv); after each read the next is
  paced by ReadPacer so a fast stream is taken in ~2 KiB batches instead of one wake-up per USB
  packet, and the reads of ~50 ms go to the loop as one chunk; a quiet port is waited on with
  poll(2) (edge_agent/serial/fd_pump.py).
- `thread` (auto for URL handlers without a descriptor: `loop://`, `rfc2217://`, `spy://`): a thread
  blocks in `Serial.read` and hands paced batches to the loop (edge_agent/serial/thread_pump.py).
- `asyncio_fast`: pyserial-asyncio-fast's SerialTransport, kept selectable for comparison. It wakes
  and reads (at most 1 KiB) on every readable event; `bench/bench_serial_e2e.py` measured it at about
  twice the CPU of `fd` at 921,600 baud, which is why `fd` is the default.
`fd` and `thread` both bound the bytes read and not yet decoded (THREAD_MAX_IN_FLIGHT: the size of
`fd`'s ReadBuffer, `thread`'s ByteGate): a loop that falls behind leaves the bytes in the driver.

Every gap is visible: a loss emits one LinkEvent DOWN and one `serial.port_lost` log line however
long the device stays away; the reopen after it emits LinkEvent UP and one `serial.port_recovered`.
Paths are resolved anew (os.path.realpath) at each open, so a `/dev/serial/by-id/...` symlink that
comes back pointing at a different node (ttyUSB0 -> ttyUSB1) is followed. Opening and closing run
off the event loop (executor / transport / reader thread): a hung USB driver never stalls the agent.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import serial
import serial_asyncio_fast

from edge_agent.backoff import Backoff
from edge_agent.config import SerialPort
from edge_agent.frames import LinkEvent, LinkState, PackedEvent, SerialEvent
from edge_agent.logs import get_logger
from edge_agent.serial.clock import SourceClock, byte_seconds
from edge_agent.serial.decoders import LineDecoder, make_decoder
from edge_agent.serial.fd_pump import PORT_ERRORS, describe, pump_fd, resolve
from edge_agent.serial.pacing import THREAD_MAX_IN_FLIGHT
from edge_agent.serial.stats import BEFORE_HEADER
from edge_agent.serial.thread_pump import THREAD_READ_TIMEOUT, pump_thread

log = get_logger(__name__)

IoMode = Literal["auto", "fd", "thread", "asyncio_fast"]
Sink = Callable[[SerialEvent], None] | asyncio.Queue[SerialEvent]
PackedSink = Callable[[PackedEvent], None]
Clock = Callable[[], float]

# A kind of device-clock trouble is logged again only after this many frames without it.
CLOCK_LOG_QUIET = 1000
CLOCK_STEP_MEANING = {
    "backwards": "device time went back (reboot, counter wrap, clock set): re-anchored on receive time",
    "jumps": "device time jumped ahead of the host by more than device_time_max_jump: re-anchored",
    "missing": "frames without a usable device time: placed by receive time",
}
WAITING_FOR_HEADER_MEANING = (
    "no columns in the config and the device's header line not seen yet (the agent joined the stream"
    " mid-way): rows are skipped and counted (decode skipped_before_header) until the header arrives."
    " A device may print it only at reset: reset it, or set the port's `columns` to decode at once"
)

HEADER_CHANGED_MEANING = (
    "the device printed a header with other columns while the link stayed up (it restarted): its rows"
    " are decoded by the new header from now on; a rule on a channel it no longer has sees no samples"
)


@dataclass(slots=True)
class ReaderStats:
    """Link-level counters of one port (decode counters live in `decoder.stats`)."""

    bytes: int = 0
    chunks: int = 0
    opens: int = 0
    losses: int = 0
    open_failures: int = 0
    dropped: int = 0  # events a full sink queue refused
    mode: str = ""  # "fd" or "thread": how the current/last open is read
    handoff_peak_bytes: int = 0  # fd and thread modes: the most bytes read and not yet decoded
    handoff_waits: int = 0  # fd and thread modes: reads held back because the loop had not caught up


def resolve_url(url: str) -> str:
    """Device paths are resolved through symlinks now (by-id names move between nodes); URLs pass."""
    return url if "://" in url else os.path.realpath(url)


class SerialReader:
    """Reads one configured port until cancelled; every Frame, StepMarker and LinkEvent goes to `sink`.

    `sink` is a callable, or an asyncio.Queue fed with put_nowait (a full queue drops and counts, so
    a slow consumer never stalls reading, and never grows memory). A `packed_sink` instead takes the
    plain data lines of a read as one `FrameBatch` where the decoder can make one (the agent's fan-out).
    """

    def __init__(
        self,
        port: SerialPort,
        sink: Sink | None = None,
        *,
        packed_sink: PackedSink | None = None,
        decoder: LineDecoder | None = None,
        clock: SourceClock | None = None,
        mono: Clock = time.monotonic,
        wall: Clock = time.time,
        io_mode: IoMode = "auto",
        thread_max_in_flight: int = THREAD_MAX_IN_FLIGHT,
    ) -> None:
        self.port = port
        self._thread_max_in_flight = thread_max_in_flight
        self.decoder = decoder if decoder is not None else make_decoder(port, clock)
        self.clock = self.decoder.clock  # the source's timeline: frames, markers and link events carry it
        self._clock_logged = self.clock.stats.as_dict()
        self._clock_quiet: dict[str, int] = {}  # kind -> frame count at its last step
        self._header_watch = self.decoder.waiting_for_header  # until the csv header line is known
        self._header_warned = False
        self.decoder.on_columns = self._log_columns
        self.stats = ReaderStats()
        self._mono = mono
        self._wall = wall
        self._io_mode = io_mode
        self._backoff = Backoff(base=port.reconnect_min, cap=port.reconnect_max)
        self._packed = packed_sink is not None
        self._deliver: Callable[[PackedEvent], None]
        if packed_sink is not None:
            self._deliver = packed_sink
        elif isinstance(sink, asyncio.Queue):
            self._deliver = self._queue_putter(sink)
        elif sink is not None:
            self._deliver = sink  # type: ignore[assignment]  # the decoder's `feed` gives it no batch
        else:
            raise ValueError("a reader needs a sink or a packed_sink")
        self._down_since: float | None = None  # mono time of the current loss, None while up
        self._failed_opens_this_loss = 0
        self._ever_opened = False
        self._data_since_open = False
        self._log = log.bind(source=port.name, url=port.url)

    def _queue_putter(self, queue: asyncio.Queue[SerialEvent]) -> Callable[[PackedEvent], None]:
        def put(event: PackedEvent) -> None:
            try:
                queue.put_nowait(event)  # type: ignore[arg-type]  # `feed` gives it no batch
            except asyncio.QueueFull:
                self.stats.dropped += 1

        return put

    @property
    def is_up(self) -> bool:
        return self._ever_opened and self._down_since is None

    async def run(self) -> None:
        """Open, read, reconnect with capped backoff; returns only by cancellation."""
        loop = asyncio.get_running_loop()
        while True:
            device = resolve_url(self.port.url)
            try:
                port = await _in_executor_closing_on_cancel(loop, functools.partial(self._open, device))
            except PORT_ERRORS as exc:
                self.stats.open_failures += 1
                self._failed_opens_this_loss += 1
                self._link_down(describe(exc), device)
                await asyncio.sleep(self._backoff.next_delay())
                continue
            self._link_up(device)
            reason = await self._pump(loop, port)
            self._link_down(reason, device)
            await asyncio.sleep(self._backoff.next_delay())

    def _open(self, device: str) -> serial.Serial:
        port = self.port
        # The stubs type every URL handler (socket://, loop://, rfc2217://) as a Serial: same read/close API.
        handle = serial.serial_for_url(
            device,
            baudrate=port.baudrate,
            bytesize=port.bytesize,
            parity=port.parity,
            stopbits=port.stopbits,
            rtscts=port.rtscts,
            xonxoff=port.xonxoff,
            exclusive=True,  # two agents (or a terminal) on one port would each get half the bytes
            # Non-blocking reads, set before opening: changing it later re-applies every termios
            # setting, which some drivers (and ptys, with parity or 7 bits) reject with EINVAL.
            timeout=0,
            do_not_open=True,
        )
        handle.open()
        return handle

    def _choose_mode(self, port: serial.Serial) -> str:
        if self._io_mode != "auto":
            return self._io_mode
        try:
            port.fileno()
        except (AttributeError, OSError, NotImplementedError, serial.SerialException):
            return "thread"
        return "fd" if os.name == "posix" else "thread"

    async def _pump(self, loop: asyncio.AbstractEventLoop, port: serial.Serial) -> str:
        mode = self._choose_mode(port)
        self.stats.mode = mode
        if mode == "thread":
            try:
                # Opened non-blocking (timeout 0); the thread needs a blocking read that wakes up
                # now and then to look at its stop flag.
                port.timeout = THREAD_READ_TIMEOUT
            except PORT_ERRORS as exc:
                loop.run_in_executor(None, port.close)
                return describe(exc)
        if mode == "fd":
            return await self._pump_fd(loop, port)
        if mode == "asyncio_fast":
            return await self._pump_asyncio_fast(loop, port)
        return await self._pump_thread(loop, port)

    async def _pump_fd(self, loop: asyncio.AbstractEventLoop, port: serial.Serial) -> str:
        return await pump_fd(
            loop,
            port,
            self._on_bytes,
            stats=self.stats,
            max_in_flight=self._thread_max_in_flight,
            name=f"serial-{self.port.name}",
        )

    async def _pump_asyncio_fast(self, loop: asyncio.AbstractEventLoop, port: serial.Serial) -> str:
        lost: asyncio.Future[str] = loop.create_future()
        protocol = _ReaderProtocol(self._on_bytes, lost)
        transport, _ = await serial_asyncio_fast.connection_for_serial(loop, lambda: protocol, port)
        try:
            return await lost
        finally:
            # The transport closes the port in the executor: never a blocking close on the loop.
            transport.close()

    async def _pump_thread(self, loop: asyncio.AbstractEventLoop, port: serial.Serial) -> str:
        return await pump_thread(
            loop, port, self._on_bytes, self.stats, f"serial-{self.port.name}", self._thread_max_in_flight
        )

    def _on_bytes(self, data: bytes) -> None:
        stats = self.stats
        stats.bytes += len(data)
        stats.chunks += 1
        if not self._data_since_open:
            # Reset the backoff only once data flows: a port that opens and dies at once (a flapping
            # hub) keeps backing off instead of spinning at the minimum delay.
            self._data_since_open = True
            self._backoff.reset()
        deliver = self._deliver
        clock_stats = self.clock.stats
        steps_before = clock_stats.backwards + clock_stats.jumps + clock_stats.missing
        decode = self.decoder.feed_packed if self._packed else self.decoder.feed
        for event in decode(data, self._mono(), self._wall()):
            deliver(event)
        if clock_stats.backwards + clock_stats.jumps + clock_stats.missing != steps_before:
            self._log_clock_steps()
        if self._header_watch:
            self._log_header_wait()

    def _log_header_wait(self) -> None:
        """One warning when rows are first skipped for want of the header line (not one per row: the
        count is on /status and /metrics), one info line when the header arrives after that."""
        decoder = self.decoder
        skipped = decoder.stats.skipped.get(BEFORE_HEADER, 0)
        if skipped and not self._header_warned:
            self._header_warned = True
            self._log.warning(
                "serial.waiting_for_header", skipped_rows=skipped, meaning=WAITING_FOR_HEADER_MEANING
            )
        if not decoder.waiting_for_header:
            self._header_watch = False
            if self._header_warned:
                self._log.info("serial.header_read", skipped_rows=skipped)

    def _log_columns(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """One line per change of the device's columns (the count is on /status and /metrics)."""
        self._log.warning(
            "serial.header_changed", old_columns=list(old), columns=list(new), meaning=HEADER_CHANGED_MEANING
        )

    def _log_clock_steps(self) -> None:
        """One line per kind of clock trouble when it starts, and again when it comes back after
        CLOCK_LOG_QUIET frames without it: a device whose clock steps now and then is logged each time,
        one that sends no time at all is logged once (the counts are on /status and /metrics)."""
        counts = self.clock.stats.as_dict()
        frames = self.decoder.stats.frames
        for kind, count in counts.items():
            logged = self._clock_logged[kind]
            if count == logged:
                continue
            quiet_since = self._clock_quiet.get(kind)
            if quiet_since is None or frames - quiet_since >= CLOCK_LOG_QUIET:
                self._log.warning(
                    "serial.device_clock_" + kind,
                    count=count,
                    mode=self.clock.mode,
                    field=self.port.device_time,
                    meaning=CLOCK_STEP_MEANING[kind],
                )
            self._clock_logged[kind] = count
            self._clock_quiet[kind] = frames

    def _link_up(self, device: str) -> None:
        self.stats.opens += 1
        self._data_since_open = False
        host = self._mono()
        self.clock.opened(host, self._byte_time(device))
        mono = self.clock.now(host)
        if self._down_since is not None:
            self._log.info(
                "serial.port_recovered",
                device=device,
                down_seconds=round(host - self._down_since, 3),
                failed_opens=self._failed_opens_this_loss,
            )
        elif not self._ever_opened:
            self._log.info("serial.port_opened", device=device, baudrate=self.port.baudrate)
        self._ever_opened = True
        self._down_since = None
        self._failed_opens_this_loss = 0
        self._deliver(LinkEvent(self.port.name, LinkState.UP, mono, self._wall(), device))

    def _link_down(self, reason: str, device: str) -> None:
        if self._down_since is not None:
            return  # still the same loss: one event and one log line per gap
        self.decoder.reset()
        self.stats.losses += 1
        host = self._mono()
        self._down_since = host
        mono = self.clock.now(host)
        event = "serial.port_lost" if self._ever_opened else "serial.port_unavailable"
        self._log.warning(event, device=device, reason=reason, retry_max_s=self.port.reconnect_max)
        self._deliver(LinkEvent(self.port.name, LinkState.DOWN, mono, self._wall(), reason))

    def _byte_time(self, device: str) -> float | None:
        """Seconds a byte takes on this link: a real port cannot deliver faster than its baud rate; a
        pty or a network URL has no baud rate (None: a read's bytes are spread since the previous read)."""
        if "://" in device or device.startswith("/dev/pts/"):
            return None
        port = self.port
        return byte_seconds(port.baudrate, port.bytesize, port.parity, port.stopbits)


class _ReaderProtocol(asyncio.Protocol):
    def __init__(self, on_bytes: Callable[[bytes], None], lost: asyncio.Future[str]) -> None:
        self._on_bytes = on_bytes
        self._lost = lost

    def data_received(self, data: bytes) -> None:
        self._on_bytes(data)

    def connection_lost(self, exc: Exception | None) -> None:
        resolve(self._lost, describe(exc))


async def _in_executor_closing_on_cancel(
    loop: asyncio.AbstractEventLoop, opener: Callable[[], serial.Serial]
) -> serial.Serial:
    """Run a blocking open off the loop; if we are cancelled meanwhile, close what it opens later."""
    future = loop.run_in_executor(None, opener)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:

        def close_late(done: asyncio.Future[serial.Serial]) -> None:
            if not done.cancelled() and done.exception() is None:
                loop.run_in_executor(None, done.result().close)

        future.add_done_callback(close_late)
        raise
