"""The bench's end of the cable: a raw pseudo-terminal, a stable symlink to it, non-blocking writes.

The slave side is set raw (no echo, no CR/LF translation) and kept open by us, so the pty exists and
buffers output until a reader opens `/dev/pts/N` (or the symlink). Writes never block: when the
kernel buffer is full (nobody reading) the line is dropped and counted, and memory never grows (at
most the unwritten tail of one line is kept, so lines are never torn).

With `flow_control_s` the bench models hardware flow control (RTS/CTS): a full buffer makes the write
wait (blocking, up to that long) for the reader to take bytes, and only then drop the line. It blocks the
writing thread, so it is only for a reader in another process.

Unplug closes the pty and removes the symlink, like a USB adapter vanishing from /dev/serial/by-id.
The next pty is opened before the old one is closed so the kernel cannot hand out the same number:
a replug always comes back as a different `/dev/pts/N` behind the same link (renumbering).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import time
import tty
from pathlib import Path


class LinkPathError(OSError):
    """The symlink path is taken by something that is not a symlink (we never overwrite a file)."""


class _Pty:
    __slots__ = ("master", "path", "slave")

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyPort:
    def __init__(self, link: Path | None, *, flow_control_s: float = 0.0) -> None:
        self.link = link
        self.flow_control_s = flow_control_s
        self._pty: _Pty | None = None
        self._spare: _Pty | None = None  # opened at unplug so the replug gets a new number
        self._tail = b""  # unwritten end of a partly written line
        self.dropped_while_full = 0
        self.bytes_written = 0
        self.ptys_opened = 0

    @property
    def path(self) -> str | None:
        return self._pty.path if self._pty is not None else None

    @property
    def is_open(self) -> bool:
        return self._pty is not None

    def open(self) -> str:
        """Plug in: a pty (the spare if there is one), linked from `link`. Returns its path."""
        if self._pty is not None:
            return self._pty.path
        if self.link is not None and self.link.exists() and not self.link.is_symlink():
            raise LinkPathError(f"{self.link} exists and is not a symlink; not replacing it")
        pty, self._spare = (self._spare or _Pty()), None
        self._pty = pty
        self.ptys_opened += 1
        self._tail = b""
        if self.link is not None:
            self._repoint(pty.path)
        return pty.path

    def _repoint(self, target: str) -> None:
        assert self.link is not None
        self.link.parent.mkdir(parents=True, exist_ok=True)
        temp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        os.symlink(target, temp)
        os.replace(temp, self.link)  # atomic: a reader sees the old target or the new one, never none

    def unplug(self) -> None:
        """Pull the cable: remove the link, close the pty (its reader gets EIO/hang-up)."""
        if self._pty is None:
            return
        self._spare = _Pty()
        self._remove_link(self._pty.path)
        self._pty.close()
        self._pty = None
        self._tail = b""

    def _remove_link(self, target: str) -> None:
        # Only our own link: another simulator may have repointed the path in the meantime.
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == target:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def write(self, data: bytes) -> bool:
        """Write one line without blocking (or, with flow control, waiting up to `flow_control_s` for
        room). False = dropped (buffer full or unplugged)."""
        pty = self._pty
        if pty is None:
            return False
        deadline = time.monotonic() + self.flow_control_s
        while True:
            try:
                if self._tail:
                    written = os.write(pty.master, self._tail)
                    self.bytes_written += written
                    self._tail = self._tail[written:]
                    if self._tail:
                        raise BlockingIOError  # the line before this one is not out yet
                written = os.write(pty.master, data)
                break
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.dropped_while_full += 1
                    return False
                select.select([], [pty.master], [], remaining)  # flow control: wait for the reader
        self.bytes_written += written
        if written < len(data):
            self._tail = data[written:]
        return True

    def unread_bytes(self) -> int:
        """Bytes written that no reader has taken yet (the slave's input queue, FIONREAD)."""
        if self._pty is None:
            return 0
        try:
            raw = fcntl.ioctl(self._pty.slave, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0]) + len(self._tail)

    def drain_input(self) -> int:
        """Discard what the reader sent us, so its writes never block on a full buffer."""
        if self._pty is None:
            return 0
        total = 0
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self._pty.master, 65536):
                total += len(chunk)
        return total

    def close(self) -> None:
        if self._pty is not None:
            self._remove_link(self._pty.path)
            self._pty.close()
            self._pty = None
        if self._spare is not None:
            self._spare.close()
            self._spare = None
