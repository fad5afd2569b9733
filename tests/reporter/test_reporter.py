"""Reporter against the real Atlas emulator over loopback, with a real Outbox in tmp_path, anomalies made
by the real Detector from frames and grouped by the real IncidentGrouper."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import matplotlib.image
from reporter_helpers import (
    NORMAL,
    TOKEN,
    Bench,
    fault,
    files_containing,
    issues,
    make_bench,
    sessions,
    wait_for,
)

from edge_agent.config import DESCRIPTION_FIELDS
from edge_agent.detect import AnomalyClosed, AnomalyOpened
from edge_agent.emulators.atlas import AtlasEmulator
from edge_agent.evidence.plot import plot_size
from edge_agent.incidents import IncidentClosed

NAME = re.compile(r"^bench-07_supply_v_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ_limits")


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def _attachment_names(emulator: AtlasEmulator, ids: list[str]) -> list[str]:
    by_id = {a["attachment_id"]: a for s in sessions(emulator) for a in s["attachments"]}
    return [by_id[i]["attachment_name"] for i in ids]


async def _one_fault(bench: Bench, samples: int = 5, **row: float) -> str:
    """One over-voltage (plus whatever `row` adds); returns the incident id once it is closed."""
    await bench.idle(3.0)
    before = len(bench.opened_incidents())
    events = await bench.feed([{**fault(), **row}] * samples)
    assert any(isinstance(e, AnomalyOpened) for e in events)
    events = await bench.idle(3.0)  # clears (0.5 s), the quiet period (1 s) and `post` (1 s) pass
    assert any(isinstance(e, AnomalyClosed) for e in events)
    (incident_id,) = bench.opened_incidents()[before:]
    assert any(isinstance(e, IncidentClosed) and e.incident.id == incident_id for e in bench.incident_events)
    return incident_id


async def _settled(emulator: AtlasEmulator, bench: Bench, count: int, comments: list[int]) -> list[Any]:
    await bench.outbox.drain(10.0)
    await wait_for(
        lambda: len(issues(emulator)) == count and [len(i["comments"]) for i in issues(emulator)] == comments,
        what=f"{count} issues with {comments} comments",
    )
    return issues(emulator)


async def test_one_anomaly_one_issue_with_snapshot_and_closing_evidence(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path, plots=True)  # the plot is checked below
    incident_id = await _one_fault(bench)
    (issue,) = await _settled(emulator, bench, 1, [2])
    (session,) = sessions(emulator)
    assert session["session_title"].startswith("bench-07 run ")
    assert issue["priority"] == "high"
    assert issue["description"] == []
    # Tags a person filters by (the rule's kind, not its index), and the unique tag the agent looks it up by
    assert issue["tags"] == ["bench-07", "supply_v", "rule:limits", f"edge-agent:{incident_id}"]
    assert issue["session_ids"] == [session["session_id"]]
    snapshot_names = _attachment_names(emulator, issue["attachment_ids"])
    assert [n[-9:] for n in snapshot_names] == ["_open.csv", "open.json"]
    assert all(NAME.match(n) for n in snapshot_names), snapshot_names  # readable, not an id
    assert issue["title"] == "[bench-07] supply_v above max 12.6 (peak 13.5)"
    # The snapshot: frames from `pre` (2 s) before the start up to the open, byte-faithful values.
    snap = _csv_rows(emulator.attachment_bytes(issue["attachment_ids"][0]))
    started = next(f for f in bench.frames if f.values["supply_v"] > 12.6)
    expected = [f for f in bench.frames if started.mono - 2.0 <= f.mono <= started.mono + 10]
    assert [float(r["supply_v"]) for r in snap] == [f.values["supply_v"] for f in expected[: len(snap)]]
    assert float(snap[-1]["supply_v"]) == 13.5 and float(snap[0]["offset_s"]) <= -1.9
    assert {r["source"] for r in snap} == {"bench"}
    summary = json.loads(emulator.attachment_bytes(issue["attachment_ids"][1]))
    assert summary["incident"]["id"] == incident_id and summary["incident"]["severity"] == "high"
    assert [m["channel"] for m in summary["incident"]["members"]] == ["supply_v"]
    opening, closing = issue["comments"]
    assert opening["content"].splitlines()[-1] == f"edge-agent:{incident_id}:open"
    assert closing["content"].splitlines()[-1] == f"edge-agent:{incident_id}:close"
    for words in (
        "Incident over: 1 anomaly on supply_v (source bench), severity high.",
        "Timeline",
        "+0.000 s  supply_v above max 12.6 (peak 13.5); limits rule on bench, severity high, lasted",
        "Duration:",
    ):
        assert words in closing["content"], words
    assert "rule0" not in closing["content"] + opening["content"]
    names = [a["attachment_name"] for a in closing["attachments"]]
    assert [n[-4:] for n in names] == [".csv", "json", ".png"] and all(NAME.match(n) for n in names)
    assert names[0] != snapshot_names[0]
    # The plot (issue 13 point 2): a PNG that decodes, of the documented size (one panel per channel of
    # the source), named like the evidence; its summary told it the rule's limits.
    png = emulator.attachment_bytes(closing["attachments"][2]["attachment_id"])
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (plot_size(2)[1], plot_size(2)[0]) and float(image.std()) > 0.05
    final = json.loads(emulator.attachment_bytes(closing["attachments"][1]["attachment_id"]))["incident"]
    assert final["limits"]["supply_v"] == {"min": 11.4, "max": 12.6}
    full = _csv_rows(emulator.attachment_bytes(closing["attachments"][0]["attachment_id"]))
    values = [float(r["supply_v"]) for r in full]
    assert values.count(13.5) == 5 and values[0] == 12.0 and values[-1] == 12.0  # pre and post around
    # Evidence files were owned by delivered jobs: gone from disk; no token anywhere in state.
    await bench.stop()
    assert not list((tmp_path / "evidence").glob("*.csv"))
    assert files_containing(tmp_path, TOKEN.encode()) == []


async def test_a_fault_on_two_channels_in_one_read_is_one_issue_with_both_in_one_csv(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """Both channels trip on the same frame (the reporter race of issue 10: several channels at once):
    one issue, both channels and rules in its tags, one evidence CSV with both, one timeline."""
    bench = await make_bench(emulator, tmp_path)
    incident_id = await _one_fault(bench, temp_c=95.0)
    (issue,) = await _settled(emulator, bench, 1, [3])
    assert set(issue["tags"]) == {
        "bench-07",
        "supply_v",
        "temp_c",
        "rule:limits",
        f"edge-agent:{incident_id}",
    }
    assert issue["priority"] == "high"
    _, grew, closing = issue["comments"]
    assert grew["content"].splitlines()[-1] == f"edge-agent:{incident_id}:grew1"
    assert grew["content"].startswith(
        "1 more anomaly joined this incident (now 2 anomalies on supply_v, temp_c):\n"
        "+0.000 s  temp_c above max 80 (peak 95); limits rule on bench, severity low"
    )
    assert (
        issue["title"] == "[bench-07] supply_v above max 12.6 (peak 13.5) +1 more"
    )  # retitled by the update
    full = _csv_rows(emulator.attachment_bytes(closing["attachments"][0]["attachment_id"]))
    assert {"supply_v", "temp_c"} <= set(full[0]) and [float(r["temp_c"]) for r in full].count(95.0) == 5
    timeline = closing["content"]
    assert timeline.index("supply_v above") < timeline.index("temp_c above")  # lead first
    await bench.stop()


async def test_a_channel_joining_after_the_first_report_is_one_comment_and_new_tags(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    await bench.idle(3.0)
    await bench.feed([fault()] * 8)  # supply_v opens the incident
    await bench.feed([fault(temp_c=90.0)] * 8)  # temp_c joins while supply_v is still out
    await bench.idle(3.0)
    (incident_id,) = bench.opened_incidents()
    (issue,) = await _settled(emulator, bench, 1, [3])
    assert {"temp_c", "rule:limits"} <= set(issue["tags"])
    assert "temp_c" in issue["comments"][1]["content"]
    assert issue["comments"][2]["content"].splitlines()[-1] == f"edge-agent:{incident_id}:close"
    await bench.stop()


async def test_on_a_bench_of_two_identical_devices_the_title_says_which_one(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """dut_a and dut_b both send temp_c: the issue's title names the port of the lead's, and the other
    device's temp_c joining counts as one more channel."""
    columns = ["supply_v", "temp_c"]
    serial = [{"name": "dut_a", "url": "/dev/ttyUSB0", "columns": columns},
              {"name": "dut_b", "url": "/dev/ttyUSB1", "columns": columns}]  # fmt: skip
    bench = await make_bench(emulator, tmp_path, serial=serial)
    for dut in ("dut_a", "dut_b"):
        await bench.idle(1.0, source=dut)
    await bench.feed([fault(supply_v=12.0, temp_c=90.0)] * 3, source="dut_b")
    (incident_id,) = bench.opened_incidents()
    await bench.outbox.drain(10.0)
    filed = await bench.client.find_issue_by_tag(f"edge-agent:{incident_id}")
    assert filed is not None and filed.title == "[bench-07] temp_c on dut_b above max 80 (peak 90)"
    await bench.feed([fault(supply_v=12.0, temp_c=95.0)] * 3, source="dut_a")  # joins: dut_b's still out
    for dut in ("dut_b", "dut_a"):
        await bench.idle(3.0, source=dut)
    (issue,) = await _settled(emulator, bench, 1, [3])
    assert issue["title"] == "[bench-07] temp_c on dut_b above max 80 (peak 90) +1 more"
    await bench.stop()


