"""How the evidence ring's sealed blocks are packed (edge_agent/evidence/packing.py): any doubles come
back bit for bit, the mono column alone as well, and blocks made as the agent makes them at 3 Mbaud
pack to a fraction of what zlib of their rows (the format before) took."""

from __future__ import annotations

import math
import random
import struct
import zlib
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.evidence.packing import pack_rows, unpack_monos, unpack_rows

CHANNELS = 9  # a counter and 8 channels, as bench/soak_lib/agent_bench.py writes them
WIDTH = 2 + CHANNELS
ROWS = 2978  # a 256 KiB block of those rows


def bits(data: array[float]) -> bytes:
    return data.tobytes()


doubles = st.integers(0, 2**64 - 1).map(lambda n: struct.unpack("<d", n.to_bytes(8, "little"))[0])


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(1, 12),
    times=st.integers(0, 3),
    rows=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    pick=st.lists(doubles, min_size=1, max_size=40),
)
def test_any_doubles_come_back_bit_for_bit(
    width: int, times: int, rows: int, seed: int, pick: list[float]
) -> None:
    """Any bit patterns (NaN payloads, -0.0, infinities, subnormals), times that go back and repeat."""
    times = min(times, width)
    rng = random.Random(seed)
    data = array("d", (rng.choice(pick) for _ in range(rows * width)))
    packed = pack_rows(data, width, times)
    assert bits(unpack_rows(packed, rows, width, times)) == bits(data)
    if times:
        assert bits(unpack_monos(packed, rows)) == bits(data[0::width])


def agent_rows(noisy: bool, seed: int = 1) -> array[float]:
    """A block's rows as the agent stores them at 3 Mbaud: reads of ~100 60-byte lines every ~20 ms,
    each line's mono spread over its read's bytes (edge_agent/serial/clock.py), the read's wall time on
    all of them, a counter column and 8 channels, steady (as the whole-agent bench writes them) or
    with 4-decimal noise."""
    rng = random.Random(seed)
    line_s = 60 * 10 / 3_000_000
    data = array("d")
    mono, k = 33707.466, 98274
    while len(data) < ROWS * WIDTH:
        lines = rng.randint(90, 110)
        read = mono + lines * line_s + rng.uniform(0.0, 0.002)
        wall = 1_796_200_288.0 + read
        for i in range(lines):
            at = read - (lines - 1 - i) * (read - mono) / lines
            if noisy:
                values = [round(1.0 + c * 0.1 + rng.gauss(0.0, 0.01), 4) for c in range(8)]
            else:
                values = [1.0 + c * 0.1 for c in range(8)]
            data.extend([at, wall, float(k), *values])
            k += 1
        mono = read
    return data[: ROWS * WIDTH]


def before(data: array[float]) -> int:
    """What the block took packed before: zlib level 1 of its rows, and of its mono column apart."""
    return len(zlib.compress(data, 1)) + len(zlib.compress(data[0::WIDTH], 1))


def test_blocks_made_as_the_agent_makes_them_pack_to_a_fraction() -> None:
    steady, noisy = agent_rows(noisy=False), agent_rows(noisy=True)
    for data, at_most in ((steady, 0.3), (noisy, 0.75)):
        packed = pack_rows(data, WIDTH, 2)
        assert len(packed.data) < at_most * before(data), (len(packed.data), before(data))
        assert bits(unpack_rows(packed, ROWS, WIDTH, 2)) == bits(data)
        monos = unpack_monos(packed, ROWS)
        assert bits(monos) == bits(data[0::WIDTH])
        assert all(map(math.isfinite, monos))
