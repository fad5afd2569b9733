"""Recording benchmark (issue 14): the segment format chosen from measurements, the recorder's CPU at
3 Mbaud, S3 upload throughput to a local S3 server (moto), and the time from a step's end to its
data registration in Atlas.

    .venv/bin/python bench/bench_recorder.py [--seconds 10]

1. Formats: 8-channel frames at 5,000 lines/s (3 Mbaud of ~60-byte CSV lines), two data sets:
   `sensor` (noisy sensors printed with 1-4 decimals, like the bench simulator's) and `random`
   (uniform values with 2 decimals, the serial benchmark's lines: compression's worst case). For each
   candidate: bytes per sample and the CPU (all threads) to turn frames into file bytes, as % of one
   core at 5,000 frames/s, in 1-second batches (the writer's flush).
2. The recorder itself: frames through `Recorder.add` on the event loop, the hand-off and the writer
   thread writing real segment files: process CPU per second of 3 Mbaud input, and the hot-path call's
   cost per frame.
3. S3: a 64 MiB segment (8 MiB parts, multipart) and 2 MiB ones (one PUT) through the upload job to
   moto's server on loopback: MB/s.
4. Step end -> registration: the whole agent (in process) on the simulated bench, the Atlas
   emulator and moto: from the END marker written on the pty to the data registration seen in Atlas.

Prints the figures and writes bench/out/recorder.json. The machine is shared: figures are under contention.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "recorder"))  # moto, the sim
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from common import update_results

from edge_agent.frames import Frame
from edge_agent.recorder import csvgz

RATE = 5000  # lines/s at 3 Mbaud
NAMES = [
    "supply_v",
    "current_a",
    "temp_c",
    "vibration_g",
    "pressure_kpa",
    "speed_rpm",
    "flow_lpm",
    "torque_nm",
]
SENSORS = [(12, 0.015, 3), (1.5, 0.01, 3), (35, 0.03, 2), (0.05, 0.01, 4), (101.3, 0.05, 2), (1500, 2, 1),
           (20, 0.1, 2), (5, 0.05, 3)]  # fmt: skip


def make_frames(kind: str, n: int) -> list[Frame]:
    rng = random.Random(14)
    frames = []
    for i in range(n):
        if kind == "sensor":
            values = [round(float(m) + rng.gauss(0, s), d) for m, s, d in SENSORS]
        else:
            values = [round(rng.uniform(-50, 50), 2) for _ in NAMES]
        t = i / RATE
        frames.append(
            Frame("bench", t, 1.8e9 + (i // 50) * 0.01, dict(zip(NAMES, values, strict=True)), float(i))
        )
    return frames


def _batches(frames: list[Frame]) -> list[list[Frame]]:
    return [frames[i : i + RATE] for i in range(0, len(frames), RATE)]


def _csvgz(level: int) -> Callable[[list[Frame]], bytes]:
    def encode(frames: list[Frame]) -> bytes:
        formatter = csvgz.RowFormatter(NAMES, True, frames[0].mono)
        out = [csvgz.member(csvgz.header_line(csvgz.header(NAMES, "t_ms")), level)]
        for batch in _batches(frames):
            out.append(csvgz.member(formatter.format(batch), level))
        return b"".join(out)

    return encode


def _csv_plain(frames: list[Frame]) -> bytes:
    formatter = csvgz.RowFormatter(NAMES, True, frames[0].mono)
    return b"".join(formatter.format(b).encode() for b in _batches(frames))


def _zstd(level: int) -> Callable[[list[Frame]], bytes]:
    def encode(frames: list[Frame]) -> bytes:
        import zstandard

        formatter = csvgz.RowFormatter(NAMES, True, frames[0].mono)
        compressor = zstandard.ZstdCompressor(level=level)
        return b"".join(compressor.compress(formatter.format(b).encode()) for b in _batches(frames))

    return encode


def _arrow_table(batch: list[Frame]) -> Any:
    import pyarrow as pa

    columns = {"time_utc": pa.array([f.wall for f in batch], pa.float64())}
    columns["t_ms"] = pa.array([f.device_time for f in batch], pa.float64())
    for name in NAMES:
        columns[name] = pa.array([f.values[name] for f in batch], pa.float64())
    return pa.table(columns)


def _parquet(codec: str) -> Callable[[list[Frame]], bytes]:
    def encode(frames: list[Frame]) -> bytes:
        import pyarrow.parquet as pq

        sink = io.BytesIO()
        writer = None
        for batch in _batches(frames):
            table = _arrow_table(batch)
            writer = writer or pq.ParquetWriter(sink, table.schema, compression=codec)
            writer.write_table(table)
        assert writer is not None
        writer.close()
        return sink.getvalue()

    return encode


def _arrow_ipc(frames: list[Frame]) -> bytes:
    import pyarrow.ipc as ipc

    sink = io.BytesIO()
    writer = None
    for batch in _batches(frames):
        table = _arrow_table(batch)
        writer = writer or ipc.new_stream(sink, table.schema, options=ipc.IpcWriteOptions(compression="zstd"))
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return sink.getvalue()


CANDIDATES: dict[str, tuple[Callable[[list[Frame]], bytes], str]] = {
    "csv (no compression)": (_csv_plain, "Excel, pandas, Atlas (text/csv); not compressed"),
    "csv + gzip 1 (chosen)": (_csvgz(1), "pandas directly; Excel after unzip; survives a SIGKILL"),
    "csv + gzip 6": (_csvgz(6), "same as gzip 1"),
    "csv + zstd 3": (_zstd(3), "pandas (with zstandard); Excel: no"),
    "parquet (snappy)": (
        _parquet("snappy"),
        "pandas (with pyarrow); Excel: Power Query only; footer at close",
    ),
    "parquet (zstd)": (_parquet("zstd"), "same as parquet (snappy)"),
    "arrow ipc stream (zstd)": (_arrow_ipc, "pandas (with pyarrow); Excel: no"),
}


def _cpu(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def formats(seconds: float) -> dict[str, Any]:
    n = int(RATE * seconds)
    results: dict[str, Any] = {}
    for kind in ("sensor", "random"):
        frames = make_frames(kind, n)
        for name, (encode, _) in CANDIDATES.items():
            encode(frames[:RATE])  # warm-up (imports, first allocations)
            cpu, data = _cpu(lambda e=encode, f=frames: e(f))  # type: ignore[misc]
            results.setdefault(name, {})[kind] = {
                "bytes_per_sample": round(len(data) / (n * len(NAMES)), 3),
                "cpu_percent_of_one_core": round(100.0 * cpu / seconds, 2),
            }
    for name, (_, tools) in CANDIDATES.items():
        results[name]["read_by"] = tools
    return results


async def _paced(frames: list[Frame], add: Callable[[Frame], None]) -> tuple[float, float, float]:
    """Feed `frames` at RATE in reads of 50 (10 ms); (process CPU s, elapsed s, s inside `add`)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    hot = 0.0
    for start in range(0, len(frames), 50):
        delay = wall0 + start / RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter()
        for frame in frames[start : start + 50]:
            add(frame)
        hot += time.perf_counter() - t0
    await asyncio.sleep(1.3)  # the writer's last flush (flush_interval 1 s)
    return time.process_time() - cpu0, time.perf_counter() - wall0, hot


