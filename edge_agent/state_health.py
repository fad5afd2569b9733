"""The health of the state files (state_files.py), for /status, /readyz and the metrics.

`StateFileHealth` counts the damaged state files found (each set aside and logged once by
state_files.py) and tracks writes that fail for lack of space (ENOSPC, EDQUOT): `disk_full` is set at
the first such failure (logged once) and cleared when every path that failed has been written since
(logged once). The process has one state directory, so one health object per process is the default
(`STATE_HEALTH`); a component (or a test) can be given its own with the `health=` argument.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.logs import get_logger

# The events stay on the logger they have always been logged under.
log = get_logger("edge_agent.state_files")

# Errors that mean "no space", as opposed to a broken disk or a permission problem.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
MAX_DAMAGED_SHOWN = 20
MAX_FULL_PATHS = 1000


@dataclass(frozen=True, slots=True)
class DamagedFile:
    what: str
    path: str
    aside: str | None  # None: it could not even be moved (then it is read as damaged at every start)
    reason: str
    wall: float


class StateFileHealth:
    """Counts of damaged state files found and of writes refused for lack of space. Thread-safe: the
    writes run in worker threads. `status()` is for /status, the properties for metrics and /readyz."""

    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self.wall = wall
        self.damaged_total = 0
        self.damaged: deque[DamagedFile] = deque(maxlen=MAX_DAMAGED_SHOWN)
        self.write_failures_total = 0
        self.disk_full_episodes = 0
        # Paths whose last write failed for lack of space -> the error. Empty: the disk takes writes.
        self._full: dict[str, str] = {}
        self._full_since: float | None = None

    @property
    def disk_full(self) -> bool:
        return bool(self._full)

    def note_damaged(self, record: DamagedFile) -> None:
        with self._lock:
            self.damaged_total += 1
            self.damaged.append(record)

    def note_write_failed(self, path: Path, exc: OSError) -> None:
        if exc.errno not in NO_SPACE_ERRNOS:
            return
        with self._lock:
            self.write_failures_total += 1
            first = not self._full
            if len(self._full) < MAX_FULL_PATHS or str(path) in self._full:
                self._full[str(path)] = f"{errno.errorcode.get(exc.errno or 0, '?')}: {exc.strerror}"
            if first:
                self._full_since = self.wall()
                self.disk_full_episodes += 1
        if first:
            log.error("disk_full", path=str(path), error=str(exc), kept_for_retry=True)

    def note_no_space(self, path: Path, error: str) -> None:
        """A write refused for lack of space that is not an OSError (SQLite's SQLITE_FULL)."""
        self.note_write_failed(path, OSError(errno.ENOSPC, error))

    def note_write_ok(self, path: Path) -> None:
        if not self._full:  # the common case: no lock, no work
            return
        with self._lock:
            cleared = self._full.pop(str(path), None) is not None and not self._full
            since = self._full_since
            if cleared:
                self._full_since = None
        if cleared:
            log.warning("disk_space_returned", path=str(path), full_for_s=_age(since, self.wall()))

    def forget_write(self, path: Path) -> None:
        """A writer gave up on `path` (it will not be retried): it no longer holds the disk-full flag."""
        with self._lock:
            self._full.pop(str(path), None)
            if not self._full:
                self._full_since = None

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "disk_full": bool(self._full),
                "disk_full_since_wall": self._full_since,
                "writes_waiting_for_space": sorted(self._full)[:MAX_DAMAGED_SHOWN],
                "write_failures_no_space": self.write_failures_total,
                "damaged_total": self.damaged_total,
                "damaged": [
                    {
                        "what": d.what,
                        "path": d.path,
                        "aside": d.aside,
                        "reason": d.reason,
                        "set_aside_wall": d.wall,
                    }
                    for d in self.damaged
                ],
            }


STATE_HEALTH = StateFileHealth()


def is_no_space(exc: BaseException) -> bool:
    """An error that means the disk (or the quota) is full."""
    if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
        return True
    text = str(exc).lower()
    return "disk is full" in text or "no space left" in text


def _age(since: float | None, now: float) -> float | None:
    return None if since is None else round(max(0.0, now - since), 3)
