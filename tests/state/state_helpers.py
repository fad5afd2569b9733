"""A real small filesystem for disk-full tests: a tmpfs of a few MB mounted for the test (root only;
CI runs as root). `fill_up` takes every free byte, `free_up` gives it back."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler.bin"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the suite as root)")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    require_root()
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_up(directory: Path, *, leave: int = 0) -> int:
    """Write a filler file until the filesystem refuses (ENOSPC); then give back `leave` bytes.
    Returns the filler's size."""
    filler = directory / FILLER
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for _ in range(1_000_000):  # bounded: 64 GB
            try:
                if os.write(fd, chunk) == 0:
                    break
            except OSError:
                break
    finally:
        os.close(fd)
    size = filler.stat().st_size
    if leave:
        os.truncate(filler, max(0, size - leave))
    return size


def free_up(directory: Path) -> None:
    (directory / FILLER).unlink(missing_ok=True)


def modes_not_private(root: Path) -> list[str]:
    """Every file under `root` that is not 0600 and every folder that is not 0700 (`root` included)."""
    wrong = []
    for path in [root, *sorted(root.rglob("*"))]:
        mode = path.stat().st_mode & 0o777
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong.append(f"{path.relative_to(root.parent)}: {oct(mode)}")
    return wrong