async def recorder_cpu(seconds: float) -> dict[str, Any]:
    """The real Recorder on an event loop, its writer thread writing real files. The same pacing loop
    with a no-op sink is measured too: the difference is the recorder's own cost."""
    from edge_agent.config import load_config
    from edge_agent.outbox import Outbox
    from edge_agent.recorder import Recorder
    from edge_agent.steps.tracker import StepTracker

    frames = make_frames("sensor", int(RATE * seconds))
    base_cpu, base_elapsed, _ = await _paced(frames, lambda frame: None)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "agent.toml").write_text(f'[agent]\nstate_dir = "{tmp}"\n[atlas]\nenabled = false\n')
        config = load_config(Path(tmp) / "agent.toml", environ={})
        outbox = Outbox(Path(tmp), config.outbox)
        steps = StepTracker(config=config, outbox=outbox, client=None, state_dir=Path(tmp))
        await steps.start("bench-run", time.time())
        recorder = Recorder(config, Path(tmp), outbox=outbox, steps=steps)
        await recorder.start("bench-run")
        runner = asyncio.create_task(recorder.run())
        cpu, elapsed, hot = await _paced(frames, recorder.add)
        runner.cancel()
        await recorder.close()
        recorded = recorder.writer.frames_written if recorder.writer else 0
        size = recorder.disk_bytes()
    with_recorder = 100.0 * cpu / elapsed
    loop_alone = 100.0 * base_cpu / base_elapsed
    return {
        "frames": len(frames),
        "frames_recorded": recorded,
        "frames_dropped": recorder.frames_dropped,
        "seconds": round(elapsed, 2),
        "process_cpu_percent_with_recorder": round(with_recorder, 2),
        "process_cpu_percent_pacing_loop_alone": round(loop_alone, 2),
        "cpu_percent_of_one_core": round(with_recorder - loop_alone, 2),
        "hot_path_us_per_frame": round(1e6 * hot / len(frames), 3),
        "bytes_per_sample": round(size / (len(frames) * len(NAMES)), 3),
    }


