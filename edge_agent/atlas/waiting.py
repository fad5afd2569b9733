"""Evidence waiting for Atlas: one durable record per refused upload, and what /status shows of them.

An upload Atlas refused (413, repeated 5xx on the upload path only, a null attachment id) leaves its
files on disk, owned by an `atlas.evidence` outbox job (evidence_retry.py) that retries them in a form
that fits. That job keeps its progress here, in `<state_dir>/reporter/waiting/<incident>.<part>.json`
(the form reached, the pieces already attached, how many refusals, why, the next try), so a restart
resumes where it was, and `/status` lists what waits without reading the outbox.

`accepted-size.json` keeps the largest single upload Atlas accepted: parts are cut under it.
Records and that file are written atomically off the event loop (edge_agent.state_files); a damaged
one is set aside and the retry starts again from the compressed whole file.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.atlas.evidence_forms import EvidencePlan, KeptFile
from edge_agent.evidence.writer import check_stem
from edge_agent.state_files import (
    ensure_private_dir_async,
    read_json_state_async,
    write_json_async,
)
from edge_agent.state_health import StateFileHealth

WAITING_DIR = "waiting"
RECORD_SUFFIX = ".evidence.json"
ACCEPTED_FILE = "accepted-size.json"

WAITING = "waiting"  # retried with backoff
KEPT = "kept"  # retries ran out: on disk for a human, said in a final comment


def waiting_key(incident_id: str, part: str) -> str:
    return check_stem(f"{incident_id}.{part}")


@dataclass(slots=True)
class WaitingRecord:
    key: str
    incident_id: str
    part: str
    since: float  # wall time the evidence was first retried
    plan: EvidencePlan
    failures: int = 0  # refusals in a row of the current form (the backoff's exponent)
    attempts: int = 0
    why: str = ""
    next_try: float | None = None
    state: str = WAITING

    def status(self) -> dict[str, Any]:
        waiting = {self.plan.files[p.file].name for p in self.plan.waiting()}
        return {
            "incident_id": self.incident_id,
            "part": self.part,
            "state": self.state,
            "files": [
                {"name": f.name, "path": f.path, "bytes": f.size, "attached": f.name not in waiting}
                for f in self.plan.files
            ],
            "bytes": sum(f.size for f in self.plan.files if f.name in waiting),
            "why": self.why,
            "attempts": self.attempts,
            "pieces_attached": len(self.plan.attached()),
            "pieces": len(self.plan.pieces),
            "waiting_since_wall": self.since,
            "next_try_wall": self.next_try if self.state == WAITING else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "incident_id": self.incident_id,
            "part": self.part,
            "since": self.since,
            "plan": self.plan.to_json(),
            "failures": self.failures,
            "attempts": self.attempts,
            "why": self.why,
            "next_try": self.next_try,
            "state": self.state,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WaitingRecord:
        return cls(
            key=str(raw["key"]),
            incident_id=str(raw["incident_id"]),
            part=str(raw["part"]),
            since=float(raw["since"]),
            plan=EvidencePlan.from_json(raw["plan"]),
            failures=int(raw.get("failures", 0)),
            attempts=int(raw.get("attempts", 0)),
            why=str(raw.get("why", "")),
            next_try=float(raw["next_try"]) if raw.get("next_try") is not None else None,
            state=str(raw.get("state", WAITING)),
        )


class WaitingEvidence:
    """The records, in memory for /status and on disk in `directory` (None: memory only, for tests of
    a handler alone)."""

    def __init__(self, directory: Path | None, health: StateFileHealth | None = None) -> None:
        self.directory = directory
        self.health = health
        self._records: dict[str, WaitingRecord] = {}
        self.largest_accepted: int | None = None
        self._accepted_lock = asyncio.Lock()

    async def load(self) -> None:
        """At start: every record left by the last run (a restart resumes them) and the accepted size."""
        if self.directory is None:
            return
        await ensure_private_dir_async(self.directory)
        directory = self.directory
        paths = await asyncio.to_thread(lambda: sorted(directory.glob(f"*{RECORD_SUFFIX}")))
        for path in paths:
            raw = await read_json_state_async(path, what="waiting evidence record", health=self.health)
            with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
                if isinstance(raw, dict):
                    record = WaitingRecord.from_json(raw)
                    if await asyncio.to_thread(_any_file_left, record):
                        self._records[record.key] = record
                    else:  # delivered or shed by the outbox's quota since: nothing left to show
                        await asyncio.to_thread(_unlink, path)
        raw = await read_json_state_async(
            directory / ACCEPTED_FILE, what="accepted upload size", health=self.health
        )
        if isinstance(raw, dict) and isinstance(raw.get("largest_bytes"), int):
            self.largest_accepted = int(raw["largest_bytes"])

    def get(self, key: str) -> WaitingRecord | None:
        return self._records.get(key)

    def create(
        self, incident_id: str, part: str, files: list[KeptFile], span_end_s: float | None, now: float
    ) -> WaitingRecord:
        key = waiting_key(incident_id, part)
        record = WaitingRecord(key, incident_id, part, now, EvidencePlan.start(files, span_end_s))
        self._records[key] = record
        return record

    async def save(self, record: WaitingRecord) -> None:
        self._records[record.key] = record
        if self.directory is not None:
            await ensure_private_dir_async(self.directory)
            await write_json_async(self._path(record.key), record.to_json(), health=self.health)

    async def remove(self, key: str) -> None:
        self._records.pop(key, None)
        if self.directory is not None:
            await asyncio.to_thread(_unlink, self._path(key))

    async def accepted(self, size: int) -> None:
        """Atlas accepted one upload of `size` bytes: remember the largest (parts are cut under it)."""
        async with self._accepted_lock:
            if self.largest_accepted is not None and size <= self.largest_accepted:
                return
            self.largest_accepted = size
            if self.directory is not None:
                await ensure_private_dir_async(self.directory)
                await write_json_async(
                    self.directory / ACCEPTED_FILE, {"largest_bytes": size}, health=self.health
                )

    def status(self) -> list[dict[str, Any]]:
        return [r.status() for r in list(self._records.values())]

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{check_stem(key)}{RECORD_SUFFIX}"


def _any_file_left(record: WaitingRecord) -> bool:
    return any(Path(f.path).is_file() for f in record.plan.files)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
