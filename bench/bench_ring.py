"""The evidence ring: per-frame cost and bytes per frame, the columnar ring against the design it
replaced (a deque of `Frame` objects, each with its dict of floats, bounded by time and a frame count),
in the same process and run; the cost of a slice and of walking it; and the whole-agent figures
(bench/soak_lib/agent_bench.py: RSS with the ring full at 3 Mbaud, CPU meanwhile, RSS under a minute
of wide JSON lines at full speed).

Run: .venv/bin/python bench/bench_ring.py [--frames N] [--no-agent]. Prints the figures and writes
bench/out/ring.json; with them, what the agent's idle RSS is made of (`idle_breakdown`: the RSS each
group of the modules `edge-agent run` imports adds, in a fresh interpreter).

`--against REV [--after-tree DIR] [--rounds N]` runs only the whole agent at 3 Mbaud for 35 s, the
agent of commit REV and this tree's (or DIR's) in turn, N rounds each: before/after under the same load
(not part of bench/run); `--section NAME` writes it under another name and `--wide` adds the wide JSON
runs (the memory work of issue 12 item 4: `--against 9453250 --section against_memory --wide`; the
per-read data path's CPU: `--against 218e7e7 --section against_cpu`; the recorder's text from the
device's lines and the ring's one-pass packing: `--against c5ba699 --section against_cpu_3`). For the
ring alone, DIR is REV with only the ring applied; the figures in RESULTS.md come from

    git archive 5641f16 | tar -x -C /tmp/after
    git diff 5641f16 259a716 -- edge_agent | (cd /tmp/after && git apply)
    cp edge_agent/evidence/{blocks,ring,writer,__init__}.py /tmp/after/edge_agent/evidence/
    rm /tmp/after/edge_agent/evidence/columns.py
    .venv/bin/python bench/bench_ring.py --against 5641f16 --after-tree /tmp/after --rounds 3

Per-frame cost is what `add` adds to making the frame (as the decoder does) and dropping it: process
CPU time of make+add minus make alone in the same round, median of 9 rounds. A ring that keeps Frame objects
also pays at the allocator and the garbage collector for every frame it holds; that is in its figure.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tracemalloc
import zlib
from array import array
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import update_results  # noqa: E402
from soak_lib.unit_env import unit_runtime_env  # noqa: E402

from edge_agent.bench_sim.stored_rows import WIDTH as PACK_WIDTH  # noqa: E402
from edge_agent.bench_sim.stored_rows import agent_rows  # noqa: E402
from edge_agent.evidence import EvidenceRings  # noqa: E402
from edge_agent.evidence.packing import PACK_LEVEL, pack_rows, unpack_monos, unpack_rows  # noqa: E402
from edge_agent.frames import Frame  # noqa: E402

RATE = 5000.0  # 3 Mbaud equivalent of 8-channel CSV lines
SECONDS = 30.0  # the whole-agent bench's ring


class DequeOfFrames:
    """The ring as it was before issue 12 item 4: Frame objects in a deque, bounded by time and by
    `seconds * 2000` frames (edge_agent/evidence/ring.py at 36c53b1, condensed)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.frames: deque[Frame] = deque(maxlen=int(seconds * 2000))

    def add(self, frame: Frame) -> None:
        frames = self.frames
        frames.append(frame)
        horizon = frame.mono - self.seconds
        while frames[0].mono < horizon:
            frames.popleft()


def names_for(width: int) -> tuple[str, ...]:
    return tuple(f"ch{c}" for c in range(width))


def feed(add: Callable[[Frame], None], count: int, width: int) -> float:
    """CPU seconds per frame to make `count` frames of `width` channels (5,000/s timeline) and add them."""
    names = names_for(width)
    offsets = [c * 0.1 for c in range(width)]
    gc.collect()
    start = time.process_time()
    for i in range(count):
        t = i / RATE
        row = [t + offset for offset in offsets]  # fresh floats, as the decoder's float() makes them
        add(Frame("bench", t, 1.7e9 + t, dict(zip(names, row, strict=True))))
    return (time.process_time() - start) / count


