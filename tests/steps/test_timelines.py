"""Steps from the control API (host time) are compared with anomalies on their source's timeline."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import RuleSection, load_config
from edge_agent.detect import Detector
from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.frames import Frame, StepEdge, StepMarker
from edge_agent.outbox import Outbox
from edge_agent.steps import StepTracker


class HostClock:
    def __init__(self) -> None:
        self.mono = 0.0

    def __call__(self) -> float:
        return self.mono


def anomaly_events(start: float, end: float) -> list[AnomalyEvent]:
    """A high anomaly on source dev from `start` to `end` on dev's timeline (its device clock)."""
    rule = RuleSection.model_validate(
        {"channel": "v", "kind": "limits", "max": 1.0, "severity": "high", "clear_after": 2.0}
    )
    detector = Detector([rule])
    events: list[AnomalyEvent] = []
    for t, v in ((start - 0.1, 0.0), (start, 5.0), (end, 0.0), (end + 2.5, 0.0)):  # closes 2 s after end
        events += detector.on_frame(Frame("dev", t, 1.7e9 + t, {"v": v}))
    return events


async def test_api_steps_use_the_timeline_of_the_anomalies_they_are_compared_with(tmp_path: Path) -> None:
    """Device dev's clock runs 1000 s ahead of the host's (anchored long ago, or a fast crystal):
    an anomaly at dev 1010.2..1010.5 happened during the API step at host 10..11."""
    path = tmp_path / "agent.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n[atlas]\nenabled = false\n', encoding="utf-8")
    config = load_config(path, environ={})
    outbox = Outbox(tmp_path, config.outbox)
    await outbox.start()
    host = HostClock()
    tracker = StepTracker(
        config=config, outbox=outbox, client=None, state_dir=tmp_path,
        mono=host, wall=lambda: 1.7e9 + host.mono, timelines=lambda host_mono: {"dev": host_mono + 1000.0},
    )  # fmt: skip
    try:
        await tracker.start("run-1", 1.7e9)
        host.mono = 10.0
        await tracker.start_step("during")
        await tracker.on_anomaly_events(anomaly_events(1010.2, 1010.5))
        host.mono = 11.0
        assert (await tracker.end_step("during"))["execution_status"] == "failed"
        host.mono = 20.0
        await tracker.start_step("after")
        host.mono = 21.0
        assert (await tracker.end_step("after"))["execution_status"] == "passed"
        # A marker of dev carries dev's time: the same comparison, with no mapping needed for dev.
        await tracker.on_marker(StepMarker("dev", StepEdge.START, "marked", 1030.0, 1.7e9))
        await tracker.on_anomaly_events(anomaly_events(1030.5, 1030.6))
        host.mono = 31.0
        await tracker.on_marker(StepMarker("dev", StepEdge.END, "marked", 1031.0, 1.7e9))
        assert tracker.status()["completed"][-1]["execution_status"] == "failed"
    finally:
        await outbox.close()
