"""What the whole-agent CPU at 3 Mbaud is made of, in figures that do not move with the machine's load:

- `per_line`: the event loop's own work per line, in-process: a real `Agent` built from the bench's
  config (agent_bench._config: 8-channel CSV, 4 lens channels, a limits rule, the recorder, the live
  page) is handed 250-line reads (what ReadHold hands on at 3 Mbaud: ~7 reads of ~2 KiB) through its
  serial reader's `_on_bytes`, the calling thread's CPU clock (`time.thread_time`: the packer's and the
  recorder writer's threads are not in it) over 400 reads, the best of 5 rounds, taking turns with runs
  that leave each consumer out (its share = all minus without it) and with nothing after the decoder.
  Warm caches: a lower bound of what the same work costs the running agent between its wake-ups.
- `wake_up_us`: the CPU one bare wake-up costs this machine (a thread that sleeps 1/140 s, as the
  paced reader's timer does at 3 Mbaud, and does nothing else; its process CPU over the loop).

Both are context for the whole-agent figure (bench_ring.py's agent runs): on a VM a wake-up costs far
more than on a bench PC's bare metal, and the running agent wakes ~160 times a second at 3 Mbaud.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.agent import Agent
from edge_agent.config import load_config

from .agent_bench import _config, _line

LINES_PER_READ = 250
READS_PER_ROUND = 400
ROUNDS = 5
LINES_PER_SECOND = 5000  # 3 Mbaud of the bench's 60-byte lines


class _Absent:
    """Stands in for a consumer left out: takes a batch and does nothing."""

    def add_batch(self, batch: object) -> None:
        pass

    def on_batch(self, batch: object, emit: object) -> None:
        pass


def _leave_out(agent: Agent, name: str) -> Callable[[], None]:
    """Leave consumer `name` out of the agent's fan-out; returns what puts it back."""
    reader = agent.readers["bench"]
    slots: dict[str, tuple[Any, str]] = {
        "recorder": (agent, "recorder"),
        "evidence_ring": (agent, "rings"),
        "live_page": (agent, "_tap_batch"),
        "detector": (agent, "detector"),
        "lens": (agent, "lens"),
        "after_the_decoder": (reader, "_deliver"),
    }
    owner, attribute = slots[name]
    kept = getattr(owner, attribute)
    stand_in: Any = {
        "recorder": None, "lens": None, "live_page": None, "after_the_decoder": lambda event: None,
    }.get(name, _Absent())  # fmt: skip
    setattr(owner, attribute, stand_in)
    return lambda: setattr(owner, attribute, kept)


def _cpu_per_line(feed: Callable[[bytes], None], reads: list[bytes]) -> float:
    """The calling thread's CPU per line over `reads`, in microseconds."""
    start = time.thread_time()
    for data in reads:
        feed(data)
    return (time.thread_time() - start) / (len(reads) * LINES_PER_READ) * 1e6


VARIANTS = ("all", "after_the_decoder", "recorder", "evidence_ring", "live_page", "detector", "lens")


async def _per_line(workdir: Path) -> dict[str, float]:
    config_path = workdir / "agent.toml"
    urls = ("http://127.0.0.1:9/v0.5", "http://127.0.0.1:9")  # nothing is sent: the agent is not started
    config_path.write_text(_config(workdir / "state", workdir / "tty", *urls, 1))
    agent = Agent(load_config(config_path, environ={}))
    feed = agent.readers["bench"]._on_bytes
    lines = 0

    def reads() -> list[bytes]:
        nonlocal lines
        out = []
        for _ in range(READS_PER_ROUND):
            out.append(b"".join(_line(lines + i, 1.0) for i in range(LINES_PER_READ)))
            lines += LINES_PER_READ
        return out

    # Warm-up past the ring's span (30 s of lines), so that every round seals blocks and expires old ones.
    for _ in range(4):
        _cpu_per_line(feed, reads())
    # The variants take turns within each round (the ring's and the recorder's phases, the machine's
    # load, are then alike for all of them); each keeps its best round.
    best = dict.fromkeys(VARIANTS, float("inf"))
    for _ in range(ROUNDS):
        for name in VARIANTS:
            chunk = reads()
            put_back = _leave_out(agent, name) if name != "all" else (lambda: None)
            try:
                best[name] = min(best[name], _cpu_per_line(feed, chunk))
            finally:
                put_back()
    agent.packer.close()
    figures = {"all_us": best["all"], "decoder_us": best["after_the_decoder"]}
    for name in VARIANTS[2:]:
        figures[f"{name}_us"] = best["all"] - best[name]
    figures["all_percent_at_3M_baud"] = best["all"] * LINES_PER_SECOND / 1e4
    return figures


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wake_up_us(rate: float = 140.0, seconds: float = 3.0) -> float:
    """CPU per bare wake-up (process CPU over the loop: this process is otherwise idle meanwhile)."""
    start_cpu, start, wakes = _process_cpu(), time.monotonic(), 0
    while time.monotonic() - start < seconds:
        time.sleep(1.0 / rate)
        wakes += 1
    return (_process_cpu() - start_cpu) / wakes * 1e6


def data_path_costs() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="edge-data-path-") as tmp:
        figures = asyncio.run(_per_line(Path(tmp)))
    figures["wake_up_us"] = wake_up_us()
    return figures
