"""Issue 14, item 6 and the disk budget, without S3: recordings stay local. `edge-agent export`
packs a run into one zip whose segments hold every frame the agent decoded (the tail of what the
bench wrote, values exact) with a manifest of steps, sources and channels; a small budget holds,
deleting the oldest segments first (counted on /status and /metrics)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
from e2e_helpers import agent_config_toml, step_toml
from recorder_helpers import CapturingSim, rows_of, segment_rows, split_by_step

from edge_agent.agent import Agent
from edge_agent.config import load_config
from edge_agent.emulators.atlas import AtlasEmulator

STEPS = [("warm_up", 1.0, 2.0), ("run_in", 3.0, 2.0)]


async def _record(
    tmp_path: Path, atlas: AtlasEmulator, extra: str, rate: float, duration: float
) -> tuple[Agent, CapturingSim, Path]:
    link = tmp_path / "ttyBENCH0"
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        agent_config_toml(tmp_path / "state", link, atlas.base_url, extra=extra), encoding="utf-8"
    )
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(
        f'name = "local"\nduration = "{duration}s"\n' + "".join(step_toml(*s) for s in STEPS),
        encoding="utf-8",
    )
    agent = Agent(load_config(config_path, environ={}))
    sim = CapturingSim(scenario, link, tmp_path / "oracle.jsonl", rate=rate)
    await sim.play_steps(
        agent, len(STEPS), play_within=60, steps_within=30, what="the steps to end", drain_within=10
    )
    return agent, sim, config_path


def _export(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "export", "--config", str(config), *args, "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_export_packs_every_frame_with_a_manifest(tmp_path: Path, atlas: AtlasEmulator) -> None:
    agent, sim, config = await _record(tmp_path, atlas, "", rate=200.0, duration=5.5)
    out = tmp_path / "run.zip"
    done = _export(config, out, "--latest")
    assert done.returncode == 0, done.stderr
    written = split_by_step(sim.port.lines)
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        segments = {name: archive.read(name) for name in archive.namelist() if name.endswith(".csv.gz")}
    assert manifest["run"] == agent.steps.state["run_key"]
    assert [s["title"] for s in manifest["steps"]] == [name for name, _, _ in STEPS]
    assert manifest["sources"] == [{"name": "bench", "channels": written.columns[1:]}]
    assert sorted(s["file"] for s in manifest["segments"]) == sorted(segments)
    rows = sorted(
        (r for data in segments.values() for r in segment_rows(data, written.columns)), key=lambda r: r[0]
    )
    assert len(rows) == manifest["frames"] == agent.frames_total() > 800
    assert rows == written.all[len(written.all) - len(rows) :]
    for entry in manifest["segments"]:
        if entry["step"] is not None:
            assert segment_rows(segments[entry["file"]], written.columns) == written.by_step[entry["step"]]
    # The users' tools read a segment as it is: pandas straight from the gzip'd file.
    name = next(s["file"] for s in manifest["segments"] if s["step"] == "warm_up")
    (tmp_path / name).write_bytes(segments[name])
    frame = pd.read_csv(tmp_path / name, parse_dates=["time_utc"])
    assert len(frame) == len(written.by_step["warm_up"])
    assert list(frame.columns) == ["time_utc", "t_s", *written.columns]
    assert frame["supply_v"].tolist() == [row[1] for row in written.by_step["warm_up"]]
    header, _ = rows_of(segments[name])
    assert header == list(frame.columns)
    # A run that is not there: a clear error naming the runs that are.
    missing = _export(config, tmp_path / "none.zip", "--run", "no-such-run")
    assert missing.returncode == 1 and agent.steps.state["run_key"] in missing.stderr


async def test_disk_budget_holds_deleting_the_oldest_first(tmp_path: Path, atlas: AtlasEmulator) -> None:
    extra = '\n[recorder]\nmax_disk_mb = 0.12\nsegment_max_mb = 0.02\nflush_interval = "200ms"\n'
    agent, sim, _ = await _record(tmp_path, atlas, extra, rate=3000.0, duration=5.5)
    assert agent.recorder is not None
    status = agent.recorder.status()
    files = sorted((tmp_path / "state" / "recordings").rglob("*.csv.gz"))
    on_disk = sum(p.stat().st_size for p in files)
    budget = int(0.12 * 1024 * 1024)
    assert status["counters"].get("deleted_local_only", 0) >= 3, status
    assert on_disk <= budget and status["disk_bytes"] == on_disk
    # What is left is the newest: a contiguous run of sequence numbers ending with the last one.
    seqs = [int(p.name.split("_", 1)[0]) for p in files]
    last = json.loads((files[0].parent / "sequence.json").read_text())["last"]
    assert seqs == list(range(last - len(seqs) + 1, last + 1)), seqs
    # ... and holds the newest frames the bench wrote, exactly.
    written = split_by_step(sim.port.lines)
    kept = [row for p in files for row in segment_rows(p.read_bytes(), written.columns)]
    kept.sort(key=lambda r: r[0])
    assert kept == written.all[len(written.all) - len(kept) :]
    metrics = agent.metrics.render().decode()
    deleted = status["counters"]["deleted_local_only"]
    assert f'edge_agent_recording_segments_deleted_total{{reason="local_only"}} {deleted}.0' in metrics
