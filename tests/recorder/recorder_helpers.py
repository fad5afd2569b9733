"""Helpers of the recording tests: moto's S3 server, a proxy that can refuse connections, reading
back what landed in the bucket, parsing the lines the simulated bench wrote, and a segment writer
whose flush is a minute away."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import io
import socket
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from e2e_helpers import Sim

from edge_agent.bench_sim.pty_port import PtyPort
from edge_agent.recorder.segmenter import Segmenter
from edge_agent.recorder.writer import SegmentWriter

BUCKET = "bench-recordings"
KEY_ID = "AKIAEDGEAGENTTEST0001"
SECRET = "edge-agent-test-secret-key-0123456789abcdef"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    # moto keeps its state per process: start each test from an empty service.
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
    s3(url).create_bucket(Bucket=BUCKET)
    return server, url


def s3(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


def objects(url: str) -> dict[str, bytes]:
    client = s3(url)
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
    return out


def open_multipart_uploads(url: str) -> list[str]:
    answer = s3(url).list_multipart_uploads(Bucket=BUCKET)
    return [u["Key"] for u in answer.get("Uploads", [])]


def rows_of(data: bytes) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8")))
    header, *rows = list(reader)
    return header, rows


def s3_toml(endpoint: str, *, part_size_mb: float = 8.0, keys: bool = True) -> str:
    credentials = f'access_key_id = "{KEY_ID}"\nsecret_access_key = "{SECRET}"\n' if keys else ""
    return f"""
[s3]
bucket = "{BUCKET}"
prefix = "recordings"
endpoint_url = "{endpoint}"
region = "{REGION}"
addressing_style = "path"
part_size_mb = {part_size_mb}
connect_timeout = "1s"
read_timeout = "5s"
{credentials}"""


class CapturingPty(PtyPort):
    """The simulator's pty, keeping every line it managed to write: what the bench really sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: list[bytes] = []
        self.times: list[float] = []  # time.monotonic() of each write

    def write(self, data: bytes) -> bool:
        ok = super().write(data)
        if ok:
            self.lines.append(data)
            self.times.append(time.monotonic())
        return ok


@dataclass
class Written:
    """The bench's output split by step: sample rows (device time + values, as floats) per step name,
    and those outside any step."""

    columns: list[str]
    by_step: dict[str, list[tuple[float, ...]]] = field(default_factory=dict)
    between: list[tuple[float, ...]] = field(default_factory=list)
    all: list[tuple[float, ...]] = field(default_factory=list)


def split_by_step(lines: list[bytes]) -> Written:
    text = [line.decode().strip() for line in lines]
    header = next(t for t in text if t and not t.startswith("#") and not t[0].isdigit())
    written = Written(header.split(","))
    current: str | None = None
    for line in text:
        if line.startswith("#STEP START "):
            current = line.removeprefix("#STEP START ").strip()
            written.by_step.setdefault(current, [])
        elif line.startswith("#STEP END "):
            current = None
        elif line and line[0].isdigit():
            row = tuple(float(v) for v in line.split(","))
            written.all.append(row)
            (written.by_step[current] if current is not None else written.between).append(row)
    return written


def segment_rows(data: bytes, columns: list[str]) -> list[tuple[float, ...]]:
    """A segment's rows as the bench's columns (device time first), floats."""
    header, rows = rows_of(data)
    index = [header.index(c) for c in columns]
    return [tuple(float(r[i]) for i in index) for r in rows]


class S3Proxy:
    """A TCP proxy in front of the S3 server. `down()` closes the listening socket and cuts open
    connections (clients get refused); `up()` listens again on the same port."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", int(parts.port or 80))
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.delay_per_chunk = 0.0  # seconds per 64 KiB forwarded to S3: a slow uplink

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.up()

    async def up(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._conns):
            writer.close()
        self._conns.clear()

    async def stop(self) -> None:
        await self.down()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    if upstream and self.delay_per_chunk:
                        await asyncio.sleep(self.delay_per_chunk)
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._conns.discard(writer)
        self._conns.discard(up_writer)


class CapturingSim(Sim):
    """The simulated bench (a scenario on a real pty) keeping the lines it wrote (`port`)."""

    port: CapturingPty

    def __init__(
        self, scenario: Any, link: Any, oracle: Any, rate: float = 50.0, flow_control_s: float = 0.0
    ) -> None:
        super().__init__(scenario, link, oracle, rate, port=CapturingPty(link, flow_control_s=flow_control_s))


def unflushed_writer(folder: Path, run_key: str) -> SegmentWriter:
    """A writer (not started) of source "bench" without device time, one segment, its flush a minute
    away: what it holds between flushes, or writes early, is the test's to see."""
    return SegmentWriter(
        folder,
        run_key,
        segmenter=Segmenter(max_bytes=1 << 30, max_seconds=3600.0),
        device_time_columns={"bench": None},
        flush_interval=60.0,
        level=1,
    )
