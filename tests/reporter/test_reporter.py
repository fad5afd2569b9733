"""Reporter against the real Atlas emulator over loopback, with a real Outbox in tmp_path and anomalies
made by the real Detector from frames."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from reporter_helpers import TOKEN, Bench, fault, files_containing, issues, make_bench, sessions, wait_for

from edge_agent.config import DESCRIPTION_FIELDS
from edge_agent.detect import AnomalyClosed, AnomalyOpened
from edge_agent.emulators.atlas import AtlasEmulator


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _attachment_names(emulator: AtlasEmulator, ids: list[str]) -> list[str]:
    by_id = {a["attachment_id"]: a for s in sessions(emulator) for a in s["attachments"]}
    return [by_id[i]["attachment_name"] for i in ids]


async def _one_fault(bench: Bench, samples: int = 5) -> str:
    await bench.idle(3.0)
    events = await bench.feed([fault()] * samples)
    opened = [e for e in events if isinstance(e, AnomalyOpened)]
    assert len(opened) == 1
    events = await bench.idle(2.5)  # clears (0.5 s) and lets `post` (1 s) pass
    assert any(isinstance(e, AnomalyClosed) for e in events)
    return opened[0].anomaly.id


async def test_one_anomaly_one_issue_with_snapshot_and_closing_evidence(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    anomaly_id = await _one_fault(bench)
    await bench.outbox.drain(10.0)
    await wait_for(lambda: len(issues(emulator)) == 1 and len(issues(emulator)[0]["comments"]) == 2)
    (issue,) = issues(emulator)
    (session,) = sessions(emulator)
    assert session["session_title"].startswith("bench-07 run ")
    assert issue["priority"] == "high"
    assert issue["description"] == []
    assert set(issue["tags"]) == {"bench-07", "supply_v", "rule0:limits", f"edge-agent:{anomaly_id}"}
    assert issue["session_ids"] == [session["session_id"]]
    assert _attachment_names(emulator, issue["attachment_ids"]) == [
        f"{anomaly_id}.open.csv",
        f"{anomaly_id}.open.json",
    ]
    assert "supply_v" in issue["title"] and "bench-07" in issue["title"]
    # The snapshot: frames from `pre` (2 s) before the start up to the open, byte-faithful values.
    snap = _csv_rows(emulator.attachment_bytes(issue["attachment_ids"][0]))
    started = next(f for f in bench.frames if f.values["supply_v"] > 12.6)
    expected = [f for f in bench.frames if started.mono - 2.0 <= f.mono <= started.mono + 10]
    assert [float(r["supply_v"]) for r in snap] == [f.values["supply_v"] for f in expected[: len(snap)]]
    assert float(snap[-1]["supply_v"]) == 13.5 and float(snap[0]["mono_offset_s"]) <= -1.9
    summary = json.loads(emulator.attachment_bytes(issue["attachment_ids"][1]))
    assert summary["anomaly"]["id"] == anomaly_id and summary["anomaly"]["severity"] == "high"
    opening, closing = issue["comments"]
    assert f"edge-agent:{anomaly_id}:open" in opening["content"]
    assert f"edge-agent:{anomaly_id}:close" in closing["content"]
    for words in ("Anomaly over", "Peak: value 13.5", "max 12.6", "Duration:", "supply_v"):
        assert words in closing["content"]
    names = [a["attachment_name"] for a in closing["attachments"]]
    assert names == [f"{anomaly_id}.csv", f"{anomaly_id}.json"]
    full = _csv_rows(emulator.attachment_bytes(closing["attachments"][0]["attachment_id"]))
    values = [float(r["supply_v"]) for r in full]
    assert values.count(13.5) == 5 and values[0] == 12.0 and values[-1] == 12.0  # pre and post around
    # Evidence files were owned by delivered jobs: gone from disk; no token anywhere in state.
    await bench.stop()
    assert not list((tmp_path / "evidence").glob("*.csv"))
    assert files_containing(tmp_path, TOKEN.encode()) == []


async def test_repeat_while_open_comments_then_new_issue_after_resolve(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    first = await _one_fault(bench)
    second = await _one_fault(bench)
    await bench.outbox.drain(10.0)
    await wait_for(lambda: len(issues(emulator)) == 1 and len(issues(emulator)[0]["comments"]) == 4)
    (issue,) = issues(emulator)
    contents = [c["content"] for c in issue["comments"]]
    assert f"edge-agent:{first}:open" in contents[0]
    assert f"edge-agent:{second}:open" in contents[2] and "again" in contents[2]
    assert [a["attachment_name"] for a in issue["comments"][2]["attachments"]] == [
        f"{second}.open.csv",
        f"{second}.open.json",
    ]
    assert f"edge-agent:{second}:close" in contents[3]
    # Resolved in Atlas: the next repeat is a new issue.
    emulator.store.issues[issue["uuid"]].fields.status = "resolved"
    third = await _one_fault(bench)
    await bench.outbox.drain(10.0)
    await wait_for(lambda: len(issues(emulator)) == 2)
    new = issues(emulator)[1]
    assert f"edge-agent:{third}" in new["tags"]
    await wait_for(lambda: len(issues(emulator)[1]["comments"]) == 2)
    await bench.stop()
    assert len(sessions(emulator)) == 1


async def test_configured_description_blocks_are_filled_from_the_anomaly(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """`atlas.description_blocks`: strings are templates of the anomaly's fields; the block's shape is
    the user's (the grammar is not public), sent as configured."""
    blocks = [
        {"type": "heading", "text": "{title}"},
        {
            "type": "paragraph",
            "text": "{channel} on {bench}: peak {peak_value} ({measure}), {threshold}",
            "meta": {"anomaly": "{id}", "severity": "{severity}", "level": 2},
        },
        {"type": "list", "items": ["started {started_at}", "lens label: {label}"]},
        {"type": "every-field", "text": " ".join(f"{{{name}}}" for name in DESCRIPTION_FIELDS)},
    ]
    bench = await make_bench(emulator, tmp_path, atlas={"description_blocks": blocks})
    anomaly_id = await _one_fault(bench)
    await bench.outbox.drain(10.0)
    await wait_for(lambda: len(issues(emulator)) == 1)
    (issue,) = issues(emulator)
    heading, paragraph, items, every = issue["description"]
    unrendered = [name for name in DESCRIPTION_FIELDS if f"{{{name}}}" in every["text"]]
    assert unrendered == [] and anomaly_id in every["text"]  # every documented field renders
    assert heading == {"type": "heading", "text": issue["title"]}
    assert paragraph["text"] == "supply_v on bench-07: peak 13.5 (value), max 12.6"
    assert paragraph["meta"] == {"anomaly": anomaly_id, "severity": "high", "level": 2}
    assert items["type"] == "list" and items["items"][0].startswith("started 20")
    assert items["items"][1] == "lens label: "  # a limits anomaly has no label: empty, not "None"
    await bench.stop()