def per_frame_costs(count: int, width: int, seconds: float, rounds: int = 9) -> dict[str, float]:
    """Each round makes the same frames three times (dropped, into a deque of Frames, into the ring);
    the figure is the median over rounds of the difference within a round, so load that comes and goes
    on a shared machine touches all three alike."""
    deque_cost: list[float] = []
    packed_cost: list[float] = []
    bare: list[float] = []
    for _ in range(rounds):
        none = feed(lambda frame: None, count, width)
        deque_cost.append(feed(DequeOfFrames(seconds).add, count, width) - none)
        packed_cost.append(feed(EvidenceRings(seconds).add, count, width) - none)
        bare.append(none)
    return {
        "make_frame_us": 1e6 * statistics.median(bare),
        "deque_of_frames_us": 1e6 * statistics.median(deque_cost),
        "columnar_us": 1e6 * statistics.median(packed_cost),
    }


def bytes_per_frame(count: int, width: int, seconds: float) -> dict[str, float]:
    """tracemalloc of each ring once it holds `count` frames (Frames made as the decoder makes them)."""
    out: dict[str, float] = {}
    for name, make in (("deque_of_frames", DequeOfFrames), ("columnar", EvidenceRings)):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        ring = make(seconds)
        feed(ring.add, count, width)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        if isinstance(ring, EvidenceRings):
            kept = sum(len(r) for r in map(ring.ring, ring.sources) if r is not None)
            out["columnar_accounted_bytes"] = ring.nbytes / kept
        else:
            kept = len(ring.frames)  # its count bound (2,000/s) may hold fewer than were sent
        out[f"{name}_bytes"] = held / kept
        out[f"{name}_frames_held"] = kept
        del ring
    return out


def slice_costs(width: int) -> dict[str, float]:
    """A 20 s evidence window out of a full 30 s ring at 5,000 frames/s: taking the slice (on the event
    loop in the agent) and walking its frames (the writer, in its thread)."""
    rings = EvidenceRings(SECONDS)
    feed(rings.add, int(SECONDS * RATE), width)
    start = time.perf_counter()
    piece = rings.slice("bench", 5.0, 25.0)
    taken = time.perf_counter() - start
    start = time.perf_counter()
    walked = sum(1 for _ in piece)
    walk = time.perf_counter() - start
    return {"frames": walked, "slice_ms": 1000 * taken, "walk_us_per_frame": 1e6 * walk / walked}


def packing_costs(rounds: int = 50) -> dict[str, float]:
    """A sealed block packed as before (zlib level 1 of its rows and of its mono column apart) and as
    now (edge_agent/evidence/packing.py): bytes a row, and the medians of packing it (the packer's
    thread), reading it back (the evidence writer's) and reading its mono column (a slice's bounds, on
    the event loop)."""
    out: dict[str, float] = {}
    for label, noisy in (("steady", False), ("noisy", True)):
        data = agent_rows(noisy)
        rows = len(data) // PACK_WIDTH
        old = pack_before(data)
        new = pack_rows(data, PACK_WIDTH, 2)
        assert unpack_rows(new, rows, PACK_WIDTH, 2).tobytes() == data.tobytes()
        costs: dict[str, Callable[[], object]] = {
            "before_pack_ms": partial(pack_before, data),
            "before_unpack_ms": partial(zlib.decompress, old[0]),
            "before_monos_ms": partial(zlib.decompress, old[1]),
            "now_pack_ms": partial(pack_rows, data, PACK_WIDTH, 2),
            "now_unpack_ms": partial(unpack_rows, new, rows, PACK_WIDTH, 2),
            "now_monos_ms": partial(unpack_monos, new, rows),
        }
        for name, work in costs.items():
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                work()
                times.append(time.perf_counter() - start)
            out[f"{label}_{name}"] = 1000 * statistics.median(times)
        out[f"{label}_before_bytes_per_row"] = (len(old[0]) + len(old[1])) / rows
        out[f"{label}_now_bytes_per_row"] = len(new.data) / rows
    return out


def pack_before(data: array[float]) -> tuple[bytes, bytes]:
    """A sealed block as the ring packed it until issue 12 item 4's memory work (blocks.pack_rows at
    5bccf94): zlib of its rows, and of its mono column apart."""
    return zlib.compress(data, PACK_LEVEL), zlib.compress(data[0::PACK_WIDTH], PACK_LEVEL)


