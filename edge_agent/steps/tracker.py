"""Step tracking: which test run, card and step is running, from stream markers, the control API
(`start_step`/`end_step`) or a config plan, and the step's outcome PATCHed to Atlas at its end.

Atlas objects (all through the outbox, one group per run so they are made in order): the test run
(unless `steps.test_run_id` names one), a card per card title (plan cards, the `card` the API gives,
else `<bench> steps`), and a step per started step (created at START, PATCHed at END). With a plan the
run, cards and steps are created up front and step names map to plan step titles.

Atlas requires `system_id` to create a test run: with neither `steps.test_run_id` nor a system id,
step outcomes are still computed (and shown on /status) but not sent, and the reason is logged once
and reported in `status()["atlas"]`.

The state (run, cards, steps, the running step) is kept in `<state_dir>/steps/state.json` under the
reporter's run id: an agent restarted after a crash continues the same Atlas test run. It is written
through on every change, and a failed write loses nothing (state_file.py); a damaged file is set aside
and the tracker starts a fresh state: a new Atlas test run.

Here: the step sequence (markers, API, plan) and each step's outcome; atlas_objects.py enqueues the
Atlas objects, spans.py keeps the anomalies an outcome is judged on, state_file.py keeps the state on
disk, titles.py names the steps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.headline import BenchPorts
from edge_agent.config import EdgeAgentConfig
from edge_agent.detect.anomaly import AnomalyEvent
from edge_agent.frames import StepEdge, StepMarker
from edge_agent.incidents import IncidentEvent
from edge_agent.logs import get_logger
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.state_health import StateFileHealth
from edge_agent.steps.atlas_objects import Refs, RunObjects, jobs_group
from edge_agent.steps.jobs import notes_as_sent, register_step_handlers
from edge_agent.steps.outcome import step_outcome
from edge_agent.steps.spans import StepSpans
from edge_agent.steps.state_file import StepStateFile
from edge_agent.steps.titles import step_title

log = get_logger(__name__)

MAX_COMPLETED_SHOWN = 20
# Test runs ended by `begin_next_run` whose Atlas ids stay known (in memory): the last recordings of a
# run are registered on it after the next run began. A few: runs end minutes apart, segments in seconds.
MAX_ENDED_RUNS_KEPT = 4


class StepTracker:
    def __init__(
        self,
        *,
        config: EdgeAgentConfig,
        outbox: Outbox,
        client: AtlasClient | None,
        state_dir: Path,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        timelines: Callable[[float], dict[str, float]] | None = None,
        health: StateFileHealth | None = None,
        incident_of: Callable[[str], str | None] | None = None,
    ) -> None:
        """`timelines(host_mono)`: each source's timeline at that host time (`SourceClocks.all_now`).
        A step's bounds are kept on every source's timeline, so that anomalies (on their source's) are
        compared with the step on the same clock, whether the step came from the API (host time) or
        from a marker (its source's timeline)."""
        self.config = config
        self.section = config.steps
        self.outbox = outbox
        self.client = client
        self.file = StepStateFile(state_dir, mono=mono, health=health)
        self._mono = mono
        self._wall = wall
        self._timelines = timelines or (lambda host_mono: {})
        # Which live incident an anomaly joined (the grouper knows at once; its events say so later).
        self._incident_of = incident_of or (lambda anomaly_id: None)
        self.bench = config.agent.bench
        self.spans = StepSpans(BenchPorts.of(config.serial))
        self._completed: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}
        self._ended_runs: dict[str, dict[str, Any]] = {}  # run key -> its state (MAX_ENDED_RUNS_KEPT)
        plan = self.section.plan
        self.system_id = self.section.system_id or (plan.system_id if plan is not None else "")
        self.atlas_disabled: str | None = None
        if client is None:
            self.atlas_disabled = "Atlas is not configured (atlas.url, token): outcomes are kept locally"
        elif not self.section.test_run_id and not self.system_id:
            self.atlas_disabled = (
                "no steps.test_run_id and no system_id (steps.system_id or steps.plan.system_id):"
                " Atlas needs a system to create a test run; outcomes are kept locally only"
            )
        self.objects = RunObjects(config=config, outbox=outbox, system_id=self.system_id, save=self._save)
        self.ignored_markers = 0
        # Called with the answer of every step that ends (`_end`), e.g. by the run analysis.
        self.step_ended: list[Callable[[dict[str, Any]], Awaitable[None]]] = []
        # Held while a step ends, its listeners included: a run's end (`settled`) waits for a step
        # ending at that moment, so its outcome is in the ended run's report and not the next run's.
        self._ending = asyncio.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self, run_key: str, run_started_wall: float) -> None:
        """`run_key`: the reporter's run id. The same key after a crash continues the saved state,
        also when a later test run of that key was begun (`begin_next_run`)."""
        if self.client is not None:
            register_step_handlers(self.outbox, self.client)
        saved = await self.file.load()
        if saved is not None and run_key in (saved.get("run_key"), saved.get("base_key")):
            self.state = saved
            self.spans.restore(saved.get("spans"), self._mono())
            log.info("steps_state_continued", run_key=saved.get("run_key"), current=saved.get("current"))
        else:
            self._fresh_state(run_key, run_started_wall, run_key, 1)
            await self._save()
        if self.atlas_disabled:
            log.warning("steps_atlas_disabled", reason=self.atlas_disabled)
            return
        await self._open_run()

    def _fresh_state(self, run_key: str, started_wall: float, base_key: str, sequence: int) -> None:
        self.state = {
            "run_key": run_key,
            "base_key": base_key,  # the reporter's run id, which a restart passes to start()
            "sequence": sequence,  # 1 for its first test run, 2 after one `begin_next_run`, ...
            "started_wall": started_wall,
            "run": {},
            "cards": {},
            "steps": {},
        }
        self.state["current"] = None

    async def _open_run(self) -> None:
        await self.objects.ensure_run(self.state)
        if self.section.plan is not None:
            for order, card in enumerate(self.section.plan.cards, 1):
                await self.objects.ensure_card(self.state, card.title, card.description, order)
                for step_order, step in enumerate(card.steps, 1):
                    await self.objects.ensure_step(
                        self.state, step.title, card.title, step.description, step_order
                    )

    async def begin_next_run(self, note: str) -> dict[str, Any]:
        """End this test run (a step still running ends with `note`) and begin the next one, keyed
        `<reporter run id>.<n>`: a sequencer ends a run without stopping the agent. Answers the key
        and sequence number of the run that ended. With `steps.test_run_id` the run is fixed by the
        user: refused with an `error` entry."""
        if self.section.test_run_id:
            return {"error": "steps.test_run_id names the test run: it is the user's to end, not the agent's"}
        await self.end_current(note)
        ended = {"run_key": self.state["run_key"], "sequence": self.state.get("sequence", 1)}
        base = str(self.state.get("base_key") or self.state["run_key"])
        sequence = int(self.state.get("sequence", 1)) + 1
        self.spans.keep_open()  # still open: not over yet
        self._ended_runs[str(self.state["run_key"])] = self.state
        for old in list(self._ended_runs)[:-MAX_ENDED_RUNS_KEPT]:
            del self._ended_runs[old]
        self._fresh_state(f"{base}.{sequence}", self._wall(), base, sequence)
        self.state["spans"] = self.spans.as_state()
        await self._save()
        log.info("steps_run_ended", ended=ended["run_key"], next=self.state["run_key"])
        if not self.atlas_disabled:
            try:
                await self._open_run()
            except OutboxError as exc:
                log.error("steps_enqueue_failed", step=None, error=str(exc))
        return ended

    async def close(self, clean: bool) -> None:
        """A clean shutdown ends the running step (its outcome says so); the state is kept either way."""
        if clean:
            await self.end_current("agent shut down")

    async def end_current(self, note: str) -> None:
        """End the running step, if one runs, with `note` saying why (no verdict: anomalies decide)."""
        current = self.state.get("current")
        if current:
            host = self._mono()
            await self._end(
                str(current["name"]), None, host, self._wall(), note=note, on=self._timelines(host)
            )

    async def _save(self) -> None:
        """Write the state through (state_file.py: a failed write keeps the change)."""
        await self.file.save(lambda: self.state)

    @property
    def unsaved(self) -> bool:
        return self.file.unsaved

    async def flush(self) -> bool:
        """Write the state if an earlier write failed; True when the file is current."""
        if self.file.unsaved:
            await self._save()
        return not self.file.unsaved

    # -- inputs -------------------------------------------------------------------------------------

    async def start_step(self, name: str, card: str | None = None) -> dict[str, Any]:
        host = self._mono()
        return await self._start(name, card, host, self._wall(), self._timelines(host))

    async def end_step(
        self, name: str, verdict: str | None = None, note: str | None = None
    ) -> dict[str, Any]:
        """`note`: what the sequencer says of the step (a test's failure message, a skip's reason); it
        leads the outcome's `exception` note."""
        host = self._mono()
        return await self._end(name, verdict, host, self._wall(), note=note or "", on=self._timelines(host))

    async def on_marker(self, marker: StepMarker) -> None:
        if self.section.source == "api":
            self.ignored_markers += 1  # the sequencer owns the steps; a stray marker must not fork them
            return
        # The marker's time is on its source's timeline; the other sources' are their nows.
        on = {**self._timelines(self._mono()), marker.source: marker.mono}
        if marker.edge is StepEdge.START:
            await self._start(marker.name, None, marker.mono, marker.wall, on)
        else:
            verdict = marker.verdict.value if marker.verdict is not None else None
            await self._end(marker.name, verdict, marker.mono, marker.wall, on=on)

    async def on_anomaly_events(self, events: Sequence[AnomalyEvent | IncidentEvent]) -> None:
        """Anomaly events make the spans a step's outcome is judged on; incident events say which
        incident (one Atlas issue) each anomaly is in, so the outcome's note can name the issue."""
        changed = self.spans.apply(events)
        if changed and self.state:
            await self._save_spans()

    async def context_lines(self) -> list[str]:
        """What an issue filed now says about the test: the run, card and step running, with their Atlas
        ids where Atlas has them already (else "pending": their jobs are still on the way)."""
        current = self.state.get("current") if self.state else None
        if not current:
            return []
        step = self.state["steps"].get(current["title"], {})
        card = self.state["cards"].get(current["card"], {})
        run = self.state["run"]
        ids = [
            await self.objects.known_id(entry, key)
            for entry, key in ((run, "run_id"), (card, "card_id"), (step, "step_id"))
        ]
        shown = [i or "pending" for i in ids]
        return [
            f"Test step running: {current['title']} (card {current['card']}).",
            f"Atlas: test run {shown[0]}, card {shown[1]}, step {shown[2]}.",
        ]

    async def _save_spans(self) -> None:
        """The running step's anomalies are durable (spans.py)."""
        self.state["spans"] = self.spans.as_state()
        await self._save()

    async def _start(
        self, name: str, card: str | None, mono: float, wall: float, on: dict[str, float]
    ) -> dict[str, Any]:
        current = self.state.get("current")
        if current:
            # A start without the previous end: the previous step ends here, and says so.
            note = f"ended by the start of {name!r}"
            await self._end(str(current["name"]), None, mono, wall, note=note, on=on)
        title, card_title = step_title(self.section, self.bench, self.state["steps"], name, card)
        if not self.atlas_disabled:
            try:
                await self.objects.ensure_step(self.state, title, card_title)
            except OutboxError as exc:
                log.error("steps_enqueue_failed", step=title, error=str(exc))
        else:
            self.state["steps"].setdefault(title, {"card": card_title})
        self.state["current"] = {
            "name": name, "title": title, "card": card_title, "mono": mono, "wall": wall, "on": on,
        }  # fmt: skip
        await self._save()
        return {"step": title, "card": card_title, "started_wall": wall}

    async def settled(self) -> None:
        """Return once no step is ending (a marker's or the API's end, its listeners included)."""
        async with self._ending:
            pass

    async def _end(
        self,
        name: str,
        verdict: str | None,
        mono: float,
        wall: float,
        note: str = "",
        on: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        async with self._ending:
            return await self._end_step(name, verdict, mono, wall, note, on)

    async def _end_step(
        self, name: str, verdict: str | None, mono: float, wall: float, note: str, on: dict[str, float] | None
    ) -> dict[str, Any]:
        current = self.state.get("current")
        if not current or current["name"] != name:
            running = current["name"] if current else None
            log.warning("steps_end_without_start", step=name, running=running)
            return {"error": f"step {name!r} is not running", "running": running}
        # The step on each source's timeline: (start, end) where both ends are known there.
        started_on: dict[str, float] = current.get("on") or {}
        ended_on = on or {}
        bounds = {s: (started_on[s], ended_on[s]) for s in started_on.keys() & ended_on.keys()}
        self.spans.join_incidents(self._incident_of)
        outcome = step_outcome(float(current["mono"]), mono, self.spans.spans(), verdict, bounds)
        exception = outcome.exception
        if note:
            exception = f"{note}; {exception}" if exception else note
        result = {
            "step": current["title"],
            "card": current["card"],
            "execution_status": outcome.execution_status,
            "exception": exception,
            "started_wall": current["wall"],
            "ended_wall": wall,
            "verdict": verdict,
        }
        if not self.atlas_disabled:
            try:
                await self.objects.send_outcome(
                    self.state, current, outcome.execution_status, exception, wall
                )
            except OutboxError as exc:
                log.error("steps_enqueue_failed", step=current["title"], error=str(exc))
                result["error"] = str(exc)
        self.state["current"] = None
        await self._save()
        self._completed = [*self._completed[-(MAX_COMPLETED_SHOWN - 1) :], result]
        self.spans.drop_ended_before(bounds, mono)
        await self._save_spans()
        log.info("step_ended", step=result["step"], status=outcome.execution_status)
        for listener in list(self.step_ended):
            await listener(dict(result))
        return result

    def jobs_group(self) -> str:
        """The outbox group of this test run's jobs: a job enqueued in it runs after every outcome
        enqueued before it (a run's report after its outcomes)."""
        return jobs_group(self.state)

    async def atlas_refs(self, title: str | None, run_key: str | None = None) -> Refs | None:
        """The Atlas ids of a step (`run_id`, `card_id`, `step_id`; with `title` None, the run's alone)
        as payload fields where known, else as dependencies on the jobs that create them: for jobs
        that refer to the step, such as a recording's data registration. `run_key`: the test run's
        (default the current one; one of the last MAX_ENDED_RUNS_KEPT ended runs is known too). None
        when steps are not sent to Atlas, or the run or the step is unknown."""
        state = self.state if run_key in (None, self.state.get("run_key")) else self._ended_runs.get(run_key)
        if self.atlas_disabled or not state:
            return None
        if title is None:
            return await self.objects.ref(state["run"], "run_id")
        step = state["steps"].get(title)
        if step is None:
            return None
        return await self.objects.step_refs(state, step, step["card"])

    def recent_steps(self) -> list[dict[str, Any]]:
        """The steps of the last while (the completed ones shown on /status, then the running one) with
        their host wall times: what an evidence plot draws as step boundaries."""
        spans = [
            {"name": c["step"], "started_wall": c["started_wall"], "ended_wall": c["ended_wall"]}
            for c in self._completed
        ]
        current = self.state.get("current") if self.state else None
        if current:
            spans.append({"name": current["title"], "started_wall": current["wall"], "ended_wall": None})
        return spans

    @property
    def running_step(self) -> str | None:
        """The name of the step running now, or None between steps."""
        current = self.state.get("current")
        return str(current["name"]) if current else None

    def status(self) -> dict[str, Any]:
        run = self.state.get("run") or {}
        return {
            "source": self.section.source,
            "atlas": self.atlas_disabled or "enabled",
            "run_id": run.get("run_id"),
            "current": self.state.get("current"),
            "completed": list(self._completed),
            "ignored_markers": self.ignored_markers,
            "state_file": self.file.status(),
        }

    async def shown_status(self) -> dict[str, Any]:
        """`status()` with the notes as Atlas shows them (`notes_as_sent`) and the running step as people
        read it (its wall start, not the tracker's timelines): for /status, the live page."""
        status = self.status()
        status["completed"] = await notes_as_sent(self.outbox, status["completed"])
        current = status["current"]
        if current:
            status["current"] = {
                "name": current["name"], "title": current["title"], "card": current["card"],
                "started_wall": current["wall"],
            }  # fmt: skip
        return status