async def test_repeat_within_the_window_comments_then_new_issue_after_resolve(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path)
    first = await _one_fault(bench)
    second = await _one_fault(bench)
    (issue,) = await _settled(emulator, bench, 1, [4])
    by_marker = {c["content"].splitlines()[-1]: c for c in issue["comments"]}
    order = list(by_marker)
    # Each incident's comments in order; the first's closing one (its plot is drawn first) may come
    # after the repeat's opening one.
    assert order[0] == f"edge-agent:{first}:open"
    assert order.index(f"edge-agent:{first}:open") < order.index(f"edge-agent:{first}:close")
    assert order.index(f"edge-agent:{second}:open") < order.index(f"edge-agent:{second}:close")
    repeat = by_marker[f"edge-agent:{second}:open"]
    assert repeat["content"].startswith("Detected again")
    names = [a["attachment_name"] for a in repeat["attachments"]]
    assert [n[-9:] for n in names] == ["_open.csv", "open.json"]
    assert f"edge-agent:{second}" in issue["tags"]  # the repeat's tag finds this issue too
    # Resolved in Atlas: the next repeat is a new issue.
    emulator.store.issues[issue["uuid"]].fields.status = "resolved"
    third = await _one_fault(bench)
    await _settled(emulator, bench, 2, [4, 2])
    new = issues(emulator)[1]
    assert f"edge-agent:{third}" in new["tags"] and f"edge-agent:{third}" not in issues(emulator)[0]["tags"]
    await bench.stop()
    assert len(sessions(emulator)) == 1


