"""Evidence files: a CSV of an incident's frames (every channel of every source involved) and a JSON
summary, written atomically into a directory of the state dir, where they stay until the outbox has them
in Atlas (the outbox deletes the files a finished job owns).

The caller names the files (`stem`): on disk by incident id and part, so a restart finds them again and
rewrites the same evidence to the same names; in Atlas the reporter gives them readable names.

CSV columns: `wall_time` (the host's UTC receive time), `offset_s` (seconds from `t0`, the incident's
start, on the sources' timelines: the device's clock where it sends one, so pre frames are negative),
`source`, `device_time` (as the device sent it), then every channel seen in the frames, in the order
first seen. Frames of several sources are merged in time order; a channel a source does not have is
empty in its rows.

Frames come as a list, or as ring slices (edge_agent/evidence/blocks.py) that are walked lazily in the
writer's thread: a slice knows its channels and sources without a pass, and its coverage (how much of
the asked span the ring still held) goes into the JSON (`evidence.coverage`).

Atomic through `edge_agent.state_files` (temp file, fsync, rename, directory fsync): the CSV is renamed
into place before the JSON, so a JSON file means its CSV is complete. `write_evidence_async` runs the
I/O off the event loop.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import heapq
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import IO, Any

from edge_agent.evidence.planner import EvidenceWindow
from edge_agent.evidence.slices import Coverage, MergedSlices, RingFrames, RingSlice
from edge_agent.frames import Frame
from edge_agent.logs import SENSITIVE_KEYS
from edge_agent.state_files import remove_stale_temps, write_atomic, write_atomic_stream
from edge_agent.state_health import StateFileHealth

EVIDENCE_DIR = "evidence"
FIXED_COLUMNS = ("wall_time", "offset_s", "source", "device_time")
# Stems are made from ids the agent generates; anything that could leave the directory or hide a file
# is refused.
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


@dataclasses.dataclass(frozen=True, slots=True)
class EvidenceFiles:
    csv_path: Path
    json_path: Path
    frames: int

    @property
    def paths(self) -> list[Path]:
        return [self.csv_path, self.json_path]


def evidence_dir(state_dir: Path) -> Path:
    return Path(state_dir) / EVIDENCE_DIR


def check_stem(stem: str) -> str:
    if not _SAFE_STEM.match(stem) or ".." in stem:
        raise ValueError(f"{stem!r} cannot name an evidence file (letters, digits, _ . - only)")
    return stem


def merge_by_time(streams: Iterable[Sequence[Frame]]) -> Sequence[Frame]:
    """Frames of several sources (each in time order) as one sequence in time order (at equal times,
    the earlier stream's first). Ring slices merge lazily (`MergedSlices`: walked by the writer in its
    thread, never all in memory as frames); other sequences into a list."""
    streams = list(streams)
    if all(isinstance(stream, RingSlice) for stream in streams):
        return MergedSlices(stream for stream in streams if isinstance(stream, RingSlice))
    return list(heapq.merge(*streams, key=lambda frame: frame.mono))


def write_evidence(
    directory: Path,
    stem: str,
    summary: Mapping[str, Any],
    frames: Sequence[Frame],
    *,
    t0: float,
    window: EvidenceWindow | None = None,
    health: StateFileHealth | None = None,
) -> EvidenceFiles:
    """Write `<directory>/<stem>.csv` and `<stem>.json` (blocking); returns their paths. `health`: where
    a write that fails for lack of space is counted (state_files)."""
    check_stem(stem)
    directory = Path(directory)
    channels, sources = _channels_and_sources(frames)
    csv_path = directory / f"{stem}.csv"
    json_path = directory / f"{stem}.json"
    write_atomic_stream(csv_path, lambda out: _write_csv(out, frames, channels, t0), health=health)
    document = {
        "incident" if summary.get("kind") == "incident" else "anomaly": jsonable(summary),
        "evidence": _evidence_info(csv_path.name, frames, channels, sources, window, t0),
    }
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"
    write_atomic(json_path, text.encode("utf-8"), health=health)
    return EvidenceFiles(csv_path, json_path, len(frames))


async def write_evidence_async(
    directory: Path,
    stem: str,
    summary: Mapping[str, Any],
    frames: Sequence[Frame],
    *,
    t0: float,
    window: EvidenceWindow | None = None,
    health: StateFileHealth | None = None,
) -> EvidenceFiles:
    return await asyncio.to_thread(
        write_evidence, directory, stem, summary, frames, t0=t0, window=window, health=health
    )


def remove_stale_tmp(directory: Path) -> int:
    """Delete temporary files a crash left behind mid-write in `directory`; returns how many."""
    return remove_stale_temps(directory)


def wall_iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds")


def _cell(value: float) -> str:
    # repr() round-trips a float exactly; non-finite readings are written as the device meant them.
    return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else str(value))


def _write_csv(out: IO[bytes], frames: Sequence[Frame], channels: list[str], t0: float) -> None:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *channels])
    for frame in frames:
        values = frame.values
        writer.writerow(
            [
                wall_iso(frame.wall),
                f"{frame.mono - t0:.6f}",
                frame.source,
                "" if frame.device_time is None else repr(frame.device_time),
                *(_cell(values[c]) if c in values else "" for c in channels),
            ]
        )
    text.flush()
    text.detach()  # the caller fsyncs and closes the underlying file


def _channels_and_sources(frames: Sequence[Frame]) -> tuple[list[str], list[str]]:
    if isinstance(frames, RingFrames):
        return frames.channels(), frames.sources()
    channels = list(dict.fromkeys(name for frame in frames for name in frame.values))
    return channels, sorted({frame.source for frame in frames})


def coverage_info(coverage: Sequence[Coverage]) -> dict[str, Any]:
    """`complete`: every source held the whole span asked for; else `cut_by` (memory: the ring's byte
    budget had dropped the start; time: older than ring_seconds) and `covered_from`, the time from
    which every source's frames are complete, with each source's own figures."""
    cut = [c for c in coverage if c.cut_by is not None]
    info: dict[str, Any] = {"complete": not cut}
    if cut:
        info["cut_by"] = "memory" if any(c.cut_by == "memory" for c in cut) else "time"
        starts = [c.covered_from for c in cut if c.covered_from is not None]
        info["covered_from"] = max(starts) if starts else None
    info["sources"] = {
        c.source: {"requested_from": c.requested_start, "covered_from": c.covered_from, "cut_by": c.cut_by}
        for c in coverage
    }
    return info


def _evidence_info(
    csv_name: str,
    frames: Sequence[Frame],
    channels: list[str],
    sources: list[str],
    window: EvidenceWindow | None,
    t0: float,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "csv": csv_name,
        "part": window.part if window is not None else 0,
        "final": window.final if window is not None else False,
        "frames": len(frames),
        "channels": channels,
        "sources": sources,
        "t0": t0,
        "columns": [*FIXED_COLUMNS, *channels],
    }
    if window is not None:
        info["window"] = {"start": window.start, "end": window.end}
    if isinstance(frames, RingFrames):
        info["coverage"] = coverage_info(frames.coverage())
    if frames:
        first, last = frames[0], frames[-1]
        info["first_frame"] = {"t": first.mono, "wall": wall_iso(first.wall)}
        info["last_frame"] = {"t": last.mono, "wall": wall_iso(last.wall)}
    result: dict[str, Any] = jsonable(info)
    return result


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: dataclasses and mappings as objects, enums by value, datetimes in ISO, NaN and
    infinities as null (strict JSON has neither), and any key that names a secret left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {
            str(k): jsonable(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in SENSITIVE_KEYS)
        }
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    return str(value)
