"""The data path's memory budget (sans-I/O): one figure, `memory.data_path_mb`, for every buffer that
grows with the frames going through the agent, so that what the user sets is what the process may grow
by under any input (however wide its lines, however fast its ports).

Four consumers draw from it:

- the recorder: frames waiting for its writer thread, at most `recorder.max_pending_mb`, and the rows
  its writer has compressed and not yet written, at most `MEMBER_MAX_BYTES` (256 KiB) for each serial
  port (a source has one open segment at a time, and a member that reaches it is written at once:
  `edge_agent/recorder/writer.py`), so its cap is their sum (`recorder_bytes`);
- the lens send queue (windows waiting for the websocket), at most `lens.queue_mb`;
- the live page's min/max buckets, fixed per channel (`edge_agent.live.decimator.CHANNEL_BYTES`) for at
  most `MAX_CHANNELS` channels;
- the evidence ring, which holds whatever the others leave (and at most `evidence.memory_mb` if that
  is set).

Each of the first three has a cap: the most it may hold, and also what it is sure to get, because the
ring gives way to it (the ring drops its oldest blocks as soon as it and the others together pass the
total less the allocator's reserve, below: `EvidenceRings` checks at every read's batch of frames, or
every `CHECK_EVERY` single frames). The caps must leave the ring `RING_MIN_FRACTION` of the total (a
config error otherwise, naming the fields), and the ring is sure to get that less the reserve,
`total - reserve - sum(caps)`: no consumer can starve another's minimum, and past its cap each
consumer drops and counts on its own terms (the recorder frames not recorded, while its writer writes
a member before the flush is due; the lens queue its oldest windows, the live page channels beyond
its maximum, the ring its oldest blocks: all on /status and /metrics).

What each consumer holds is measured by a function of its own (`attach`), read when the ring checks:
the recorder's `data_path_bytes` (its frames' charge, an upper bound of what they hold, and its
writer's compressed bytes as they are), the lens pacer's `queued_bytes`, the live page's channel count
times its fixed cost per channel. Outside the budget, like the idle process: deflate's state of each
open segment (~48 kB, fixed), and while the writer compresses a hand-off its text and compressed rows
beside its frames (which stay charged until it is done: about 1 MiB of charge, the text less).

The reserve (ALLOCATOR_RESERVE_FRACTION of the total, 4 MiB of the default 64) is for what the
consumers cannot count: what the allocator keeps of what they free. The ring's blocks go oldest first
and the loop's smaller allocations split the holes they leave, so glibc holds freed memory, resident,
that later blocks cannot reuse, and returns only what is at the top of its heaps. Measured under a
minute of 270-field JSON lines at full speed, with the consumers' count at the total: 0.7-6.4 MB free
in the malloc arenas at the end (malloc_info), RSS over idle up to 63.9 MB against the 64 MiB counted
(bench/RESULTS.md). The budget bounds what the process grows by, so the consumers together are held
below it by that much.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.live.decimator import CHANNEL_BYTES, MAX_CHANNELS, SOURCE_BYTES
from edge_agent.recorder.writer import MEMBER_MAX_BYTES

if TYPE_CHECKING:
    from edge_agent.config import EdgeAgentConfig

MIB = 1024 * 1024
# What the other consumers' caps must leave the evidence ring: a quarter of the budget (16 MiB of the
# default 64, 12 MiB after the allocator's reserve: 30 s of 8 channels at 3 Mbaud is 12 MB raw, ~2.6
# MB packed with noisy values).
RING_MIN_FRACTION = 0.25
# The share of the budget the consumers leave to the allocator (the module's text).
ALLOCATOR_RESERVE_FRACTION = 1 / 16
RING = "evidence"


class DataPathBudget:
    """The total, the allocator's reserve, the other consumers' caps and measures, and what that leaves
    the evidence ring."""

    __slots__ = ("_held", "_measures", "caps", "reserve", "ring_cap", "total")

    def __init__(self, total: int, caps: dict[str, int], ring_cap: int | None = None) -> None:
        if total < 1 or any(cap < 0 for cap in caps.values()) or RING in caps:
            raise ValueError("a data path budget needs a positive total and caps >= 0 (the ring has none)")
        self.total = total
        self.reserve = reserve_bytes(total)
        self.caps = dict(caps)
        floor = total - sum(caps.values())
        if floor < RING_MIN_FRACTION * total:
            shares = ", ".join(f"{name} {cap / MIB:g}" for name, cap in caps.items())
            raise ValueError(
                f"memory.data_path_mb ({total / MIB:g} MiB) leaves the evidence ring {floor / MIB:g} MiB"
                f" after the other consumers' caps ({shares} MiB); it must leave at least"
                f" {RING_MIN_FRACTION:.0%}: raise data_path_mb or lower those caps"
            )
        if ring_cap is not None and ring_cap > total:
            raise ValueError(
                f"evidence.memory_mb ({ring_cap / MIB:g} MiB) is more than memory.data_path_mb"
                f" ({total / MIB:g} MiB), the budget it is part of: raise data_path_mb (or unset"
                " evidence.memory_mb: the ring then holds what the others leave)"
            )
        self.ring_cap = total if ring_cap is None else ring_cap
        self._measures: dict[str, Callable[[], int]] = {}
        self._held: Callable[[], int] = _nothing

    @classmethod
    def from_config(cls, config: EdgeAgentConfig) -> DataPathBudget:
        """The budget of `config`: a cap for each consumer it enables."""
        caps: dict[str, int] = {}
        if config.recorder.enabled:
            caps["recorder"] = recorder_bytes(config.recorder.max_pending_mb, len(config.serial))
        if config.lens.enabled and config.lens.channels:
            caps["lens"] = int(config.lens.queue_mb * MIB)
        if config.control.enabled and config.control.live_page:
            caps["live"] = live_page_bytes(MAX_CHANNELS, len(config.serial))
        ring_cap = None if config.evidence.memory_mb is None else int(config.evidence.memory_mb * MIB)
        total = int(config.memory.data_path_mb * MIB)
        if ring_cap is not None and "data_path_mb" not in config.memory.model_fields_set:
            # A config from before the one budget gave the ring its own evidence.memory_mb beside the
            # others' caps: unless the budget is set, it grows to hold that, so an upgrade still starts
            # with the memory it had (a budget set too small for the ring's cap is refused, saying so).
            total = max(total, budget_for(ring_cap + sum(caps.values())))
        return cls(total, caps, ring_cap)

    @property
    def ring_floor(self) -> int:
        """What the ring is sure to get, whatever the others hold."""
        return min(self.ring_cap, self.total - self.reserve - sum(self.caps.values()))

    def attach(self, name: str, held: Callable[[], int]) -> None:
        """How to measure what consumer `name` (one of `caps`) holds now, in bytes."""
        if name not in self.caps:
            raise ValueError(f"{name!r} has no share of this budget (its consumer is not enabled)")
        self._measures[name] = held
        measures = tuple(self._measures.values())
        self._held = lambda: sum(measure() for measure in measures)

    def others_held(self) -> int:
        """Bytes the consumers other than the ring hold now."""
        return self._held()

    def ring_limit(self) -> int:
        """The most the ring may hold now: what the others leave of the total less the reserve (at most
        its own cap)."""
        return min(self.ring_cap, self.total - self.reserve - self.others_held())

    def status(self, ring_bytes: int) -> dict[str, Any]:
        """For /status and the metrics: the total, each consumer's bytes against its cap."""
        held = {name: measure() for name, measure in self._measures.items()}
        consumers = {name: {"bytes": held.get(name, 0), "cap_bytes": cap} for name, cap in self.caps.items()}
        consumers[RING] = {"bytes": ring_bytes, "cap_bytes": self.ring_cap, "floor_bytes": self.ring_floor}
        return {
            "budget_bytes": self.total,
            "allocator_reserve_bytes": self.reserve,
            "bytes": ring_bytes + sum(held.values()),
            "consumers": consumers,
        }


def reserve_bytes(total: int) -> int:
    """The allocator's reserve of a budget of `total` bytes."""
    return int(total * ALLOCATOR_RESERVE_FRACTION)


def budget_for(held: int) -> int:
    """A budget whose consumers may hold `held` bytes beside the allocator's reserve (the reserve rounds
    down, so `total - reserve_bytes(total) >= total * (1 - fraction) >= held`)."""
    return math.ceil(held / (1 - ALLOCATOR_RESERVE_FRACTION))


def recorder_bytes(max_pending_mb: float, sources: int) -> int:
    """The recorder's cap: frames waiting for its writer, and compressed rows not yet written for each
    of `sources` serial ports."""
    return int(max_pending_mb * MIB) + sources * MEMBER_MAX_BYTES


def live_page_bytes(channels: int, sources: int) -> int:
    """The live page's buckets for `channels` channels of `sources` sources (fixed per channel)."""
    return channels * CHANNEL_BYTES + sources * SOURCE_BYTES


def _nothing() -> int:
    return 0
