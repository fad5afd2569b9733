"""`edge-agent export --run ID|--latest [--out FILE]`: one run's recordings in one zip file.

The zip holds the run's segment files as they are (gzip'd CSV: already compressed, so stored, not
compressed again) and `manifest.json`: the run, its steps (with their cards and time spans), its
sources with their channels, and every segment (file, source, step, frames, columns, times, S3 URL if
uploaded). A segment still being written (the agent is running) is included up to its last complete
gzip member, and marked `open`. Works without S3 and without the agent running; reads the state dir
only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from edge_agent.config import config_path_from, load_config
from edge_agent.recorder import csvgz
from edge_agent.recorder.model import (
    OPEN_SUFFIX,
    RECORDINGS_DIR,
    SIDECAR_SUFFIX,
    SegmentInfo,
    open_path,
    run_dir,
)
from edge_agent.recorder.store import SEQUENCE_FILE
from edge_agent.state_files import read_json_state

MANIFEST = "manifest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="ID", help="the run key (a folder of <state_dir>/recordings)")
    which.add_argument("--latest", action="store_true", help="the run recorded most recently")
    which.add_argument("--list", action="store_true", help="list the recorded runs and exit")
    parser.add_argument("--out", metavar="FILE", help="zip file to write (default: <run>.zip here)")


def _records(folder: Path) -> list[tuple[SegmentInfo, Path]]:
    found = []
    for record in sorted(folder.glob("*" + SIDECAR_SUFFIX)):
        if record.name == SEQUENCE_FILE:
            continue
        info = SegmentInfo.from_json(read_json_state(record, what="recording"))
        if info is None:
            continue
        final = folder / info.file
        path = final if final.exists() else open_path(final)
        if path.exists():
            found.append((info, path))
    return sorted(found, key=lambda pair: pair[0].seq)


def runs(root: Path) -> list[tuple[str, float, int]]:
    """(run key, first segment's start, segments) of each recorded run, oldest first."""
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        records = _records(folder)
        if records:
            out.append((records[0][0].run_key, min(i.started_wall for i, _ in records), len(records)))
    return sorted(out, key=lambda r: r[1])


def manifest(run_key: str, records: list[tuple[SegmentInfo, Path]], bench: str) -> dict[str, Any]:
    steps: dict[str, dict[str, Any]] = {}
    sources: dict[str, list[str]] = {}
    for info, _ in records:
        channels = sources.setdefault(info.source, [])
        channels += [c for c in info.channels if c not in channels]
        if info.step is not None:
            step = steps.setdefault(
                info.step, {"title": info.step, "card": info.card, "started_wall": info.started_wall}
            )
            step["ended_wall"] = max(step.get("ended_wall") or 0.0, info.ended_wall or info.started_wall)
    return {
        "run": run_key,
        "bench": bench,
        "exported_at": time.time(),
        "format": "gzip CSV, one member per flush; columns: time_utc, t_s, device time, channels",
        "steps": list(steps.values()),
        "sources": [{"name": n, "channels": c} for n, c in sources.items()],
        "segments": [
            {
                "file": info.file,
                "source": info.source,
                "step": info.step,
                "card": info.card,
                "frames": info.frames if path.name == info.file else None,
                "columns": info.columns,
                "started_wall": info.started_wall,
                "ended_wall": info.ended_wall,
                "state": "finished" if path.name == info.file else "open",
                "recovered": info.recovered,
                "s3_url": info.s3_url,
            }
            for info, path in records
        ],
        "frames": sum(info.frames for info, path in records if path.name == info.file),
    }


def export(root: Path, run_key: str, out: Path, bench: str) -> dict[str, Any]:
    folder = run_dir(root, run_key)
    records = _records(folder)
    if not records:
        raise LookupError(f"no recordings of run {run_key!r} under {root}")
    data = manifest(run_key, records, bench)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for (info, path), entry in zip(records, data["segments"], strict=True):
            if path.name.endswith(OPEN_SUFFIX):  # still being written: up to the last whole member
                good, lines = csvgz.scan(path)
                entry["frames"] = max(0, lines - 1)
                data["frames"] += entry["frames"]
                with path.open("rb") as handle:
                    archive.writestr(info.file, handle.read(good))
            else:
                archive.write(path, info.file)
        archive.writestr(MANIFEST, json.dumps(data, indent=2, sort_keys=True))
    return data


def main(args: argparse.Namespace) -> int:
    config = load_config(config_path_from(args.config))
    root = Path(config.agent.state_dir) / RECORDINGS_DIR
    known = runs(root)
    if args.list:
        for key, started, count in known:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            print(f"{key}\t{stamp}\t{count} segment(s)")
        return 0
    if not known:
        print(f"no recordings under {root}", file=sys.stderr)
        return 1
    run_key = known[-1][0] if args.latest else args.run
    out = Path(args.out) if args.out else Path(f"{run_dir(root, run_key).name}.zip")
    try:
        data = export(root, run_key, out, config.agent.bench)
    except LookupError as exc:
        print(f"{exc}; runs: {', '.join(k for k, _, _ in known)}", file=sys.stderr)
        return 1
    print(f"{out}: {len(data['segments'])} segment(s), {data['frames']} frame(s) of run {run_key}")
    return 0