def against(rev: str, rounds: int, after: Path, section: str = "against", wide: bool = False) -> None:
    from soak_lib.agent_bench import run_ring_against

    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", rev], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory(prefix="edge-ring-before-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        runs = run_ring_against(Path(tmp), rounds, after, wide)
    summary: dict[str, Any] = {"rev": rev, "after": str(after), "rounds": rounds, "runs": runs}
    keys = ["cpu_percent_3M_baud", "rss_mb", "idle_rss_mb", "rss_anon_mb", "rss_file_mb", "ring_bytes"]
    keys += ["cpu_percent_3M_baud_main_thread", "cpu_percent_3M_baud_other_threads"]
    if wide:
        keys += ["wide_rss_over_idle_mb", "wide_peak_over_idle_mb", "wide_lines_per_s", "wide_idle_rss_mb"]
        keys += ["wide_ring_bytes", "wide_ring_span_s", "wide_ring_frames"]
    for label, values in runs.items():
        for key in keys:
            got = [v[key] for v in values if v.get(key) is not None]
            summary[f"{label}_{key}_median"] = statistics.median(got) if got else None
    print(json.dumps(summary, indent=2))
    path = update_results("ring", section, summary)
    print(f"wrote {path}")


# What the agent's idle RSS is made of: a fresh interpreter imports what `edge-agent run` imports, one
# group at a time in dependency order (each group's RSS growth is what it adds to those before it),
# the standard library first. The module list is the one `run` imports (a first child lists it).
_RUN_MODULES = """
import json, sys
from edge_agent.cli import build_parser
build_parser(["run"])
import edge_agent.run
print(json.dumps(sorted(sys.modules)))
"""
_COMMON = """
import importlib, json, sys
modules = json.loads(sys.stdin.read())
root = lambda m: m.split(".")[0]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
def load(names):
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # a platform module of a library (its import is guarded there too)
"""
_IMPORT_GROUPS = (
    _COMMON
    + """
stdlib_groups = {
    "asyncio_ssl": ("asyncio", "_asyncio", "ssl", "_ssl", "hashlib", "_hashlib"),
    "sqlite3": ("sqlite3", "_sqlite3"),
    "email_http": ("email", "http", "urllib", "mimetypes", "html", "wsgiref", "socketserver", "netrc"),
}
library_groups = {
    "pydantic": ("pydantic", "pydantic_core", "typing_extensions", "typing_inspection", "annotated_types"),
    "pydantic_settings": ("pydantic_settings", "dotenv"),
    "aiohttp": ("aiohttp", "aiohappyeyeballs", "aiosignal", "attr", "frozenlist", "multidict", "propcache",
                "yarl", "idna"),
    "websockets": ("websockets",),
    "structlog": ("structlog", "greenlet"),
    "prometheus_client": ("prometheus_client",),
    "pyserial": ("serial", "serial_asyncio_fast"),
}
out = {"interpreter": rss()}
def step(label, names):
    before = rss()
    load(names)
    out[label] = rss() - before
for label, roots in stdlib_groups.items():
    step(label, [m for m in modules if root(m) in roots])
step("standard_library_rest", [m for m in modules if root(m) in sys.stdlib_module_names])
for label, roots in library_groups.items():
    if label == "aiohttp":  # as `edge-agent` imports it (edge_agent/tls.py): no CA bundle at import
        from edge_agent.tls import import_aiohttp
        before = rss()
        import_aiohttp()
        out["aiohttp_import"] = rss() - before
        step(label, [m for m in modules if root(m) in roots])
        out[label] += out.pop("aiohttp_import")
        continue
    step(label, [m for m in modules if root(m) in roots])
known = set(sys.stdlib_module_names).union(*library_groups.values(), {"edge_agent"})
step("unlisted_libraries", [m for m in modules if root(m) not in known])
step("edge_agent_config", ["edge_agent.config"])  # the config's pydantic models
step("edge_agent", [m for m in modules if root(m) == "edge_agent"])
out["total"] = rss()
print(json.dumps(out))
"""
)
# What a library costs on its own: imported last, after every other library `run` imports (which
# bring the standard library they need) and the standard library the agent imports itself. What
# dropping it would save, its own use of the standard library included.
_MARGINAL = (
    _COMMON
    + """
roots = tuple(sys.argv[1].split(","))
others = [m for m in modules if root(m) not in sys.stdlib_module_names and root(m) not in roots]
load([m for m in others if root(m) != "edge_agent"])
load(["argparse", "csv", "gzip", "json", "sqlite3", "tomllib", "uuid", "zlib"])
before = rss()
load([m for m in modules if root(m) in roots])
print(json.dumps(rss() - before))
"""
)
MARGINAL_LIBRARIES = {
    "pydantic_settings": "pydantic_settings,dotenv",
    "websockets": "websockets",
    "structlog": "structlog,greenlet",
    "prometheus_client": "prometheus_client",
}


