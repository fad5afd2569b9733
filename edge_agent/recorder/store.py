"""The recordings on disk: reading the segment records at start, finishing segments a crash left
open, deleting segments. Blocking (the Recorder runs these in a worker thread).

Layout: `<state_dir>/recordings/<run>/<seq>_<source>_<step>.csv.gz` with its record `<...>.json`;
`<...>.csv.gz.part` while open.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from edge_agent.logs import get_logger
from edge_agent.recorder import csvgz
from edge_agent.recorder.model import (
    OPEN_SUFFIX,
    SEGMENT_SUFFIX,
    SIDECAR_SUFFIX,
    SegmentInfo,
    open_path,
    run_dir,
    sidecar_path,
)
from edge_agent.state_files import (
    fsync_dir,
    read_json_state,
    remove_stale_temps,
    write_json,
)
from edge_agent.state_health import StateFileHealth

log = get_logger(__name__)

SEQUENCE_FILE = "sequence.json"  # the last sequence number a run used: numbers (and S3 keys) never repeat


def next_seq(folder: Path) -> int:
    """The next segment number of a run, after every one it ever used (deleted ones included)."""
    last = 0
    raw = read_json_state(folder / SEQUENCE_FILE, what="recording sequence")
    if isinstance(raw, dict) and isinstance(raw.get("last"), int):
        last = raw["last"]
    if folder.is_dir():
        for entry in folder.iterdir():
            head = entry.name.split("_", 1)[0]
            if head.isdigit() and SEGMENT_SUFFIX in entry.name:
                last = max(last, int(head))
    return last + 1


def note_seq(folder: Path, seq: int, health: StateFileHealth | None = None) -> None:
    write_json(folder / SEQUENCE_FILE, {"last": seq}, health=health)


def load_all(root: Path) -> list[SegmentInfo]:
    """Every segment record under `root`, segments left open by a crash finished first (`recover`).
    Ordered by start time."""
    found: list[SegmentInfo] = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        remove_stale_temps(folder)
        for record in sorted(folder.glob("*" + SIDECAR_SUFFIX)):
            if record.name == SEQUENCE_FILE:
                continue
            info = SegmentInfo.from_json(read_json_state(record, what="recording"))
            if info is None:
                continue
            path = folder / info.file
            if info.state == "open":
                recovered = recover(path, info)
                if recovered is None:
                    continue
                info = recovered
            elif not path.exists():
                record.unlink(missing_ok=True)  # deleted by the budget; its record went astray
                continue
            found.append(info)
        for orphan in folder.glob("*" + OPEN_SUFFIX):  # no record: the crash came before it was written
            name = orphan.name.removesuffix(OPEN_SUFFIX)
            if not sidecar_path(folder / name).exists():
                orphan.unlink(missing_ok=True)
    found.sort(key=lambda i: (i.started_wall, i.seq))
    return found


def recover(path: Path, info: SegmentInfo) -> SegmentInfo | None:
    """Finish a segment a crash left open: cut its file after the last complete gzip member, count
    its rows, rename it and mark its record finished (`recovered`). None when nothing survived."""
    part = open_path(path)
    source = part if part.exists() else path
    if not source.exists():
        sidecar_path(path).unlink(missing_ok=True)
        return None
    good, lines = csvgz.scan(source)
    frames = max(0, lines - 1)  # the header is a line
    if good == 0 or frames == 0:
        source.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)
        log.warning("recording_recovered_empty", file=info.file)
        return None
    with open(source, "r+b") as handle:
        handle.truncate(good)
        handle.flush()
        os.fsync(handle.fileno())
    if source != path:
        os.replace(source, path)
        fsync_dir(path.parent)
    lost_bytes = info.bytes - good if info.bytes > good else 0
    info.frames, info.bytes = frames, good
    info.state, info.finish_reason, info.recovered = "finished", "recovered", True
    write_json(sidecar_path(path), info.as_json())
    log.warning("recording_recovered", file=info.file, frames=frames, bytes=good, cut_bytes=lost_bytes)
    return info


def delete(root: Path, info: SegmentInfo) -> None:
    folder = root / _folder_of(root, info)
    path = folder / info.file
    path.unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # the run's last segment: the folder goes too


def save(root: Path, info: SegmentInfo, health: StateFileHealth | None = None) -> None:
    write_json(sidecar_path(root / _folder_of(root, info) / info.file), info.as_json(), health=health)


def _folder_of(root: Path, info: SegmentInfo) -> str:
    return run_dir(root, info.run_key).name


def path_of(root: Path, info: SegmentInfo) -> Path:
    return root / _folder_of(root, info) / info.file