async def s3_throughput() -> dict[str, Any]:
    from recorder_helpers import BUCKET, KEY_ID, REGION, SECRET, start_moto

    from edge_agent.config import S3Section
    from edge_agent.outbox.model import Job, JobState
    from edge_agent.s3 import S3Client, UploadHandler

    server, url = start_moto()
    out: dict[str, Any] = {}
    try:
        section = S3Section.model_validate(
            {"bucket": BUCKET, "endpoint_url": url, "region": REGION, "addressing_style": "path",
             "access_key_id": KEY_ID, "secret_access_key": SECRET}
        )  # fmt: skip
        client = S3Client(section)
        handler = UploadHandler(client, 8 * 1024 * 1024)
        with tempfile.TemporaryDirectory() as tmp:
            for label, size, count in (("multipart_64MiB", 64, 2), ("single_put_2MiB", 2, 8)):
                path = Path(tmp) / f"{label}.bin"
                path.write_bytes(os.urandom(size * 1024 * 1024))
                rates = []
                for i in range(count):
                    payload = {
                        "path": str(path),
                        "bucket": BUCKET,
                        "key": f"bench/{label}-{i}",
                        "content_type": "x",
                    }
                    job = Job(i, "s3.upload", "g", payload, (), 0, JobState.IN_FLIGHT, 1, 0.0, False, None,
                              None, None, 0.0, 0.0, 0, ())  # fmt: skip
                    start = time.perf_counter()
                    await handler.deliver(job, {})
                    rates.append(size / (time.perf_counter() - start))
                out[label] = {"mb_per_s": round(statistics.median(rates), 1), "runs": count}
        client.close()
    finally:
        server.stop()
    return out


async def step_end_to_registration() -> dict[str, Any]:
    from e2e_helpers import TOKEN, agent_config_toml, step_toml
    from recorder_helpers import CapturingSim, s3_toml, start_moto

    from edge_agent.agent import Agent
    from edge_agent.config import EmulatorSection, load_config
    from edge_agent.emulators.atlas import AtlasEmulator

    steps = [(f"step_{i}", 1.0 + 1.5 * i, 1.5) for i in range(5)]
    server, url = start_moto()
    settings = EmulatorSection.model_validate({"host": "127.0.0.1", "atlas_port": 0, "atlas_token": TOKEN})
    delays: list[float] = []
    try:
        async with AtlasEmulator(settings, seed=1, report_delay=60.0) as atlas:
            with tempfile.TemporaryDirectory() as tmp_name:
                tmp = Path(tmp_name)
                config_path = tmp / "agent.toml"
                config_path.write_text(
                    agent_config_toml(tmp / "state", tmp / "tty", atlas.base_url) + s3_toml(url)
                )
                scenario = tmp / "scenario.toml"
                scenario.write_text('name = "b"\nduration = "8.6s"\n' + "".join(step_toml(*s) for s in steps))
                agent = Agent(load_config(config_path, environ={}))
                sim = CapturingSim(scenario, tmp / "tty", tmp / "oracle.jsonl", rate=200.0)
                await agent.start()
                await sim.start()
                seen: dict[str, float] = {}
                deadline = time.monotonic() + 40
                while len(seen) < len(steps) and time.monotonic() < deadline:
                    for run in atlas.state()["test_runs"]:
                        titles = {s["uuid"]: s["title"] for c in run["test_cards"] for s in c["test_steps"]}
                        for data in run["test_data"]:
                            for assoc in data["associations"]:
                                title = titles.get(assoc.get("test_step_id") or "")
                                if title and title not in seen:
                                    seen[title] = time.monotonic()
                    await asyncio.sleep(0.01)
                ends = {
                    line.decode().split()[2]: t
                    for line, t in zip(sim.port.lines, sim.port.times, strict=True)
                    if line.startswith(b"#STEP END")
                }
                delays = [seen[name] - ends[name] for name in seen if name in ends]
                await sim.stop()
                await agent.stop(time.monotonic() + 10)
    finally:
        server.stop()
    return {
        "steps": len(delays),
        "median_s": round(statistics.median(delays), 3) if delays else None,
        "max_s": round(max(delays), 3) if delays else None,
    }


async def main(args: argparse.Namespace) -> None:
    from edge_agent.logs import setup_logging

    setup_logging("warning", json=True, stream=io.StringIO())
    os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", str(64 * 1024))  # moto, imported later
    results: dict[str, Any] = {"formats": formats(args.seconds)}
    results["recorder_3M_baud"] = await recorder_cpu(args.seconds)
    results["s3_upload"] = await s3_throughput()
    results["step_end_to_registration"] = await step_end_to_registration()
    path = update_results("recorder", "recorder", results)
    print(json.dumps(results, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
