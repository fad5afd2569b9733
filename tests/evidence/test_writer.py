"""Evidence files: CSV and JSON content round-trip, several sources merged, stable names, atomic
replacement, no secrets."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import overload

import pytest

from edge_agent.evidence import (
    EvidencePlanner,
    EvidenceRings,
    check_stem,
    merge_by_time,
    remove_stale_tmp,
    write_evidence,
    write_evidence_async,
)
from edge_agent.frames import Frame

WALL0 = 1_776_076_200.0  # 2026-04-13T10:30:00Z
ANOMALY_ID = "3f2b9c1e-8d4a-4b7e-9f00-1234567890ab"
T0 = 100.0


class Severity(Enum):
    HIGH = "high"


def summary(**extra: object) -> dict[str, object]:
    return {
        "id": ANOMALY_ID,
        "kind": "rule:limits",
        "key": ("rule1:limits", "bench", "supply_v"),
        "channel": "supply_v",
        "threshold": "max 12.6",
        "severity": Severity.HIGH,
        "peak_value": 13.1,
        "peak_excursion": 0.5,
        "started_mono": 100.0,
        "started_wall": WALL0,
        "ended_mono": 102.0,
        "label": None,
        "scores": {"fault": 0.93, "normal": 0.07},
        **extra,
    }


def frames_around() -> list[Frame]:
    """1 s of frames before the start to 1 s after; the temp channel appears late, device time only
    on some frames."""
    out = []
    for i in range(31):
        mono = 99.0 + i * 0.1
        values = {"supply_v": 12.0 + i * 0.03, "current_a": 1.5}
        if i >= 10:
            values["temp_c"] = 40.0 + i
        device = float(i * 100) if i % 2 == 0 else None
        out.append(Frame("bench", mono, WALL0 - 1.0 + i * 0.1, values, device))
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_and_json_round_trip(tmp_path: Path) -> None:
    frames = frames_around()
    files = write_evidence(tmp_path, ANOMALY_ID, summary(), frames, t0=T0)
    assert files.csv_path == tmp_path / f"{ANOMALY_ID}.csv"
    assert files.json_path == tmp_path / f"{ANOMALY_ID}.json"
    assert files.frames == 31

    with files.csv_path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    assert header == ["wall_time", "offset_s", "source", "device_time", "supply_v", "current_a", "temp_c"]
    rows = read_csv(files.csv_path)
    assert len(rows) == 31
    for row, frame in zip(rows, frames, strict=True):
        assert datetime.fromisoformat(row["wall_time"]) == datetime.fromtimestamp(frame.wall, UTC)
        assert float(row["offset_s"]) == pytest.approx(frame.mono - 100.0, abs=1e-6)
        assert row["source"] == "bench"
        assert row["device_time"] == ("" if frame.device_time is None else repr(frame.device_time))
        for name, value in frame.values.items():
            assert float(row[name]) == value  # repr round-trips floats exactly
        if "temp_c" not in frame.values:
            assert row["temp_c"] == ""
    assert float(rows[0]["offset_s"]) == pytest.approx(-1.0)  # pre frames are negative

    doc = json.loads(files.json_path.read_text(encoding="utf-8"))
    anomaly = doc["anomaly"]
    assert anomaly["id"] == ANOMALY_ID and anomaly["severity"] == "high" and anomaly["peak_value"] == 13.1
    assert anomaly["key"] == ["rule1:limits", "bench", "supply_v"]
    assert anomaly["scores"] == {"fault": 0.93, "normal": 0.07} and anomaly["label"] is None
    evidence = doc["evidence"]
    assert evidence["csv"] == f"{ANOMALY_ID}.csv" and evidence["frames"] == 31
    assert evidence["channels"] == ["supply_v", "current_a", "temp_c"]
    assert evidence["first_frame"]["t"] == 99.0 and evidence["final"] is False
    raw = files.json_path.read_text(encoding="utf-8")
    assert raw == json.dumps(doc, sort_keys=True, indent=2) + "\n"  # sorted keys, strict JSON


def test_json_never_holds_secrets_or_non_json(tmp_path: Path) -> None:
    extra = summary(
        api_key="echoed-key-123",
        nested={"Authorization": "Bearer abc", "token": "t-456", "ok": 1},
        peak_excursion=math.nan,
        when=datetime(2026, 4, 13, 10, 30, tzinfo=UTC),
        tags={"b", "a"},
    )
    files = write_evidence(tmp_path, ANOMALY_ID, extra, frames_around(), t0=T0)
    text = files.json_path.read_text(encoding="utf-8")
    for secret in ("echoed-key-123", "Bearer abc", "t-456"):
        assert secret not in text
    doc = json.loads(text)
    assert doc["anomaly"]["nested"] == {"ok": 1}
    assert doc["anomaly"]["peak_excursion"] is None
    assert doc["anomaly"]["when"] == "2026-04-13T10:30:00+00:00"
    assert doc["anomaly"]["tags"] == ["a", "b"]


def test_names_are_the_callers_and_a_rewrite_replaces(tmp_path: Path) -> None:
    planner = EvidencePlanner(pre=1.0, post=1.0, max_duration=1.0)
    planner.open(ANOMALY_ID, ("bench",), started=100.0)
    planner.close(ANOMALY_ID, ended=101.5)
    windows = planner.due(lambda source: 200.0)
    assert [w.part for w in windows] == [1, 2]
    frames = frames_around()
    written = [
        write_evidence(
            tmp_path,
            f"{ANOMALY_ID}.part{w.part}",
            summary(),
            [f for f in frames if w.start <= f.mono <= w.end],
            t0=T0,
            window=w,
        )
        for w in windows
    ]
    assert [p.name for p in written[1].paths] == [f"{ANOMALY_ID}.part2.csv", f"{ANOMALY_ID}.part2.json"]
    part2 = json.loads(written[1].json_path.read_text(encoding="utf-8"))["evidence"]
    assert (part2["part"], part2["final"], part2["window"]) == (2, True, {"start": 101.0, "end": 102.5})

    again = write_evidence(tmp_path, f"{ANOMALY_ID}.part1", summary(), frames[:3], t0=T0)  # after a crash
    assert again.csv_path == written[0].csv_path and len(read_csv(again.csv_path)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for w in written for p in w.paths)


def test_frames_of_several_sources_merge_in_time_order_with_a_source_column(tmp_path: Path) -> None:
    a = [Frame("a", 100.0 + i, WALL0 + i, {"supply_v": 12.0 + i}) for i in range(3)]
    b = [Frame("b", 100.5 + i, WALL0 + i, {"temp_c": 30.0 + i, "supply_v": 5.0}) for i in range(2)]
    files = write_evidence(tmp_path, "two", summary(), merge_by_time([a, b]), t0=T0)
    rows = read_csv(files.csv_path)
    assert [(r["source"], r["offset_s"]) for r in rows] == [
        ("a", "0.000000"), ("b", "0.500000"), ("a", "1.000000"), ("b", "1.500000"), ("a", "2.000000"),
    ]  # fmt: skip
    assert [r["temp_c"] for r in rows] == ["", "30.0", "", "31.0", ""]
    assert json.loads(files.json_path.read_text())["evidence"]["sources"] == ["a", "b"]


def test_non_finite_readings_are_written_as_the_device_meant_them(tmp_path: Path) -> None:
    frames = [Frame("a", 100.0, WALL0, {"x": math.nan, "y": math.inf, "z": -math.inf})]
    rows = read_csv(write_evidence(tmp_path, "nf", summary(), frames, t0=T0).csv_path)
    assert (rows[0]["x"], rows[0]["y"], rows[0]["z"]) == ("nan", "inf", "-inf")


def test_unsafe_stems_refused(tmp_path: Path) -> None:
    for bad in ("", "../x", "a/b", ".hidden", "x" * 201, "a..b"):
        with pytest.raises(ValueError):
            check_stem(bad)
        with pytest.raises(ValueError):
            write_evidence(tmp_path, bad, {"id": bad}, [], t0=0.0)
    assert check_stem("bench-03_supply_v_2026-12-01T21-31-05Z_limits")
    assert not list(tmp_path.iterdir())


class WatchingFrames(Sequence[Frame]):
    """Frames that look at the evidence directory while the writer is half-way through them, and can
    fail there (a disk error mid-write)."""

    def __init__(self, frames: list[Frame], directory: Path, fail: bool) -> None:
        self.frames = frames
        self.directory = directory
        self.fail = fail
        self.seen_mid_write: list[str] | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @overload
    def __getitem__(self, index: int) -> Frame: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Frame]: ...
    def __getitem__(self, index: int | slice) -> Frame | Sequence[Frame]:
        return self.frames[index]

    def __iter__(self) -> Iterator[Frame]:
        for i, frame in enumerate(self.frames):
            if i == len(self.frames) // 2 and self.seen_mid_write is None and self._csv_started():
                self.seen_mid_write = sorted(p.name for p in self.directory.iterdir())
                if self.fail:
                    raise OSError(28, "No space left on device")
            yield frame

    def _csv_started(self) -> bool:
        return self.directory.is_dir() and any(p.suffix == ".tmp" for p in self.directory.iterdir())


def test_no_partial_file_is_ever_visible(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    ok = WatchingFrames(frames_around(), directory, fail=False)
    write_evidence(directory, ANOMALY_ID, summary(), ok, t0=T0)
    assert ok.seen_mid_write is not None
    (tmp_name,) = ok.seen_mid_write  # mid-write only the hidden temporary exists
    assert tmp_name.startswith(f".{ANOMALY_ID}.csv.") and tmp_name.endswith(".tmp")
    assert sorted(p.name for p in directory.iterdir()) == [f"{ANOMALY_ID}.csv", f"{ANOMALY_ID}.json"]

    other = "0e1f2a3b-0000-4000-8000-000000000001"
    failing = WatchingFrames(frames_around(), directory, fail=True)
    with pytest.raises(OSError, match="No space"):
        write_evidence(directory, other, summary(id=other), failing, t0=T0)
    names = sorted(p.name for p in directory.iterdir())
    assert names == [f"{ANOMALY_ID}.csv", f"{ANOMALY_ID}.json"]  # nothing of the failed one, no tmp


def test_stale_tmp_files_removed(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    write_evidence(directory, ANOMALY_ID, summary(), frames_around(), t0=T0)
    (directory / f".{ANOMALY_ID}.csv.deadbeef.tmp").write_text("half", encoding="utf-8")
    assert remove_stale_tmp(directory) == 1
    assert remove_stale_tmp(tmp_path / "nowhere") == 0
    assert sorted(p.name for p in directory.iterdir()) == [f"{ANOMALY_ID}.csv", f"{ANOMALY_ID}.json"]


async def test_ring_to_files_off_the_loop(tmp_path: Path) -> None:
    rings = EvidenceRings(seconds=30.0)
    planner = EvidencePlanner(pre=2.0, post=1.0, max_duration=60.0, ring_seconds=30.0)
    for frame in frames_around():
        rings.add(frame)
    planner.open(ANOMALY_ID, ("bench",), started=100.0)
    planner.close(ANOMALY_ID, ended=100.5)
    (window,) = planner.due(lambda source: 101.5)
    frames = merge_by_time(rings.slice(s, window.start, window.end) for s in window.sources)
    files = await write_evidence_async(tmp_path, ANOMALY_ID, summary(), frames, t0=T0, window=window)
    rows = read_csv(files.csv_path)
    assert float(rows[0]["offset_s"]) == pytest.approx(-1.0)  # the ring held only 1 s of pre
    assert float(rows[-1]["offset_s"]) == pytest.approx(1.5, abs=1e-6)


def test_ring_slices_write_what_a_list_writes_and_say_how_much_they_cover(tmp_path: Path) -> None:
    """Two sources through the ring, one cut by the memory budget: the CSV is byte for byte what the
    same frames as a list give; the JSON says the evidence is not complete, why, and from when."""
    rings = EvidenceRings(seconds=300.0, memory_bytes=256 * 1024)
    fast: list[Frame] = []
    slow: list[Frame] = []
    for i in range(20_000):  # "fast": 20 s at 1 kHz, 8 channels: ~1.6 MB, six times the budget
        t = 90.0 + i / 1000
        fast.append(Frame("fast", t, WALL0 + t, {f"ch{c}": i + c / 8 for c in range(8)}))
        rings.add(fast[-1])
        if i % 100 == 0:
            slow.append(Frame("slow", t + 0.0005, WALL0 + t, {"temp_c": 20.0 + i / 1000}, float(i)))
            rings.add(slow[-1])
    start, end = 95.0, 109.0  # an incident at 100 s: 5 s of pre, 9 s of incident and post
    fast_slice, slow_slice = rings.slice("fast", start, end), rings.slice("slow", start, end)
    oldest_fast = fast_slice[0].mono
    assert oldest_fast > start  # the budget dropped the start of "fast"
    from_ring = write_evidence(
        tmp_path / "ring", ANOMALY_ID, summary(), merge_by_time([fast_slice, slow_slice]), t0=T0
    )
    kept = [f for f in fast if f.mono >= oldest_fast and f.mono <= end]
    from_list = write_evidence(
        tmp_path / "list",
        ANOMALY_ID,
        summary(),
        merge_by_time([kept, [f for f in slow if start <= f.mono <= end]]),
        t0=T0,
    )
    assert from_ring.csv_path.read_bytes() == from_list.csv_path.read_bytes()
    assert from_ring.frames == from_list.frames == len(kept) + 140
    evidence = json.loads(from_ring.json_path.read_text())["evidence"]
    assert evidence["coverage"] == {
        "complete": False,
        "cut_by": "memory",
        "covered_from": oldest_fast,
        "sources": {
            "fast": {"requested_from": start, "covered_from": oldest_fast, "cut_by": "memory"},
            "slow": {"requested_from": start, "covered_from": 95.0005, "cut_by": None},
        },
    }
    assert evidence["sources"] == ["fast", "slow"] and evidence["frames"] == from_ring.frames
    assert "coverage" not in json.loads(from_list.json_path.read_text())["evidence"]  # a list says nothing
    assert rings.slices_cut == {"memory": 1, "time": 0}
    whole = write_evidence(tmp_path / "ring", "recent", summary(), rings.slice("slow", 100.0, 109.0), t0=T0)
    assert json.loads(whole.json_path.read_text())["evidence"]["coverage"]["complete"] is True
