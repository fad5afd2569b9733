"""Atlas's analysis report of each test run: what the run was (its steps' outcomes, its incidents), the
report asked for when it ends, and where that report is (for /status).

A test run ends at a clean shutdown of the agent, or when a sequencer calls `POST /runs/end` (the
agent goes on, and the next step begins the next test run: `StepTracker.begin_next_run`). Then, with
`analysis.enabled`, one outbox chain (analysis/jobs.py): request the report (scope run, the context
built from the run) -> poll it -> post its summary on each of the run's issues. With
`analysis.per_failed_step`, a step that ends `failed` gets the same chain at once, scope step, its
summary posted on the issues of that step's incidents. A run in which no step ended gets no report
(an agent that files issues but is never told of a test step has no test to be analysed).

"The run's issues" are the issues of the incidents that opened while the run was the tracker's run
(an incident that joined an earlier issue as a repeat brings that issue in). They are learned from the
incident events, not from the outbox, whose delivered jobs may be purged.

The record (`<state_dir>/analysis/state.json`, through state_files) keeps each run's steps and
incidents until its report is requested, and the last reports with their job ids: an agent restarted
after a crash neither forgets a run nor requests a report twice (a report is marked before its jobs
are enqueued; a mark without job ids is looked up in the outbox at the next request). It is bounded:
at most MAX_RECORDED steps and incidents per run, each with a note or title of bounded length; the
rest are counted. A write that fails (disk full) keeps the record in memory and is retried by `flush`
from the agent's tick, like an enqueue that failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge_agent.analysis.context import IncidentRecord, StepRecord, run_context, step_context
from edge_agent.analysis.jobs import KIND_COMMENT, KIND_POLL, KIND_REQUEST, register_analysis_handlers
from edge_agent.analysis.status import ReportStatus
from edge_agent.atlas.client import AtlasClient
from edge_agent.atlas.headline import BenchPorts
from edge_agent.atlas.incident_text import incident_title
from edge_agent.atlas.jobs import not_before
from edge_agent.config import EdgeAgentConfig
from edge_agent.incidents import IncidentEvent, IncidentGrew, IncidentOpened
from edge_agent.logs import get_logger
from edge_agent.outbox import BatchRef, JobSpec, Outbox, OutboxError
from edge_agent.state_files import (
    dump_json,
    read_json_state_async,
    set_aside_async,
    write_atomic_async,
)
from edge_agent.state_health import StateFileHealth
from edge_agent.steps.outcome import ISSUE_PLACEHOLDER
from edge_agent.steps.tracker import StepTracker

log = get_logger(__name__)

STATE_FILE = "state.json"
MAX_RECORDED = 500  # steps, and incidents, recorded per run (each under ~0.5 kB)
MAX_REPORTS_KEPT = 20  # reports shown on /status (their jobs live on in the outbox either way)
MAX_ENDED_RUNS_KEPT = 50  # runs remembered as reported, against a second request after a crash


class RunAnalysis:
    def __init__(
        self,
        *,
        config: EdgeAgentConfig,
        outbox: Outbox,
        client: AtlasClient | None,
        steps: StepTracker,
        state_dir: Path,
        health: StateFileHealth | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.section = config.analysis
        self.bench = config.agent.bench
        self.ports = BenchPorts.of(config.serial)
        self.outbox = outbox
        self.client = client
        self.steps = steps
        self.path = Path(state_dir) / "analysis" / STATE_FILE
        self.health = health
        self._wall = wall
        self.state: dict[str, Any] = {"runs": {}, "reports": []}
        self._lock = asyncio.Lock()  # one state write at a time
        self._enqueue_lock = asyncio.Lock()  # one report's jobs enqueued at a time
        self._unsaved = False
        self.save_error: str | None = None
        self._marked_here: set[str] = set()  # reports marked by this process: no earlier jobs to find
        self._shown = ReportStatus(outbox)

    @property
    def disabled(self) -> str | None:
        """Why no report is asked for, or None."""
        if not self.section.enabled:
            return "analysis.enabled is false"
        if self.client is None:
            return "Atlas is not configured"
        return self.steps.atlas_disabled

    async def start(self) -> None:
        if self.client is not None:
            register_analysis_handlers(self.outbox, self.client)
        saved = await read_json_state_async(self.path, what="analysis", health=self.health)
        if (
            isinstance(saved, dict)
            and isinstance(saved.get("runs"), dict)
            and isinstance(saved.get("reports"), list)
        ):
            self.state = saved
        elif saved is not None:
            await set_aside_async(self.path, "not an analysis record", what="analysis", health=self.health)
        self.steps.step_ended.append(self._on_step_ended)

    # -- what a run was -----------------------------------------------------------------------------

    def _run(self, run_key: str | None = None) -> dict[str, Any]:
        key = run_key or str(self.steps.state.get("run_key") or "")
        runs: dict[str, dict[str, Any]] = self.state["runs"]
        return runs.setdefault(key, {"steps": [], "steps_over": 0, "incidents": [], "incidents_over": 0})

    async def on_incident_events(self, events: Sequence[IncidentEvent]) -> None:
        """Each incident that opens is the current run's (its title and severity kept up to date)."""
        changed = False
        for event in events:
            if not isinstance(event, IncidentOpened | IncidentGrew):
                continue
            run = self._run()
            title = incident_title(event.incident, self.bench, self.ports)
            record = asdict(IncidentRecord(event.incident.id, title, event.incident.severity))
            known = next((i for i in run["incidents"] if i["incident_id"] == record["incident_id"]), None)
            if known is not None:
                changed = changed or known != record
                known.update(record)
            elif isinstance(event, IncidentOpened):
                changed = True
                if len(run["incidents"]) < MAX_RECORDED:
                    run["incidents"].append(record)
                else:
                    run["incidents_over"] += 1
        if changed:
            await self._save()

    async def _on_step_ended(self, result: dict[str, Any]) -> None:
        run_key = str(self.steps.state.get("run_key") or "")
        step = StepRecord(
            str(result["step"]), str(result["card"]), str(result["execution_status"]),
            str(result.get("exception") or ""),
        )  # fmt: skip
        run = self._run(run_key)
        if len(run["steps"]) < MAX_RECORDED:
            run["steps"].append(asdict(step))
        else:
            run["steps_over"] += 1
        await self._save()
        if step.status == "failed" and self.section.per_failed_step and self.disabled is None:
            incidents = list(dict.fromkeys(ISSUE_PLACEHOLDER.findall(step.note)))
            known = {i["incident_id"]: i for i in run["incidents"]}
            records = [
                IncidentRecord(**known[i]) if i in known else IncidentRecord(i, f"incident {i}", "unknown")
                for i in incidents
            ]
            digest = hashlib.sha256(step.step.encode()).hexdigest()[:12]
            await self._request(
                key=f"{run_key}:step:{digest}",
                run_key=run_key,
                scope="step",
                step=step.step,
                context=step_context(self.bench, step, records),
                incidents=incidents,
                subject=f"the test step {step.step!r} of this issue's test run",
            )

    # -- the end of a run ---------------------------------------------------------------------------

    async def end_run(self, note: str) -> dict[str, Any]:
        """`POST /runs/end`: end the running step and the test run, ask for its report, begin the next
        run. An `error` entry when the test run is the user's (`steps.test_run_id`)."""
        if self.steps.section.test_run_id:
            return {"error": "steps.test_run_id names the test run: it is ended by its owner, not the agent"}
        await self.steps.settled()  # a step ending right now (its END marker) belongs to this run
        await self.steps.end_current(note)
        run_key = str(self.steps.state.get("run_key") or "")
        report = await self.run_ended()
        ended = await self.steps.begin_next_run(note)
        if "error" in ended:
            return ended
        return {"ended_run": run_key, "report": report, "next_run": self.steps.state.get("run_key")}

    async def run_ended(self) -> dict[str, Any] | None:
        """The current run is over (a clean shutdown, or `end_run`): ask for its report, once."""
        run_key = str(self.steps.state.get("run_key") or "")
        run = self._run(run_key)
        if self.disabled is not None:
            return {"requested": False, "why": self.disabled}
        if run.get("report"):
            return {"requested": True, "key": run["report"]}  # asked already (a retried /runs/end)
        if not run["steps"] and not run["steps_over"]:
            return {"requested": False, "why": "no step ended in the run: there is nothing to analyse"}
        steps = [StepRecord(**s) for s in run["steps"]]
        incidents = [IncidentRecord(**i) for i in run["incidents"]]
        key = f"{run_key}:run"
        await self._request(
            key=key,
            run_key=run_key,
            scope="run",
            step=None,
            context=run_context(
                self.bench,
                steps,
                incidents,
                steps_left_out=run["steps_over"],
                incidents_left_out=run["incidents_over"],
            ),
            incidents=[i.incident_id for i in incidents],
            subject="the test run of this issue",
        )
        run["report"] = key
        self._forget_ended_run(run_key)
        await self._save()
        return {"requested": True, "key": key}

    def _forget_ended_run(self, run_key: str) -> None:
        """An ended run keeps only its report key (no second request after a crash), and only the last
        MAX_ENDED_RUNS_KEPT of those are remembered."""
        runs: dict[str, Any] = self.state["runs"]
        runs[run_key] = {"report": runs[run_key]["report"], "steps": [], "steps_over": 0,
                         "incidents": [], "incidents_over": 0}  # fmt: skip
        ended = [k for k, r in runs.items() if r.get("report")]
        for old in ended[:-MAX_ENDED_RUNS_KEPT]:
            runs.pop(old, None)

    async def _request(
        self,
        *,
        key: str,
        run_key: str,
        scope: str,
        step: str | None,
        context: str,
        incidents: list[str],
        subject: str,
    ) -> None:
        reports: list[dict[str, Any]] = self.state["reports"]
        if any(r["key"] == key for r in reports):
            return
        refs = await self.steps.atlas_refs(step)
        entry: dict[str, Any] = {"key": key, "run_key": run_key, "scope": scope, "step": step,
                                 "requested_wall": self._wall(), "jobs": None, "error": None}  # fmt: skip
        if refs is None:
            entry["error"] = "the step is not known to Atlas"
        else:
            fields, deps = refs
            payload = {"key": key, "scope": scope, "context": context,
                       "not_before": not_before(self._wall()), **fields}  # fmt: skip
            entry["spec"] = {"group": self.steps.jobs_group(), "payload": payload, "deps": list(deps),
                             "incidents": incidents, "subject": subject}  # fmt: skip
        reports.append(entry)
        del reports[:-MAX_REPORTS_KEPT]
        self._marked_here.add(key)
        await self._save()  # marked before its jobs exist: a crash in between finds them (_enqueue)
        if refs is not None:
            await self._enqueue(entry)

    async def _enqueue(self, entry: dict[str, Any]) -> None:
        # One at a time: the tick's `flush` may find an entry marked (while its mark is being written)
        # that `_request` is about to enqueue; the second to come finds its jobs there.
        async with self._enqueue_lock:
            if entry["jobs"] is None and "spec" in entry:
                await self._enqueue_chain(entry)

    async def _enqueue_chain(self, entry: dict[str, Any]) -> None:
        spec = entry["spec"]
        key = entry["key"]
        existing = None if key in self._marked_here else await self._jobs_of(key)
        if existing is None:
            chain = f"report:{key}"
            specs = [
                JobSpec(KIND_REQUEST, spec["group"], spec["payload"], deps=tuple(spec["deps"])),
                JobSpec(KIND_POLL, chain, {"key": key, "poll_timeout": self.section.poll_timeout},
                        deps=(BatchRef(0),)),
            ]  # fmt: skip
            if self.section.comment_on_issues:
                specs += [
                    JobSpec(KIND_COMMENT, chain, {"key": key, "incident_id": i, "subject": spec["subject"]},
                            deps=(BatchRef(1), BatchRef(0)))
                    for i in spec["incidents"]
                ]  # fmt: skip
            try:
                ids = await self.outbox.enqueue_many(specs)
            except OutboxError as exc:  # disk full: kept, tried again by `flush`
                if entry["error"] is None:
                    log.error("analysis_report_not_enqueued", key=key, error=str(exc))
                entry["error"] = f"not requested yet: {exc}"
                self._unsaved = True
                return
            except ValueError as exc:  # the job making the run's id is gone (purged): never possible
                log.error("analysis_report_not_enqueued", key=key, error=str(exc), retried=False)
                entry.pop("spec")
                entry["error"] = f"cannot be requested: {exc}"
                await self._save()
                return
            existing = {"request": ids[0], "poll": ids[1], "comments": ids[2:]}
            log.info("analysis_report_enqueued", key=key, scope=entry["scope"], comments=len(ids) - 2)
        entry["jobs"] = existing
        entry["error"] = None
        await self._save()

    async def _jobs_of(self, key: str) -> dict[str, Any] | None:
        """The jobs of report `key` if an earlier process enqueued them (and crashed before saying so)."""
        found: dict[str, Any] = {"comments": []}
        for job in await self.outbox.jobs(None, limit=100_000):
            if job.payload.get("key") != key:
                continue
            name = {KIND_REQUEST: "request", KIND_POLL: "poll"}.get(job.kind)
            if name is not None:
                found[name] = job.id
            elif job.kind == KIND_COMMENT:
                found["comments"].append(job.id)
        return found if "request" in found and "poll" in found else None

    # -- durability ---------------------------------------------------------------------------------

    async def _save(self) -> None:
        self._unsaved = True
        async with self._lock:
            if not self._unsaved:
                return
            data = dump_json(self.state)  # encoded here: the thread must not see the dict change
            self._unsaved = False
            try:
                await write_atomic_async(self.path, data, health=self.health)
            except OSError as exc:
                self._unsaved = True
                if self.save_error is None:
                    log.error(
                        "analysis_state_not_saved", path=str(self.path), error=str(exc), kept_in_memory=True
                    )
                self.save_error = str(exc)
                return
        self.save_error = None

    @property
    def pending(self) -> bool:
        """Something to do again (a write or an enqueue that failed): the agent's tick calls `flush`."""
        return self._unsaved or any(r["jobs"] is None and "spec" in r for r in self.state["reports"])

    async def flush(self) -> None:
        for entry in list(self.state["reports"]):
            await self._enqueue(entry)
        if self._unsaved:
            await self._save()

    # -- reading ------------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        run = self.state["runs"].get(str(self.steps.state.get("run_key") or ""), {})
        return {
            "enabled": self.disabled is None,
            "disabled": self.disabled,
            "per_failed_step": self.section.per_failed_step,
            "current_run": {
                "run_key": self.steps.state.get("run_key"),
                "steps": len(run.get("steps", [])) + run.get("steps_over", 0),
                "incidents": len(run.get("incidents", [])) + run.get("incidents_over", 0),
            },
            "reports": await self._shown.reports(list(self.state["reports"])),
            "state_file": {"saved": not self._unsaved, "error": self.save_error},
        }
