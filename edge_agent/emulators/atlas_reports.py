"""The Atlas emulator's analysis reports, asked of a test run, one of its cards or one of its steps: done
after a delay or a number of polls (the lifecycle a fault switch can make fail), and written by a
deterministic stand-in for Atlas's analysis. Page: atlas-test-runs.md."""

from __future__ import annotations

from collections import Counter

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import (
    USER_EMAIL,
    InvalidReference,
    Json,
    NotFound,
    Report,
    Tenant,
    TestRun,
    envelope,
    new_id,
)


class Reports(Tenant):
    """The reports of test runs."""

    def create_report(self, run_id: str, body: m.ReportCreate) -> Json:
        run = self._run(run_id)
        title_of = run.body.title
        if body.test_card_id is not None:
            card = next((c for c in run.cards if c.uuid == body.test_card_id), None)
            if card is None:
                raise InvalidReference(("test_card_id",), body.test_card_id, "test card id")
            title_of = card.title
            if body.test_step_id is not None:
                step = next((s for s in card.steps if s.uuid == body.test_step_id), None)
                if step is None:
                    raise InvalidReference(("test_step_id",), body.test_step_id, "test step id")
                title_of = step.title
        title = f"{title_of} – {body.scope.capitalize()} Analysis"
        report = Report(new_id(), title, body, new_id(), self._now(), self._lifecycle())
        run.reports.append(report)
        self._touch(run)
        return self._render_report(run, report)

    def _render_report(self, run: TestRun, report: Report) -> Json:
        status = report.lifecycle.status(self._clock())
        if status == "completed" and not report.content:
            report.content, report.summary = _write_report(run, report)
        return {
            "uuid": report.uuid,
            "title": report.title,
            "scope": report.body.scope,
            "status": status,
            "content": report.content,
            "summary": report.summary,
            "issues": [],
            "test_data": [d.render() for d in run.data] if status == "completed" else [],
            "job_run_id": report.job_run_id,
            "created_by": USER_EMAIL,
            "created_at": report.created_at,
        }

    def list_reports(self, run_id: str) -> Json:
        run = self._run(run_id)
        return envelope([self._render_report(run, r) for r in run.reports])

    def get_report(self, run_id: str, report_id: str) -> Json:
        run = self._run(run_id)
        report = next((r for r in run.reports if r.uuid == report_id), None)
        if report is None:
            raise NotFound(report_id)
        report.lifecycle.polls += 1
        return self._render_report(run, report)


def report_summary(report: Report) -> Json:
    # INFERRED: "report summaries" on cards and steps; the page does not list their fields.
    return {"uuid": report.uuid, "title": report.title, "scope": report.body.scope, "summary": report.summary}


def _write_report(run: TestRun, report: Report) -> tuple[str, str]:
    """A deterministic stand-in for Atlas's AI analysis: counts what the run holds."""
    steps = [s for c in run.cards for s in c.steps]
    counts = Counter(s.execution_status for s in steps)
    failed = [s.title for s in steps if s.execution_status == "failed"]
    summary = (
        f"{len(steps)} steps in {len(run.cards)} cards: "
        + ", ".join(f"{counts[s]} {s}" for s in m.EXECUTION_STATUSES if counts[s])
        if steps
        else f"No steps recorded in {run.test_run_id}."
    )
    lines = [
        f"# {report.title}",
        "",
        f"Scope: {report.body.scope}. Test run {run.test_run_id} ({run.body.title}).",
        f"Data files analysed: {', '.join(d.body.file_name for d in run.data) or 'none'}.",
        f"Failed steps: {', '.join(failed) or 'none'}.",
    ]
    if report.body.analysis_context:
        lines.append(f"Analysis context: {report.body.analysis_context}")
    lines += ["", summary]
    return "\n".join(lines), summary
