"""`edge-agent tail --port URL`: print the decoded frames of one serial port live.

The tool for wiring a bench: is the port right, the baud rate, the columns, do markers come through?
One line per frame (receive time, source, values), markers and link changes clearly marked, and on
exit a one-line summary of the counts, skipped lines by reason included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import TextIO

from pydantic import ValidationError

from edge_agent.config import SerialPort
from edge_agent.frames import Frame, LinkState, SerialEvent, StepMarker
from edge_agent.serial.reader import SerialReader

EX_USAGE = 2
LOGS_TO_STDERR = True  # stdout is the frames (piped to a file or grep): the reader's log lines go apart
QUEUE_EVENTS = 10_000  # beyond this the terminal cannot keep up anyway: drop (and count) rather than grow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True, metavar="URL", help="any pyserial URL or device path")
    parser.add_argument("--name", default="tail", help="source name shown on each line")
    parser.add_argument("--format", choices=("csv", "jsonl", "kv"), default="csv")
    parser.add_argument("--columns", default="", help="csv column names a,b,c (default: header line)")
    parser.add_argument("--delimiter", default=",")
    parser.add_argument("--baudrate", type=int, default=115200)
    parser.add_argument("--parity", choices=("N", "E", "O", "M", "S"), default="N")
    parser.add_argument("--stopbits", type=float, default=1)
    parser.add_argument("--rtscts", action="store_true", help="hardware flow control")
    parser.add_argument("--device-time", metavar="FIELD", help="field carrying the device's timestamp")
    parser.add_argument(
        "--device-time-unit",
        choices=("auto", "s", "ms", "us", "ns"),
        default="auto",
        help="unit of --device-time (auto: from the name's suffix _s/_ms/_us/_ns)",
    )
    parser.add_argument("--max-line-bytes", type=int, default=4096)
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")


def port_from_args(args: argparse.Namespace) -> SerialPort:
    return SerialPort(
        name=args.name,
        url=args.port,
        format=args.format,
        columns=[c.strip() for c in args.columns.split(",") if c.strip()],
        delimiter=args.delimiter,
        baudrate=args.baudrate,
        parity=args.parity,
        stopbits=args.stopbits,
        rtscts=args.rtscts,
        device_time=args.device_time,
        device_time_unit=args.device_time_unit,
        max_line_bytes=args.max_line_bytes,
    )


def format_event(event: SerialEvent) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(event.wall)) + f".{int(event.wall % 1 * 1000):03d}"
    if isinstance(event, Frame):
        values = " ".join(f"{name}={value:g}" for name, value in event.values.items())
        device = "" if event.device_time is None else f"  [device_time={event.device_time:g}]"
        return f"{stamp} {event.source}  {values}{device}"
    if isinstance(event, StepMarker):
        verdict = f" {event.verdict.value}" if event.verdict else ""
        return f"{stamp} {event.source}  ## STEP {event.edge.value.upper()} {event.name}{verdict}"
    state = "UP" if event.state is LinkState.UP else "DOWN"
    return f"{stamp} {event.source}  ** LINK {state} ({event.reason})"


def summary(reader: SerialReader) -> str:
    decode = reader.decoder.stats
    link = reader.stats
    parts = [
        f"frames={decode.frames}",
        f"markers={decode.markers}",
        f"lines={decode.lines}",
        f"bytes={link.bytes}",
        f"link_losses={link.losses}",
        f"dropped={link.dropped}",
    ]
    skipped = " ".join(f"{reason}={count}" for reason, count in sorted(decode.skipped.items()))
    return "summary: " + " ".join(parts) + f" skipped: {skipped or 'none'}"


async def tail(port: SerialPort, out: TextIO, duration: float | None, max_frames: int | None) -> SerialReader:
    queue: asyncio.Queue[SerialEvent] = asyncio.Queue(QUEUE_EVENTS)
    reader = SerialReader(port, queue)
    reading = asyncio.create_task(reader.run(), name=f"tail-{port.name}")
    frames = 0
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    try:
        while max_frames is None or frames < max_frames:
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                break
            try:
                event = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            # Drain what is already queued and flush once: a flush per line would cap the rate.
            batch = [event]
            while not queue.empty():
                batch.append(queue.get_nowait())
            for item in batch:
                if isinstance(item, Frame):
                    if max_frames is not None and frames >= max_frames:
                        break
                    frames += 1
                out.write(format_event(item) + "\n")
            out.flush()
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        out.write(summary(reader) + "\n")
        out.flush()
    return reader


def main(args: argparse.Namespace) -> int:
    try:
        port = port_from_args(args)
    except ValidationError as exc:
        print(f"edge-agent tail: invalid option: {exc}", file=sys.stderr)
        return EX_USAGE
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a human stops tail: the summary still prints
        asyncio.run(tail(port, sys.stdout, args.duration, args.max_frames))
    return 0
