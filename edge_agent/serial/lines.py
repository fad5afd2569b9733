"""Bytes -> complete lines, with a hard bound on what is kept of an unterminated line.

A device that never sends a newline (wrong baud rate, binary mode) must not grow memory: once the
partial line passes `max_bytes` it is dropped and everything up to the next newline is discarded,
then counted as one `too_long` line. `max_bytes` counts the bytes before the `\\n` (a `\\r` included),
so the same line is judged the same way however the stream is chunked.
"""

from __future__ import annotations

from edge_agent.serial.stats import PARTIAL, TOO_LONG, DecodeStats


class LineSplitter:
    __slots__ = ("_discarding", "_partial", "max_bytes", "stats")

    def __init__(self, max_bytes: int, stats: DecodeStats) -> None:
        self.max_bytes = max_bytes
        self.stats = stats
        self._partial = b""
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes held of the current unterminated line (never more than `max_bytes`)."""
        return len(self._partial)

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines within the limit, without their `\\n` (a trailing `\\r` is left to the caller)."""
        stats = self.stats
        if self._discarding:
            newline = data.find(b"\n")
            if newline < 0:
                stats.overflow_bytes += len(data)
                return []
            stats.overflow_bytes += newline
            stats.lines += 1
            stats.skip(TOO_LONG)
            self._discarding = False
            data = data[newline + 1 :]
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        partial = lines.pop()
        limit = self.max_bytes
        if len(partial) > limit:
            stats.overflow_bytes += len(partial)
            partial = b""
            self._discarding = True
        self._partial = partial
        if not lines:
            return lines
        stats.lines += len(lines)
        # One C-level pass finds out whether the rare filtering pass is needed at all.
        if max(map(len, lines)) > limit:
            kept = [line for line in lines if len(line) <= limit]
            for line in lines:
                if len(line) > limit:
                    stats.overflow_bytes += len(line)
                    stats.skip(TOO_LONG)
            return kept
        return lines

    def reset(self) -> None:
        """Forget the unterminated line (the link dropped): it can never be completed."""
        if self._partial or self._discarding:
            self.stats.skip(PARTIAL)
        self._partial = b""
        self._discarding = False
