"""A raw pseudo-terminal for the tests that play a serial device, reached through a link of its own
(imported by name: tests/serial/conftest.py and tests/service_e2e/agent_harness.py put this folder on
sys.path, since pytest runs with --import-mode=importlib)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import tty


class LinkedPty:
    """The device side is `master` (non-blocking); readers open `path`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing: what is written arrives byte for byte
        # Readers get a link of this pty's own, never `/dev/pts/N`: the kernel hands a freed N to the
        # next pty opened, on any test worker, and a reader still retrying it would read that one.
        self._dir = tempfile.mkdtemp(prefix="pty-")
        self.device = os.ttyname(self.slave)
        self.path = os.path.join(self._dir, "ttyTEST")
        os.symlink(self.device, self.path)
        os.set_blocking(self.master, False)

    def unlink_and_close(self) -> None:
        """Unplug: the link goes, then the device side and our handle on the slave."""
        shutil.rmtree(self._dir, ignore_errors=True)  # first: nobody may open the freed N through it
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