async def test_beyond_the_repeat_window_a_new_issue_names_the_earlier_one(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    bench = await make_bench(emulator, tmp_path, incidents={"join_window": "1s", "repeat_window": "20s"})
    await _one_fault(bench)
    (first,) = await _settled(emulator, bench, 1, [2])
    await bench.feed([NORMAL] * 250)  # 25 s of normal frames: past the repeat window
    await _one_fault(bench)
    first_again, second = await _settled(emulator, bench, 2, [2, 2])
    assert first_again["uuid"] == first["uuid"]
    assert f"filed before as issue {first['uuid']}" in second["comments"][0]["content"]
    await bench.stop()


async def test_configured_description_blocks_are_filled_from_the_lead_anomaly(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """`atlas.description_blocks`: strings are templates of the lead anomaly's fields (`{id}` is the
    incident's); the block's shape is the user's (the grammar is not public), sent as configured."""
    blocks = [
        {"type": "heading", "text": "{title}"},
        {
            "type": "paragraph",
            "text": "{channel} on {bench}: peak {peak_value} ({measure}), {threshold}",
            "meta": {"incident": "{id}", "severity": "{severity}", "level": 2},
        },
        {"type": "list", "items": ["started {started_at}", "lens label: {label}"]},
        {"type": "every-field", "text": " ".join(f"{{{name}}}" for name in DESCRIPTION_FIELDS)},
    ]
    bench = await make_bench(emulator, tmp_path, atlas={"description_blocks": blocks})
    incident_id = await _one_fault(bench)
    (issue,) = await _settled(emulator, bench, 1, [2])
    heading, paragraph, items, every = issue["description"]
    unrendered = [name for name in DESCRIPTION_FIELDS if f"{{{name}}}" in every["text"]]
    assert unrendered == [] and incident_id in every["text"]  # every documented field renders
    assert heading == {"type": "heading", "text": issue["title"]}
    assert paragraph["text"] == "supply_v on bench-07: peak 13.5 (value), max 12.6"
    assert paragraph["meta"] == {"incident": incident_id, "severity": "high", "level": 2}
    assert items["type"] == "list" and items["items"][0].startswith("started 20")
    assert items["items"][1] == "lens label: "  # a limits anomaly has no label: empty, not "None"
    await bench.stop()


async def test_ticks_and_new_incidents_at_once_never_trip_over_each_other(
    emulator: AtlasEmulator, tmp_path: Path
) -> None:
    """Issue 10 point 7: the tick learned issue ids by walking the repeat threads across awaits while a
    second channel's incident added a thread (`dictionary changed size during iteration`), which
    restarted the tick component when several channels tripped at once. Here every job look-up the
    tick makes lets another incident of a new fault arrive in the middle of it (the real outbox, only
    slowed down): every incident is filed, and no tick fails."""
    from dataclasses import replace

    from edge_agent.detect.anomaly import AnomalyKey
    from edge_agent.incidents import IncidentOpened

    bench = await make_bench(emulator, tmp_path)
    await bench.idle(3.0)
    await bench.feed([fault()] * 5)  # one real incident: its anomaly is the template
    (template,) = [e.incident for e in bench.incident_events if isinstance(e, IncidentOpened)]
    waiting = [
        IncidentOpened(
            replace(
                template,
                id=f"race-{i}",
                members=(
                    replace(template.lead, id=f"a{i}", key=AnomalyKey(f"rule{i}:limits", "bench", f"ch{i}")),
                ),
            )
        )
        for i in range(20)
    ]
    arrivals: list[asyncio.Task[None]] = []
    real_job = bench.outbox.job

    async def job_with_an_arrival(job_id: int):  # type: ignore[no-untyped-def]
        if waiting:  # a new fault's incident arrives while this look-up is in flight
            arrivals.append(asyncio.create_task(bench.reporter.on_events([waiting.pop()])))
            await asyncio.sleep(0.01)
        return await real_job(job_id)

    bench.outbox.job = job_with_an_arrival  # type: ignore[method-assign]
    for _ in range(200):  # bounded: each tick lets one more arrive
        await bench.reporter.tick()
        if not waiting and all(t.done() for t in arrivals):
            break
        await asyncio.sleep(0)
    await asyncio.gather(*arrivals)  # raises what a handling raised
    bench.outbox.job = real_job  # type: ignore[method-assign]
    await bench.outbox.drain(20.0)
    await wait_for(lambda: len(issues(emulator)) == 21, within=20.0, what="21 issues")
    assert bench.reporter.counters["incidents_opened"] == 21
    await bench.stop()


async def test_evidence_cut_by_the_memory_budget_says_so(emulator: AtlasEmulator, tmp_path: Path) -> None:
    """3,000-channel lines into a 1 MiB ring: it holds well under a second, less than `pre` (2 s). The
    evidence still goes out, with what the ring held, and its JSON says it was cut and from when."""
    evidence = {"ring_seconds": "60s", "pre": "2s", "post": "1s", "max_duration": "30s", "memory_mb": 1}
    bench = await make_bench(emulator, tmp_path, evidence=evidence)
    wide = {f"aux{n}": float(n) for n in range(3000)}
    await bench.feed([{**NORMAL, **wide}] * 30)
    await bench.feed([{**fault(), **wide}] * 5)
    await bench.feed([{**NORMAL, **wide}] * 30)
    (issue,) = await _settled(emulator, bench, 1, [2])
    assert bench.rings.nbytes <= 1024 * 1024
    snapshot = json.loads(emulator.attachment_bytes(issue["attachment_ids"][1]))["evidence"]
    started = next(f for f in bench.frames if f.values["supply_v"] > 12.6).mono
    coverage = snapshot["coverage"]
    assert coverage["complete"] is False and coverage["cut_by"] == "memory"
    assert started - 2.0 < coverage["covered_from"] <= started  # the fault itself is still in it
    assert coverage["sources"]["bench"]["requested_from"] == started - 2.0
    rows = _csv_rows(emulator.attachment_bytes(issue["attachment_ids"][0]))
    assert float(rows[0]["offset_s"]) > -2.0 and float(rows[-1]["supply_v"]) == 13.5
    closing = issue["comments"][1]["attachments"][1]["attachment_id"]
    assert json.loads(emulator.attachment_bytes(closing))["evidence"]["coverage"]["cut_by"] == "memory"
    assert bench.rings.slices_cut["memory"] >= 2 and bench.rings.status()["slices_cut"]["memory"] >= 2
    await bench.stop()
