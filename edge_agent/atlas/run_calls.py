"""Atlas test runs, their cards and steps (a step's outcome recorded in Atlas's time shape), and the
analysis reports asked of a run, card or step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edge_agent.atlas.api import AtlasApi, segment
from edge_agent.atlas.errors import AtlasProtocolError, invalid
from edge_agent.atlas.models import EXECUTION_STATUSES, REPORT_SCOPES, Card, Report, Step, TestRun
from edge_agent.atlas.values import atlas_timestamp, enum_problems, step_title_problems


class RunCalls(AtlasApi):
    # -- test runs, cards, steps ------------------------------------------------------------------

    async def create_test_run(self, title: str, system_id: str, description: str = "") -> TestRun:
        if not title.strip() or not system_id:
            raise invalid("POST", "/test-runs", ["title and system_id are required"])
        body = {"title": title, "system_id": system_id, "description": description}
        return self._model(
            TestRun, await self.call("POST", "/test-runs", json_body=body), "POST", "/test-runs"
        )

    async def get_test_run(self, run_id: str) -> TestRun:
        path = f"/test-runs/{segment(run_id)}"
        return self._model(TestRun, await self.call("GET", path), "GET", path)

    async def create_card(
        self, run_id: str, title: str, description: str = "", order: int | None = None
    ) -> Card:
        path = f"/test-runs/{segment(run_id)}/cards"
        if not title.strip():
            raise invalid("POST", path, ["title must not be empty"])
        body: dict[str, Any] = {"title": title, "description": description}
        if order is not None:
            body["order"] = order
        return self._model(Card, await self.call("POST", path, json_body=body), "POST", path)

    async def create_step(
        self, run_id: str, card_id: str, title: str, description: str = "", order: int | None = None
    ) -> Step:
        path = f"/test-runs/{segment(run_id)}/cards/{segment(card_id)}/steps"
        problems = step_title_problems(title)
        if problems:
            raise invalid("POST", path, problems)
        body: dict[str, Any] = {"title": title, "description": description}
        if order is not None:
            body["order"] = order
        return self._model(Step, await self.call("POST", path, json_body=body), "POST", path)

    async def patch_step(
        self,
        run_id: str,
        card_id: str,
        step_id: str,
        *,
        execution_status: str | None = None,
        exception: str | None = None,
        started_at: datetime | float | None = None,
        ended_at: datetime | float | None = None,
        title: str | None = None,
        description: str | None = None,
    ) -> Step:
        """Record an outcome. Times are Unix seconds or datetimes, sent in Atlas's shape (UTC, no zone)."""
        path = f"/test-runs/{segment(run_id)}/cards/{segment(card_id)}/steps/{segment(step_id)}"
        problems = enum_problems("execution_status", execution_status, EXECUTION_STATUSES)
        if title is not None:
            problems += step_title_problems(title)
        fields: dict[str, Any] = {
            "execution_status": execution_status,
            "exception": exception,
            "started_at": None if started_at is None else atlas_timestamp(started_at),
            "ended_at": None if ended_at is None else atlas_timestamp(ended_at),
            "title": title,
            "description": description,
        }
        body = await self._patch(path, fields, problems)
        if body is None:
            return await self._read_step(run_id, card_id, step_id)
        return self._model(Step, body, "PATCH", path)

    # -- analysis reports -------------------------------------------------------------------------

    async def create_report(
        self,
        run_id: str,
        scope: str,
        *,
        test_card_id: str | None = None,
        test_step_id: str | None = None,
        analysis_context: str = "",
    ) -> Report:
        """Ask for Atlas's analysis of a run, or of one card or step of it (those ids are required for
        those scopes). Starts `pending`: poll `get_report` until a status of REPORT_FINAL_STATUSES."""
        path = f"/test-runs/{segment(run_id)}/reports"
        problems = enum_problems("scope", scope, REPORT_SCOPES)
        if scope in ("card", "step") and not test_card_id:
            problems.append(f"test_card_id is required for scope {scope}")
        if scope == "step" and not test_step_id:
            problems.append("test_step_id is required for scope step")
        if problems:
            raise invalid("POST", path, problems)
        body: dict[str, Any] = {"scope": scope, "analysis_context": analysis_context}
        if test_card_id:
            body["test_card_id"] = test_card_id
        if test_step_id:
            body["test_step_id"] = test_step_id
        return self._model(Report, await self.call("POST", path, json_body=body), "POST", path)

    async def get_report(self, run_id: str, report_id: str) -> Report:
        path = f"/test-runs/{segment(run_id)}/reports/{segment(report_id)}"
        return self._model(Report, await self.call("GET", path), "GET", path)

    async def list_reports(self, run_id: str) -> list[Report]:
        path = f"/test-runs/{segment(run_id)}/reports"
        return self._page(Report, await self.call("GET", path), "GET", path).items

    async def _read_step(self, run_id: str, card_id: str, step_id: str) -> Step:
        """A step as the server holds it, read through its run (steps have no GET of their own)."""
        run = await self.get_test_run(run_id)
        for card in run.test_cards:
            if card.uuid == card_id:
                for step in card.test_steps:
                    if step.uuid == step_id:
                        return step
        path = f"/test-runs/{segment(run_id)}"
        raise AtlasProtocolError("GET", path, reason=f"step {step_id} is not in card {card_id} of the run")
