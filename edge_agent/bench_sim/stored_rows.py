"""A sealed evidence block's rows as the agent stores them at 3 Mbaud (for the packing benchmark and its
test): reads of ~100 60-byte lines every ~20 ms, each line's mono spread over its read's bytes
(edge_agent/serial/clock.py), the read's wall time on all of them, a counter column and 8 channels,
steady (as the whole-agent bench writes them) or with 4-decimal noise."""

from __future__ import annotations

import random
from array import array

WIDTH = 11  # mono, wall, a counter and 8 channels
BLOCK_ROWS = 2978  # a 256 KiB block of those rows


def agent_rows(noisy: bool, rows: int = BLOCK_ROWS, seed: int = 1) -> array[float]:
    """`rows` rows of WIDTH doubles, seeded."""
    rng = random.Random(seed)
    line_s = 60 * 10 / 3_000_000
    data = array("d")
    mono, k = 33707.466, 98274
    while len(data) < rows * WIDTH:
        lines = rng.randint(90, 110)
        read = mono + lines * line_s + rng.uniform(0.0, 0.002)
        for i in range(lines):
            at = read - (lines - 1 - i) * (read - mono) / lines
            if noisy:
                values = [round(1.0 + c * 0.1 + rng.gauss(0.0, 0.01), 4) for c in range(8)]
            else:
                values = [1.0 + c * 0.1 for c in range(8)]
            data.extend([at, 1_796_200_288.0 + read, float(k), *values])
            k += 1
        mono = read
    return data[: rows * WIDTH]
