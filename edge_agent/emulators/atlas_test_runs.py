"""The Atlas emulator's test runs: their cards and steps (with each step's outcome), their data files
and their full-text search; a run renders with its reports (atlas_reports.py). Page:
atlas-test-runs.md."""

from __future__ import annotations

from collections import Counter

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import (
    SYSTEM_NAME,
    USER_EMAIL,
    Card,
    DataFile,
    InvalidReference,
    Json,
    NotFound,
    Step,
    TestRun,
    envelope,
    in_range,
    new_id,
)
from edge_agent.emulators.atlas_reports import Reports, report_summary


class TestRuns(Reports):
    """Test runs, cards, steps and data; a run renders with its reports, hence `Reports`."""

    def _card(self, run: TestRun, card_id: str) -> Card:
        for card in run.cards:
            if card.uuid == card_id:
                return card
        raise NotFound(card_id)

    def _step(self, card: Card, step_id: str) -> Step:
        for step in card.steps:
            if step.uuid == step_id:
                return step
        raise NotFound(step_id)

    def _render_step(self, run: TestRun, step: Step) -> Json:
        return {
            "uuid": step.uuid,
            "title": step.title,
            "description": step.description,
            "order": step.order,
            "step_type": step.step_type,
            "execution_status": step.execution_status,
            "exception": step.exception,
            "started_at": step.started_at,
            "ended_at": step.ended_at,
            "observations": [],
            "test_data": [d.render() for d in run.data if _associated(d, step_id=step.uuid)],
            "issues": [],
            "reports": [report_summary(r) for r in run.reports if r.body.test_step_id == step.uuid],
            "created_at": step.created_at,
            "updated_at": step.updated_at,
        }

    def _render_card(self, run: TestRun, card: Card) -> Json:
        return {
            "uuid": card.uuid,
            "title": card.title,
            "description": card.description,
            "order": card.order,
            "test_steps": [self._render_step(run, s) for s in card.steps],
            "issues": [],
            "test_data": [d.render() for d in run.data if _associated(d, card_id=card.uuid)],
            "reports": [
                report_summary(r)
                for r in run.reports
                if r.body.scope == "card" and r.body.test_card_id == card.uuid
            ],
            "created_at": card.created_at,
            "updated_at": card.updated_at,
        }

    def _render_run(self, run: TestRun) -> Json:
        return {
            "uuid": run.uuid,
            "test_run_id": run.test_run_id,
            "title": run.body.title,
            "description": run.body.description,
            "system_id": str(run.body.system_id),
            "system_name": SYSTEM_NAME,
            "test_cards": [self._render_card(run, c) for c in run.cards],
            "test_data": [d.render() for d in run.data],
            "reports": [self._render_report(run, r) for r in run.reports],
            "contributors": [USER_EMAIL],
            "created_by": USER_EMAIL,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
        }

    def _run_summary(self, run: TestRun) -> Json:
        statuses = Counter(s.execution_status for c in run.cards for s in c.steps)
        total = sum(statuses.values())
        # The page's example ({"todo": 1, "passed": 3} -> 0.75) makes this a fraction of steps that
        # have left `todo`, and lists only the statuses that occur.
        completion = (total - statuses.get("todo", 0)) / total if total else 0.0
        return {
            "uuid": run.uuid,
            "test_run_id": run.test_run_id,
            "title": run.body.title,
            "system_id": str(run.body.system_id),
            "system_name": SYSTEM_NAME,
            "completion_pct": completion,
            "step_status_counts": {s: statuses[s] for s in m.EXECUTION_STATUSES if statuses[s]},
            "contributors": [USER_EMAIL],
            "asset_names": [f"Asset {str(a)[:8]}" for a in run.body.asset_ids],
            "asset_count": len(run.body.asset_ids),
            "issue_count": len(run.body.issue_ids),
            "card_count": len(run.cards),
            "file_count": len(run.data),
            "report_count": len(run.reports),
            "created_by": USER_EMAIL,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
        }

    def create_test_run(self, body: m.TestRunCreate) -> Json:
        for i, issue_id in enumerate(body.issue_ids):
            if str(issue_id) not in self.issues:
                raise InvalidReference(("issue_ids", i), str(issue_id), "issue id")
        self._run_counter += 1
        now = self._now()
        run = TestRun(new_id(), f"TR-{self._run_counter:04d}", body, now, now)
        for order, template_id in enumerate(body.template_ids, start=1):
            # INFERRED: templates are not emulated; each becomes an empty card named after it.
            run.cards.append(Card(new_id(), f"Card from template {template_id}", "", order, now, now))
        self.test_runs[run.uuid] = run
        return self._render_run(run)

    def list_test_runs(self, query: m.TestRunListQuery) -> Json:
        return envelope([self._run_summary(r) for r in self._filtered_runs(query)])

    def _filtered_runs(self, query: m.TestRunListQuery) -> list[TestRun]:
        return [
            run
            for run in reversed(self.test_runs.values())
            if (query.system_id is None or run.body.system_id == query.system_id)
            and (query.has_reports is None or bool(run.reports) == query.has_reports)
            and in_range(run.created_at, query)
        ]

    def search_test_runs(self, query: m.TestRunSearchQuery) -> Json:
        """Full-text only (case-insensitive substring): the live semantic search is not emulated."""
        needle = query.q.lower()
        results: list[Json] = []
        for run in self._filtered_runs(query):
            matches = [
                match
                for match in _components(run)
                if needle in match["text"].lower()
                and (not query.component_types or match["component_type"] in query.component_types)
            ]
            if matches:
                summary = self._run_summary(run)
                results.append(
                    {
                        "test_run": summary,
                        "score": round(min(1.0, 0.5 + 0.1 * len(matches)), 3),
                        "matches": [
                            {k: v for k, v in match.items() if k != "text"}
                            | {"snippet": match["text"][:200], "match_type": "fulltext"}
                            for match in matches
                        ],
                    }
                )
        results.sort(key=lambda r: -float(r["score"]))
        return {"results": results[query.offset : query.offset + query.limit], "total_count": len(results)}

    def get_test_run(self, run_id: str) -> Json:
        return self._render_run(self._run(run_id))

    def update_test_run(self, run_id: str, body: m.TestRunUpdate) -> Json:
        run = self._run(run_id)
        changes = {k: v for k, v in body.model_dump(include=body.model_fields_set).items() if v is not None}
        run.body = run.body.model_copy(update=changes)
        self._touch(run)
        return self._render_run(run)

    def delete_test_run(self, run_id: str) -> None:
        self._run(run_id)
        del self.test_runs[run_id]

    def add_data(self, run_id: str, body: m.DataFileCreate) -> Json:
        run = self._run(run_id)
        assoc = body.associate_with
        if assoc is not None:
            card = None
            if assoc.test_card_id is not None:
                card = next((c for c in run.cards if c.uuid == assoc.test_card_id), None)
                if card is None:
                    raise InvalidReference(
                        ("associate_with", "test_card_id"), assoc.test_card_id, "test card id"
                    )
            if assoc.test_step_id is not None:
                cards = [card] if card is not None else run.cards
                if not any(s.uuid == assoc.test_step_id for c in cards for s in c.steps):
                    raise InvalidReference(
                        ("associate_with", "test_step_id"), assoc.test_step_id, "test step id"
                    )
        record = DataFile(new_id(), body, self._now())
        run.data.append(record)
        self._touch(run)
        return record.render()

    def list_data(self, run_id: str) -> Json:
        return envelope([d.render() for d in self._run(run_id).data])

    def delete_data(self, run_id: str, file_id: str) -> None:
        run = self._run(run_id)
        record = next((d for d in run.data if d.uuid == file_id), None)
        if record is None:
            raise NotFound(file_id)
        run.data.remove(record)
        self._touch(run)

    def add_card(self, run_id: str, body: m.CardCreate) -> Json:
        run = self._run(run_id)
        now = self._now()
        title = body.title if body.title is not None else f"Card from template {body.template_id}"
        order = body.order if body.order is not None else len(run.cards) + 1
        card = Card(new_id(), title, body.description, order, now, now)
        run.cards.append(card)
        self._touch(run)
        return self._render_card(run, card)

    def update_card(self, run_id: str, card_id: str, body: m.CardUpdate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        if body.title is not None:
            card.title = body.title
        if body.description is not None:
            card.description = body.description
        self._touch(run, card)
        return self._render_card(run, card)

    def delete_card(self, run_id: str, card_id: str) -> None:
        run = self._run(run_id)
        run.cards.remove(self._card(run, card_id))
        self._touch(run)

    def add_step(self, run_id: str, card_id: str, body: m.StepCreate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        now = self._now()
        order = body.order if body.order is not None else len(card.steps) + 1
        step = Step(new_id(), body.title, body.description, order, body.step_type, now, now)
        card.steps.append(step)
        self._touch(run, card)
        return self._render_step(run, step)

    def update_step(self, run_id: str, card_id: str, step_id: str, body: m.StepUpdate) -> Json:
        run = self._run(run_id)
        card = self._card(run, card_id)
        step = self._step(card, step_id)
        sent = body.model_dump(include=body.model_fields_set)
        for key in ("title", "description", "execution_status"):
            if sent.get(key) is not None:
                setattr(step, key, sent[key])
        for key in ("exception", "started_at", "ended_at"):  # nullable: an explicit null clears them
            if key in sent:
                setattr(step, key, sent[key])
        self._touch(run, card, step)
        return self._render_step(run, step)

    def delete_step(self, run_id: str, card_id: str, step_id: str) -> None:
        run = self._run(run_id)
        card = self._card(run, card_id)
        card.steps.remove(self._step(card, step_id))
        self._touch(run, card)


def _associated(data: DataFile, *, card_id: str | None = None, step_id: str | None = None) -> bool:
    assoc = data.body.associate_with
    if assoc is None:
        return False
    if step_id is not None:
        return assoc.test_step_id == step_id
    return assoc.test_card_id == card_id and assoc.test_step_id is None


def _components(run: TestRun) -> list[Json]:
    found: list[Json] = [
        {
            "component_type": "run",
            "component_id": run.uuid,
            "component_title": run.body.title,
            "path": run.body.title,
            "text": f"{run.body.title} {run.body.description}",
        }
    ]
    for card in run.cards:
        found.append(
            {
                "component_type": "card",
                "component_id": card.uuid,
                "component_title": card.title,
                "path": card.title,
                "text": f"{card.title} {card.description}",
            }
        )
        for step in card.steps:
            found.append(
                {
                    "component_type": "step",
                    "component_id": step.uuid,
                    "component_title": step.title,
                    "path": f"{card.title} > {step.title}",
                    "text": f"{step.title} {step.description} {step.exception or ''}".strip(),
                }
            )
    for report in run.reports:
        found.append(
            {
                "component_type": "report",
                "component_id": report.uuid,
                "component_title": report.title,
                "path": report.title,
                "text": f"{report.title} {report.content}",
            }
        )
    return found
