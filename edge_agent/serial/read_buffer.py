"""The bytes between a port's reader thread and the event loop (the `fd` pump: edge_agent/serial/fd_pump.py).

One fixed buffer a port, allocated once: the thread reads into its free space (`os.readv` straight into
it), the loop takes what the thread has published as one `bytes`, in the order read. So the thread
allocates nothing per read, and what the loop decodes is allocated by the loop. Measured, that is what
keeps the thread's reads off the heap: when each read was a `bytes` of its own, made in the thread and
freed on the loop, glibc kept them in the threads' malloc arena, and under a flood of wide JSON lines
that arena grew to ~3 MB, nearly all free and still resident (malloc_info), the ~2-3 MB the reader's
thread added to the wide-JSON RSS (bench/RESULTS.md). The buffer is above glibc's mmap threshold, so it
is a mapping of its own, never part of an arena.

Its size is the bound on what the thread may read ahead of the loop (THREAD_MAX_IN_FLIGHT): when it is
full the thread waits and the bytes wait in the driver, as they would for a loop reading for itself.
The thread writes only into the free space, the loop copies only published bytes, and the positions
change under one lock, so neither touches bytes the other may be using.
"""

from __future__ import annotations

import threading


class ReadBuffer:
    """A fixed ring of `capacity` bytes: one writer thread (`free_space`, `wrote`, `publish`), one
    reader (`take`, on the loop)."""

    __slots__ = ("_buf", "_cond", "_published", "_start", "_view", "_written", "capacity", "peak", "waits")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a read buffer needs at least one byte")
        self.capacity = capacity
        self._buf = bytearray(capacity)
        self._view = memoryview(self._buf)
        self._start = 0  # where the oldest byte not yet taken is
        self._published = 0  # bytes from _start the loop may take
        self._written = 0  # bytes after those, read by the thread and not yet published (held)
        self.peak = 0  # the most bytes read and not yet taken at once
        self.waits = 0  # times the thread found the buffer full and waited for the loop
        self._cond = threading.Condition()

    @property
    def in_flight(self) -> int:
        """Bytes read and not yet taken (published or held)."""
        return self._published + self._written

    @property
    def full(self) -> bool:
        """No room to read into (read by the thread without the lock: only the loop changes it
        meanwhile, and it only makes room)."""
        return self._published + self._written == self.capacity

    def free_space(self, most: int, stop: threading.Event, poll: float) -> list[memoryview]:
        """The thread: views of up to `most` free bytes, in order (two where the space wraps), to read
        into; waits while the buffer is full. [] if `stop` was set while waiting."""
        with self._cond:
            if self.in_flight == self.capacity:
                self.waits += 1
                while self.in_flight == self.capacity:
                    if stop.is_set():
                        return []
                    self._cond.wait(poll)
            capacity = self.capacity
            end = (self._start + self.in_flight) % capacity
            free = min(most, capacity - self.in_flight)
        view = self._view
        first = min(free, capacity - end)
        if first == free:
            return [view[end : end + free]]
        return [view[end:], view[: free - first]]

    def wrote(self, nbytes: int) -> None:
        """The thread: `nbytes` were read into the views `free_space` gave (held until `publish`)."""
        with self._cond:
            self._written += nbytes

    def publish(self) -> int:
        """The thread (or the loop, once the thread has ended): everything written may now be taken.
        Returns the bytes published and not yet taken."""
        with self._cond:
            self._published += self._written
            self._written = 0
            self.peak = max(self.peak, self._published)
            return self._published

    def take(self) -> bytes:
        """The loop: everything published, as one `bytes` (b"" if nothing is); its space is freed."""
        with self._cond:
            start, count = self._start, self._published
        if not count:
            return b""
        # [start, start + count) is published: the thread writes only after it, so it is copied
        # outside the lock.
        view, capacity = self._view, self.capacity
        end = start + count
        data = bytes(view[start:end]) if end <= capacity else b"".join((view[start:], view[: end - capacity]))
        with self._cond:
            self._start = end % capacity
            self._published -= count
            self._cond.notify()
        return data

    def wake(self) -> None:
        """Wake a thread waiting in `free_space` (its stop flag was just set)."""
        with self._cond:
            self._cond.notify_all()


def copy_into(space: list[memoryview], data: bytes) -> int:
    """`data` (at most the space's length) written into `space`'s views (`ReadBuffer.free_space`) in
    order; its length: for a reader whose port hands it `bytes` instead of reading into the buffer."""
    done = 0
    for view in space:
        part = data[done : done + len(view)]
        view[: len(part)] = part
        done += len(part)
    return done
