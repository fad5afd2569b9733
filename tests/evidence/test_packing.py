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

from edge_agent.bench_sim.stored_rows import BLOCK_ROWS as ROWS
from edge_agent.bench_sim.stored_rows import WIDTH, agent_rows
from edge_agent.evidence.packing import pack_rows, unpack_monos, unpack_rows


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
