"""The one way the agent writes and reads its state files (`<state_dir>/...`).

Writes are whole or nothing: the bytes go to a hidden temp file beside the target (`.<name>.<random>.tmp`),
which is fsynced, renamed over the target (`os.replace`), and the directory is fsynced so the rename
survives a power cut. A crash leaves the old file or the new one, never half of one; a failed write
(disk full) removes its temp file and raises. Files are 0600 and the folders this module creates 0700,
whatever the process umask: state files hold session ids, run ids and evidence of the bench, and
outside systemd (a container, a shell) the umask is usually 022.

Every call that touches the disk has an `_async` twin that runs it in a worker thread
(`asyncio.to_thread`): an fsync can take hundreds of milliseconds on an SD card or a busy disk, and the
event loop carries the serial reader.

Reads treat a damaged file (not UTF-8, not JSON, empty: power loss on a filesystem without data
journalling, a full disk, a human with an editor) as "no state": the file is set aside as
`<name>.damaged-<UTC timestamp>` for a human, logged once (`state_file_damaged`), counted in a
`StateFileHealth`, and the caller starts fresh. A state file must never stop the agent from starting:
under systemd that is a crash loop that ends with the unit given up.

`StateFileHealth` also tracks writes that fail for lack of space (ENOSPC, EDQUOT): `disk_full` is set at
the first such failure (logged once) and cleared when every path that failed has been written since
(logged once). The process has one state directory, so one health object per process is the default
(`STATE_HEALTH`); a component (or a test) can be given its own with the `health=` argument.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edge_agent.logs import get_logger

log = get_logger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
TMP_SUFFIX = ".tmp"
DAMAGED_INFIX = ".damaged-"
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
                "disk_full_since": self._full_since,
                "writes_waiting_for_space": sorted(self._full)[:MAX_DAMAGED_SHOWN],
                "write_failures_no_space": self.write_failures_total,
                "damaged_total": self.damaged_total,
                "damaged": [
                    {"what": d.what, "path": d.path, "aside": d.aside, "reason": d.reason, "at": d.wall}
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


# --- folders -------------------------------------------------------------------------------------------


def ensure_private_dir(path: Path) -> None:
    """Make `path` (and missing parents) a directory of mode 0700; an existing one is tightened too."""
    path = Path(path)
    _make_dirs(path)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode != DIR_MODE:
        try:
            os.chmod(path, DIR_MODE)
        except OSError as exc:  # not ours, or a read-only mount: whether it is usable is not ours to say
            log.warning("state_dir_mode_not_private", path=str(path), mode=oct(mode), error=str(exc))


def _make_dirs(path: Path) -> None:
    """mkdir -p with 0700 on every folder it creates (Path.mkdir(parents=True) gives the parents the
    umask's default mode) and whatever the umask (os.mkdir's mode is masked by it)."""
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, DIR_MODE)


async def ensure_private_dir_async(path: Path) -> None:
    await asyncio.to_thread(ensure_private_dir, path)


# --- writing -------------------------------------------------------------------------------------------


def write_atomic_stream(
    path: Path, fill: Callable[[IO[bytes]], object], *, health: StateFileHealth | None = None
) -> None:
    """The one atomic write: `fill` writes the content into the temp file (a binary stream), which then
    replaces `path` (module doc). Blocking. On any error the temp file is removed and the error raised."""
    path = Path(path)
    tracker = health or STATE_HEALTH
    try:
        _make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        tracker.note_write_failed(path, exc)
        raise
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)  # mkstemp's 0600 is masked by a umask such as 0o777
            fill(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            tracker.note_write_failed(path, exc)
        raise
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        tracker.note_write_failed(path, exc)
        raise
    tracker.note_write_ok(path)


def write_atomic(path: Path, data: bytes, *, health: StateFileHealth | None = None) -> None:
    """Replace `path` with `data`, whole or nothing, mode 0600 (module doc). Blocking."""
    write_atomic_stream(path, lambda out: out.write(data), health=health)


async def write_atomic_async(path: Path, data: bytes, *, health: StateFileHealth | None = None) -> None:
    """`write_atomic` in a worker thread: the event loop never waits on the fsyncs."""
    await asyncio.to_thread(write_atomic, path, data, health=health)


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable (POSIX: a rename is in the directory, not in the file)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(directory: Path) -> int:
    """Delete the temp files a crash left behind mid-write in `directory`; returns how many."""
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(directory):
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


# --- JSON ----------------------------------------------------------------------------------------------


def dump_json(obj: Any) -> bytes:
    """Strict JSON (sorted keys, no NaN/Infinity) as UTF-8 bytes. A value JSON cannot hold raises
    ValueError (non-finite number) or TypeError (unknown type) naming where it is, e.g. `$.spans.a.end`."""
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        where = _find_bad_value(obj, "$")
        raise ValueError(f"{exc} at {where}" if where else str(exc)) from None
    except TypeError as exc:
        where = _find_bad_value(obj, "$")
        raise TypeError(f"{exc} at {where}" if where else str(exc)) from None


def _find_bad_value(value: Any, here: str, depth: int = 0) -> str | None:
    if depth > 200:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else here
    if isinstance(value, str | int | bool) or value is None:
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_bad_value(item, f"{here}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_bad_value(item, f"{here}[{index}]", depth + 1)
            if found:
                return found
        return None
    return here  # a type json cannot encode


def write_json(path: Path, obj: Any, *, health: StateFileHealth | None = None) -> None:
    """`dump_json` then `write_atomic`; the encoding error (if any) is raised before the disk is touched."""
    write_atomic(path, dump_json(obj), health=health)


async def write_json_async(path: Path, obj: Any, *, health: StateFileHealth | None = None) -> None:
    # Encoded on the loop: `obj` may be the caller's live dict, which must not change under a thread.
    await write_atomic_async(path, dump_json(obj), health=health)


# --- reading -------------------------------------------------------------------------------------------


class DamagedStateError(ValueError):
    """A state file's bytes are not strict JSON; the message says why."""


