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
`StateFileHealth` (state_health.py), and the caller starts fresh. A state file must never stop the agent
from starting: under systemd that is a crash loop that ends with the unit given up. Writes that fail for
lack of space are counted there too (`disk_full`); without a `health=` argument, in `STATE_HEALTH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from edge_agent.logs import get_logger
from edge_agent.state_health import STATE_HEALTH, DamagedFile, StateFileHealth

log = get_logger(__name__)

FILE_MODE = 0o600
DIR_MODE = 0o700
TMP_SUFFIX = ".tmp"
DAMAGED_INFIX = ".damaged-"


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
