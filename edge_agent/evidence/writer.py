"""Evidence files: a CSV of an anomaly's frames and a JSON summary, written atomically into
`<state_dir>/evidence/` where they stay until the outbox has them in Atlas (the outbox deletes the
files a finished job owns).

Names are stable per anomaly and part (`<anomaly-id>.csv` / `.json`, then `<anomaly-id>.part2.csv`,
...): after a crash the same evidence is rewritten to the same names, and the outbox finds an upload of
unknown outcome among the session's attachments by name.

Atomic: each file is written to a hidden `.<name>.<random>.tmp` beside it, fsynced, renamed over the
final name (`os.replace`) and the directory fsynced, so a reader (or a restart after power loss) sees
either nothing or a whole file. The CSV is renamed into place before the JSON: a JSON file means its
CSV is complete.

The I/O runs off the event loop (`write_evidence_async` uses `asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import json
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

from edge_agent.evidence.planner import EvidenceWindow
from edge_agent.frames import Frame
from edge_agent.logs import SENSITIVE_KEYS

EVIDENCE_DIR = "evidence"
TMP_SUFFIX = ".tmp"
FIXED_COLUMNS = ("wall_time", "mono_offset_s", "device_time")
# Anomaly ids are uuid4 strings; anything that could leave the directory or hide a file is refused.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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


def evidence_stem(anomaly_id: str, part: int = 1) -> str:
    if not _SAFE_ID.match(anomaly_id) or ".." in anomaly_id:
        raise ValueError(f"anomaly id {anomaly_id!r} cannot name a file (letters, digits, _ . - only)")
    if part < 1:
        raise ValueError("evidence parts count from 1")
    return anomaly_id if part == 1 else f"{anomaly_id}.part{part}"


def write_evidence(
    state_dir: Path,
    anomaly_summary: Mapping[str, Any],
    frames: Sequence[Frame],
    *,
    window: EvidenceWindow | None = None,
    t0: float | None = None,
) -> EvidenceFiles:
    """Write `<stem>.csv` and `<stem>.json`; returns their paths.

    The anomaly id is `anomaly_summary["id"]` (or `["anomaly_id"]`). `mono_offset_s` in the CSV is
    seconds from `t0`: by default the anomaly's `started_mono` when the summary has it (so pre frames
    are negative), else the first frame.
    """
    anomaly_id = str(anomaly_summary.get("id", anomaly_summary.get("anomaly_id", "")))
    part = window.part if window is not None else 1
    stem = evidence_stem(anomaly_id, part)
    directory = evidence_dir(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if t0 is None:
        started = anomaly_summary.get("started_mono")
        t0 = float(started) if isinstance(started, int | float) else (frames[0].mono if frames else 0.0)
    channels = list(dict.fromkeys(name for frame in frames for name in frame.values))
    csv_path = directory / f"{stem}.csv"
    json_path = directory / f"{stem}.json"
    origin = t0
    _atomic_write(csv_path, lambda out: _write_csv(out, frames, channels, origin))
    document = {
        "anomaly": _jsonable(anomaly_summary),
        "evidence": _evidence_info(csv_path.name, frames, channels, window, part, t0),
    }
    text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"
    _atomic_write(json_path, lambda out: out.write(text))
    _fsync_dir(directory)
    return EvidenceFiles(csv_path, json_path, len(frames))


async def write_evidence_async(
    state_dir: Path,
    anomaly_summary: Mapping[str, Any],
    frames: Sequence[Frame],
    *,
    window: EvidenceWindow | None = None,
    t0: float | None = None,
) -> EvidenceFiles:
    return await asyncio.to_thread(write_evidence, state_dir, anomaly_summary, frames, window=window, t0=t0)


def remove_stale_tmp(state_dir: Path) -> int:
    """Delete temporary files a crash left behind mid-write; returns how many."""
    directory = evidence_dir(state_dir)
    removed = 0
    if directory.is_dir():
        for path in directory.glob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def wall_iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="microseconds")


def _write_csv(out: TextIO, frames: Sequence[Frame], channels: list[str], t0: float) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *channels])
    for frame in frames:
        values = frame.values
        writer.writerow(
            [
                wall_iso(frame.wall),
                f"{frame.mono - t0:.6f}",
                "" if frame.device_time is None else repr(frame.device_time),
                *(repr(values[c]) if c in values else "" for c in channels),
            ]
        )


def _evidence_info(
    csv_name: str,
    frames: Sequence[Frame],
    channels: list[str],
    window: EvidenceWindow | None,
    part: int,
    t0: float,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "csv": csv_name,
        "part": part,
        "final": window.final if window is not None else True,
        "frames": len(frames),
        "channels": channels,
        "sources": sorted({f.source for f in frames}),
        "t0_mono": t0,
        "columns": [*FIXED_COLUMNS, *channels],
    }
    if window is not None:
        info["window"] = {"start_mono": window.start, "end_mono": window.end}
    if frames:
        first, last = frames[0], frames[-1]
        info["first_frame"] = {"mono": first.mono, "wall": wall_iso(first.wall)}
        info["last_frame"] = {"mono": last.mono, "wall": wall_iso(last.wall)}
    result: dict[str, Any] = _jsonable(info)
    return result


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy: dataclasses and mappings as objects, enums by value, datetimes in ISO, NaN and
    infinities as null (strict JSON has neither), and any key that names a secret left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {
            str(k): _jsonable(v)
            for k, v in value.items()
            if not (isinstance(k, str) and k.lower() in SENSITIVE_KEYS)
        }
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [_jsonable(v) for v in items]
    return str(value)


def _atomic_write(path: Path, fill: Callable[[TextIO], object]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _fsync_dir(directory: Path) -> None:
    """Make the renames durable (POSIX: a rename is in the directory, not in the file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
