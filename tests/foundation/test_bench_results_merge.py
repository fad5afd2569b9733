"""bench/run --only merges its sections into RESULTS.md without blanking rows that other commands
measured into the same section (bench_ring.py --against REV writes before/after rows there, and an
`--only ring` run does not rerun them): a row the run did not measure keeps its last measured figures,
matched by label and unit, the n-th of a repeated label with the n-th."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from soak_lib.run_all import _verdict, keep_rows_measured_elsewhere, merge_section  # noqa: E402

OLD = """# Benchmark results

## Evidence ring

| Figure | Unit | Target | Min | Median | Max | Verdict |
|---|---|---|---|---|---|---|
| RSS with the ring full | MB | < 60.0 | 62.9 | 63.2 | 63.2 | **miss** |
| before/after A: CPU, before | % core | — | 9.0 | 9.0 | 9.0 |  |
| ... CPU, after | % core | — | 8.0 | 8.0 | 8.0 |  |
| before/after B: CPU, before | % core | — | 7.0 | 7.0 | 7.0 |  |
| ... CPU, after | % core | — | 6.0 | 6.0 | 6.0 |  |
| never measured | MB | — | — | — | — | not measured |

## Notes

kept
"""

NEW_BLOCK = [
    "",
    "## Evidence ring",
    "",
    "| Figure | Unit | Target | Min | Median | Max | Verdict |",
    "|---|---|---|---|---|---|---|",
    "| RSS with the ring full | MB | < 60.0 | 62.3 | 62.4 | 62.4 | **miss** |",
    "| before/after A: CPU, before | % core | — | — | — | — | not measured |",
    "| ... CPU, after | % core | — | — | — | — | not measured |",
    "| before/after B: CPU, before | % core | — | — | — | — | not measured |",
    "| ... CPU, after | % core | — | 5.5 | 5.5 | 5.5 |  |",
    "| never measured | MB | — | — | — | — | not measured |",
    "| a new figure | us | — | 1.5 | 1.5 | 1.5 |  |",
]


def test_rows_the_run_did_not_measure_keep_their_last_figures() -> None:
    merged = merge_section(OLD, "Evidence ring", NEW_BLOCK)
    rows = [line for line in merged.splitlines() if line.startswith("| ") and "Figure" not in line]
    assert rows == [
        "| RSS with the ring full | MB | < 60.0 | 62.3 | 62.4 | 62.4 | **miss** |",  # measured now: new
        "| before/after A: CPU, before | % core | — | 9.0 | 9.0 | 9.0 |  |",  # not now: kept
        "| ... CPU, after | % core | — | 8.0 | 8.0 | 8.0 |  |",  # the 1st of a repeated label
        "| before/after B: CPU, before | % core | — | 7.0 | 7.0 | 7.0 |  |",
        "| ... CPU, after | % core | — | 5.5 | 5.5 | 5.5 |  |",  # the 2nd, measured now: new
        "| never measured | MB | — | — | — | — | not measured |",
        "| a new figure | us | — | 1.5 | 1.5 | 1.5 |  |",
    ]
    assert merged.endswith("## Notes\n\nkept\n")


def test_a_bound_judged_on_every_run_misses_when_one_run_is_over() -> None:
    """A memory bound must hold in every run (its worst), a cost on a shared machine by its median."""
    runs = [61.0, 62.0, 65.4]
    assert _verdict(("<", 64.0), runs) == "pass"
    assert _verdict(("<", 64.0), runs, every_run=True) == "**miss**"
    assert _verdict(("<", 64.0), runs[:2], every_run=True) == "pass"
    assert _verdict((">=", 100.0), [99.0, 120.0, 130.0], every_run=True) == "**miss**"


def test_a_full_run_keeps_the_rows_other_commands_measured() -> None:
    """A full bench/run renders every section anew; the rows it did not measure (bench_ring.py
    --against's before/after) keep the figures the last RESULTS.md had, section by section."""
    new = "# Benchmark results\n\nnew header\n" + "\n".join(NEW_BLOCK) + "\n\n## Notes\n\nnew notes\n"
    kept = keep_rows_measured_elsewhere(OLD, new)
    rows = [line for line in kept.splitlines() if line.startswith("| ") and "Figure" not in line]
    assert rows[:3] == [
        "| RSS with the ring full | MB | < 60.0 | 62.3 | 62.4 | 62.4 | **miss** |",
        "| before/after A: CPU, before | % core | — | 9.0 | 9.0 | 9.0 |  |",
        "| ... CPU, after | % core | — | 8.0 | 8.0 | 8.0 |  |",
    ]
    assert "new header" in kept and kept.endswith("## Notes\n\nnew notes\n")  # the rest is the new run's
