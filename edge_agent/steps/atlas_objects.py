"""The Atlas objects of a test run as the step tracker asks for them: the run, its cards and steps, and
each step's outcome, all enqueued on the outbox in one group per run so they are made in order.

An object is known in the tracker's state by its Atlas id once its job delivered, else by its job: a
job that refers to it carries the id inline when known, else depends on the job that makes it. The
state (`run`, `cards`, `steps` entries) is the tracker's; it is passed in, and `save` writes it
through when an id is learnt or a job enqueued.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from edge_agent.atlas.jobs import not_before
from edge_agent.atlas.narrative import run_title
from edge_agent.config import EdgeAgentConfig
from edge_agent.outbox import JobState, Outbox, OutboxError
from edge_agent.steps.jobs import KIND_CARD, KIND_OUTCOME, KIND_RUN, KIND_STEP

Refs = tuple[dict[str, Any], tuple[int, ...]]


def jobs_group(state: dict[str, Any]) -> str:
    """The outbox group of a test run's jobs."""
    return f"steps:{state['run_key']}"


class RunObjects:
    def __init__(
        self, *, config: EdgeAgentConfig, outbox: Outbox, system_id: str, save: Callable[[], Awaitable[None]]
    ) -> None:
        self.config = config
        self.section = config.steps
        self.outbox = outbox
        self.system_id = system_id
        self.bench = config.agent.bench
        self._save = save

    async def ref(self, entry: dict[str, Any], key: str) -> Refs:
        """An object's id inline when known (its job delivered), else a dependency on its job."""
        if entry.get(key):
            return {key: entry[key]}, ()
        job_id = entry.get("job")
        if isinstance(job_id, int):
            job = await self.outbox.job(job_id)
            if job is not None and job.state is JobState.DONE and job.result and job.result.get(key):
                entry[key] = job.result[key]
                await self._save()
                return {key: entry[key]}, ()
            if job is not None:
                return {}, (job_id,)
        raise OutboxError(f"the {key} is unknown and its job is gone")

    async def known_id(self, entry: dict[str, Any], key: str) -> str | None:
        """An object's Atlas id if Atlas has it already (its job delivered), else None."""
        if entry.get(key):
            return str(entry[key])
        job_id = entry.get("job")
        if isinstance(job_id, int):
            job = await self.outbox.job(job_id)
            if job is not None and job.state is JobState.DONE and job.result and job.result.get(key):
                return str(job.result[key])
        return None

    async def step_refs(self, state: dict[str, Any], step: dict[str, Any], card_title: str) -> Refs:
        """A step's `step_id`, and with it its card's and run's ids, as payload fields where known,
        else as dependencies on the jobs that create them."""
        fields, deps = await self.ref(step, "step_id")
        if "step_id" in fields:
            card_fields, card_deps = await self.ref(state["cards"][card_title], "card_id")
            run_fields, run_deps = await self.ref(state["run"], "run_id")
            fields.update(card_fields, **run_fields)
            deps += card_deps + run_deps
        return fields, deps

    async def _enqueue(
        self, state: dict[str, Any], kind: str, payload: dict[str, Any], deps: tuple[int, ...]
    ) -> int:
        return await self.outbox.enqueue(kind, jobs_group(state), payload, deps=deps)

    async def ensure_run(self, state: dict[str, Any]) -> None:
        run = state["run"]
        if run.get("run_id") or run.get("job"):
            return
        if self.section.test_run_id:
            run["run_id"] = self.section.test_run_id
        else:
            template = (
                self.section.plan.run_title
                if self.section.plan is not None
                else self.config.atlas.session_title
            )
            started = float(state["started_wall"])
            sequence = int(state.get("sequence", 1))
            suffix = f" #{sequence}" if sequence > 1 else ""  # two runs begun in one minute: two titles
            payload = {
                "title": run_title(template, self.bench, started) + suffix,
                "system_id": self.system_id,
                "description": f"edge-agent on {self.bench}",
                "not_before": not_before(started),
            }
            run["job"] = await self._enqueue(state, KIND_RUN, payload, ())
        await self._save()

    async def ensure_card(
        self, state: dict[str, Any], title: str, description: str = "", order: int | None = None
    ) -> dict[str, Any]:
        cards: dict[str, Any] = state["cards"]
        card = cards.get(title)
        if card is None:
            fields, deps = await self.ref(state["run"], "run_id")
            payload = {"title": title, "description": description, "order": order, **fields}
            card = cards[title] = {"job": await self._enqueue(state, KIND_CARD, payload, deps)}
            await self._save()
        return dict(card)

    async def ensure_step(
        self,
        state: dict[str, Any],
        title: str,
        card_title: str,
        description: str = "",
        order: int | None = None,
    ) -> dict[str, Any]:
        steps: dict[str, Any] = state["steps"]
        step = steps.get(title)
        if step is None:
            await self.ensure_card(state, card_title)
            card = state["cards"][card_title]
            fields, deps = await self.ref(card, "card_id")
            if "card_id" in fields:
                run_fields, run_deps = await self.ref(state["run"], "run_id")
                fields.update(run_fields)
                deps += run_deps
            payload = {"title": title, "description": description, "order": order, **fields}
            step = steps[title] = {
                "job": await self._enqueue(state, KIND_STEP, payload, deps),
                "card": card_title,
            }
            await self._save()
        return dict(step)

    async def send_outcome(
        self,
        state: dict[str, Any],
        current: dict[str, Any],
        status: str,
        exception: str | None,
        ended_wall: float,
    ) -> None:
        """PATCH the running step (`current`) with its outcome. Raises OutboxError when it cannot be
        enqueued."""
        fields, deps = await self.step_refs(state, state["steps"][current["title"]], current["card"])
        payload = {
            "execution_status": status,
            "exception": exception,
            "started_at": float(current["wall"]),
            "ended_at": ended_wall,
            **fields,
        }
        await self._enqueue(state, KIND_OUTCOME, payload, deps)
