"""The reporter's durable records in `<state_dir>/reporter/` (through edge_agent.state_files):

- `run.json`: the bench run (its id, Atlas session title and job/id, whether it ended cleanly). An agent
  restarted after an unclean exit continues the same run and Atlas session.
- `threads.json`: per incident signature (lead rule kind, source, channel), the issue it was last filed
  as and when that issue last saw activity: what decides whether a new incident is a repeat.
- `open/<incident-id>.json`: one per incident from before its jobs are enqueued until its closing
  comment is; records left by a crash are closed at the next start as "agent restarted".

A damaged record is set aside by state_files (renamed `.damaged-<UTC>`, logged, counted) and the
reporter starts without it; every write runs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.evidence.writer import check_stem
from edge_agent.state_files import (
    ensure_private_dir_async,
    read_json_state_async,
    write_json_async,
)
from edge_agent.state_health import StateFileHealth

REPORTER_DIR = "reporter"
RUN_FILE = "run.json"
THREADS_FILE = "threads.json"
OPEN_DIR = "open"
# Readable names of the last incidents, kept to make a name unique when two incidents of the same lead
# start in the same second (a flapping channel with join_window 0); older names cannot collide again.
RECENT_NAMES = 64


@dataclass(slots=True)
class RunRecord:
    run_id: str
    bench: str
    started_wall: float
    session_title: str
    session_job: int | None = None
    session_id: str | None = None
    ended_wall: float | None = None
    restarts: int = 0
    recent_names: dict[str, int] = field(default_factory=dict)

    def unique_name(self, base: str) -> str:
        """`base`, or `base-2`, `base-3`... if an earlier incident of this run already has it."""
        count = self.recent_names.get(base, 0) + 1
        self.recent_names[base] = count
        while len(self.recent_names) > RECENT_NAMES:
            self.recent_names.pop(next(iter(self.recent_names)))
        return base if count == 1 else f"{base}-{count}"


@dataclass(slots=True)
class Thread:
    """The issue an incident signature was last filed as (created, or joined as a repeat)."""

    incident_id: str  # the last incident filed under it: its tag is on the issue
    issue_job: int | None
    issue_id: str | None
    title: str
    last_activity_wall: float
    last_activity_mono: float
    process: str  # which agent process measured last_activity_mono (monotonic times do not survive it)

    def within(self, window: float, started_mono: float, started_wall: float, process: str) -> bool:
        """Whether an incident that started then is within `window` of this issue's last activity: on
        the monotonic timeline in the same process, else on the wall clock (either way round: a wall
        clock stepped back by more than the window cannot attach a fault to an old issue)."""
        if process == self.process and math.isfinite(self.last_activity_mono):
            return started_mono - self.last_activity_mono <= window
        return abs(started_wall - self.last_activity_wall) <= window


class ReporterRecords:
    def __init__(self, state_dir: Path, health: StateFileHealth | None = None) -> None:
        self.dir = Path(state_dir) / REPORTER_DIR
        self.health = health

    async def prepare(self) -> None:
        await ensure_private_dir_async(self.dir / OPEN_DIR)

    # -- run ----------------------------------------------------------------------------------------

    async def load_run(self) -> RunRecord | None:
        raw = await read_json_state_async(self.dir / RUN_FILE, what="reporter run", health=self.health)
        if not isinstance(raw, dict):
            return None
        known = {k: v for k, v in raw.items() if k in RunRecord.__dataclass_fields__}
        try:
            return RunRecord(**known)
        except TypeError:
            return None

    async def save_run(self, run: RunRecord) -> None:
        await write_json_async(self.dir / RUN_FILE, asdict(run), health=self.health)

    # -- threads ------------------------------------------------------------------------------------

    async def load_threads(self) -> dict[str, Thread]:
        raw = await read_json_state_async(
            self.dir / THREADS_FILE, what="reporter threads", health=self.health
        )
        threads: dict[str, Thread] = {}
        if isinstance(raw, dict):
            for signature, entry in raw.items():
                if not isinstance(entry, dict):
                    continue
                known = {k: v for k, v in entry.items() if k in Thread.__dataclass_fields__}
                with contextlib.suppress(TypeError):
                    threads[str(signature)] = Thread(**known)
        return threads

    async def save_threads(self, threads: dict[str, Thread]) -> None:
        data = {signature: asdict(thread) for signature, thread in threads.items()}
        await write_json_async(self.dir / THREADS_FILE, data, health=self.health)

    # -- open incidents -----------------------------------------------------------------------------

    def open_path(self, incident_id: str) -> Path:
        return self.dir / OPEN_DIR / f"{check_stem(incident_id)}.json"

    async def save_open(self, incident_id: str, record: dict[str, Any]) -> None:
        await write_json_async(self.open_path(incident_id), record, health=self.health)

    async def remove_open(self, incident_id: str) -> None:
        await asyncio.to_thread(_unlink, self.open_path(incident_id))

    async def open_records(self) -> list[dict[str, Any]]:
        """Every open-incident record left on disk (a crash), oldest name first; damaged ones set aside."""
        paths = await asyncio.to_thread(lambda: sorted((self.dir / OPEN_DIR).glob("*.json")))
        records = []
        for path in paths:
            record = await read_json_state_async(path, what="open incident record", health=self.health)
            if isinstance(record, dict) and isinstance(record.get("summary"), dict):
                records.append(record)
        return records


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