def idle_breakdown() -> dict[str, float]:
    python = [sys.executable, "-c"]
    # The interpreter as the unit runs the agent (-OO: no docstrings), or the sum would not be its RSS.
    env = {**os.environ, **unit_runtime_env(HERE.parent)}
    listed = subprocess.run(
        [*python, _RUN_MODULES], check=True, capture_output=True, text=True, cwd=HERE.parent, env=env
    )
    done = subprocess.run(
        [*python, _IMPORT_GROUPS], input=listed.stdout, check=True, capture_output=True, text=True,
        cwd=HERE.parent, env=env,
    )  # fmt: skip
    figures: dict[str, float] = json.loads(done.stdout)
    for name, roots in MARGINAL_LIBRARIES.items():
        alone = subprocess.run(
            [*python, _MARGINAL, roots], input=listed.stdout, check=True, capture_output=True, text=True,
            cwd=HERE.parent, env=env,
        )  # fmt: skip
        figures[f"marginal_{name}"] = json.loads(alone.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=150_000, help="frames per round (30 s at 5,000/s)")
    parser.add_argument("--no-agent", action="store_true", help="skip the whole-agent figures (~3 min)")
    parser.add_argument("--against", metavar="REV", help="whole agent at 3 Mbaud: commit REV vs this tree")
    parser.add_argument("--after-tree", metavar="DIR", help="with --against: this tree instead of the repo")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--section", default="against", help="with --against: the bench/out/ring.json section it writes"
    )
    parser.add_argument("--wide", action="store_true", help="with --against: the wide JSON runs too")
    args = parser.parse_args()
    if args.against:
        tree = Path(args.after_tree) if args.after_tree else HERE.parent
        against(args.against, args.rounds, tree, args.section, args.wide)
        return
    results: dict[str, Any] = {
        "what": "evidence ring add cost and bytes per frame, columnar vs a deque of Frames; slices; the"
        " whole agent with the ring full at 3 Mbaud and under wide JSON lines",
        "note": "measured on a shared 2-core machine under contention from other jobs",
    }
    for label, width in (("8ch", 8), ("270ch", 270)):
        count = args.frames if width == 8 else max(1000, args.frames // 20)
        costs = per_frame_costs(count, width, SECONDS)
        memory = bytes_per_frame(count, width, SECONDS)
        results[label] = {**costs, **memory}
        print(
            f"{label:6s} add: deque of frames {costs['deque_of_frames_us']:.2f} us, columnar"
            f" {costs['columnar_us']:.2f} us (making the frame {costs['make_frame_us']:.2f} us);"
            f" bytes/frame: deque {memory['deque_of_frames_bytes']:,.0f},"
            f" columnar {memory['columnar_bytes']:,.0f}"
        )
    results["slice_8ch"] = slice_costs(8)
    print(f"slice of 20 s (8 ch): {results['slice_8ch']}")
    results["packing"] = packing_costs()
    print(f"a sealed block packed, before and now: {results['packing']}")
    results["idle_breakdown"] = idle_breakdown()
    print(f"idle RSS by import group (MB): {results['idle_breakdown']}")
    from soak_lib.data_path_cost import data_path_costs

    results["data_path"] = data_path_costs()
    print(f"the loop's work per line, in-process (us), and a bare wake-up: {results['data_path']}")
    if not args.no_agent:
        from soak_lib.agent_bench import run_ring_figures

        agent = run_ring_figures()
        results["agent"] = agent
        print(json.dumps(agent, indent=2))
    path = update_results("ring", "ring", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