def _reject_constant(name: str) -> Any:
    raise DamagedStateError(f"non-finite number {name} (never written by the agent)")


def read_json_state(path: Path, *, what: str, health: StateFileHealth | None = None) -> Any | None:
    """The decoded JSON of `path`; None when it is absent, or damaged (then set aside, logged once and
    counted: module doc). Whether the top-level value has the right shape is the caller's to check
    (`set_aside` a wrong one). An OSError other than "absent" (permissions, EIO) is raised: that is the
    environment, not the file, and moving the file would not help."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return parse_json_state(raw)
    except DamagedStateError as exc:
        set_aside(path, str(exc), what=what, health=health)
        return None


def parse_json_state(raw: bytes) -> Any:
    """Decode a state file's bytes; raises `DamagedStateError` (the reason) for anything not strict JSON."""
    if not raw.strip():
        raise DamagedStateError("empty file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DamagedStateError(f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise DamagedStateError(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise DamagedStateError("not JSON the agent writes (nested too deeply)") from None


async def read_json_state_async(
    path: Path, *, what: str, health: StateFileHealth | None = None
) -> Any | None:
    return await asyncio.to_thread(read_json_state, path, what=what, health=health)


def set_aside(path: Path, reason: str, *, what: str, health: StateFileHealth | None = None) -> Path | None:
    """Rename a damaged (or foreign-shaped) state file to `<name>.damaged-<UTC timestamp>` beside it,
    log it once and count it; returns the new path (None if even the rename failed, which is logged)."""
    path = Path(path)
    tracker = health or STATE_HEALTH
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    aside: Path | None = None
    error = ""
    for n in range(1, 100):
        candidate = path.with_name(f"{path.name}{DAMAGED_INFIX}{stamp}" + ("" if n == 1 else f"-{n}"))
        if candidate.exists():
            continue
        try:
            os.rename(path, candidate)
            with contextlib.suppress(OSError):
                os.chmod(candidate, FILE_MODE)  # kept for a human, as private as what it replaced
                fsync_dir(path.parent)
            aside = candidate
        except OSError as exc:
            error = str(exc)
        break
    record = DamagedFile(what, str(path), str(aside) if aside else None, reason, tracker.wall())
    tracker.note_damaged(record)
    log.error(
        "state_file_damaged",
        what=what,
        path=str(path),
        reason=reason,
        set_aside_as=str(aside) if aside else None,
        **({"rename_error": error} if error else {}),
    )
    return aside


async def set_aside_async(
    path: Path, reason: str, *, what: str, health: StateFileHealth | None = None
) -> Path | None:
    return await asyncio.to_thread(set_aside, path, reason, what=what, health=health)
