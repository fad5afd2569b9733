"""The Atlas emulator's jobs and job runs: the job schemas it offers, jobs created and soft-deleted, and
runs whose status moves on the report lifecycle (pending, running, then done after a delay or a number
of polls) or is cancelled. Page: atlas-jobs.md."""

from __future__ import annotations

import copy

from edge_agent.emulators import atlas_models as m
from edge_agent.emulators.atlas_records import (
    USER_EMAIL,
    InvalidReference,
    Job,
    JobRun,
    Json,
    Tenant,
    envelope,
    get_or_404,
    in_range,
    new_id,
)

TERMINAL_JOB_STATUSES = frozenset({"completed", "failed", "cancelled"})

JOB_SCHEMAS: list[Json] = [
    {
        "job_type": "metagraph_update",
        "display_name": "Metagraph Update",
        "description": "Updates the system metagraph based on uploaded documents.",
        "user_facing_description": "Analyzes uploaded documents and updates the system graph.",
        "json_schema": {
            "type": "object",
            "properties": {
                "job_type": {"type": "string"},
                "system_id_or_name": {"type": "string"},
                "additional_context": {"type": "string"},
            },
            "required": ["job_type", "system_id_or_name"],
        },
        "creatable_on_ui": True,
        "creatable_by_agent": True,
        "visible_on_ui": True,
    },
    {
        # INFERRED: the job type is named by the jobs page; its config schema is not public.
        "job_type": "generate_issue",
        "display_name": "Generate Issue",
        "description": "Generates an issue from a session's context.",
        "user_facing_description": "Creates an issue from the files and conversation of a session.",
        "json_schema": {
            "type": "object",
            "properties": {"job_type": {"type": "string"}, "additional_context": {"type": "string"}},
            "required": ["job_type"],
        },
        "creatable_on_ui": False,
        "creatable_by_agent": True,
        "visible_on_ui": True,
    },
]


class Jobs(Tenant):
    """Jobs and their runs."""

    def job_schemas(self) -> list[Json]:
        return copy.deepcopy(JOB_SCHEMAS)

    def _job(self, job_id: str) -> Job:
        return get_or_404(self.jobs, job_id)

    def create_job(self, body: m.JobCreate) -> Json:
        config = body.config if body.config is not None else {"job_type": body.job_type}
        job = Job(
            new_id(),
            body.job_type,
            config,
            self._now(),
            str(body.source_session_id) if body.source_session_id else None,
            str(body.source_project_id) if body.source_project_id else None,
        )
        self.jobs[job.uuid] = job
        return job.render()

    def list_jobs(self, query: m.JobListQuery) -> Json:
        return envelope(
            [
                job.render()
                for job in reversed(self.jobs.values())
                if not job.is_deleted
                and (not query.job_types or job.job_type in query.job_types)
                and (not query.created_by_users or USER_EMAIL in query.created_by_users)
                and (not query.source_session_ids or job.source_session_id in query.source_session_ids)
                and in_range(job.created_at, query)
            ]
        )

    def get_job(self, job_id: str) -> Json:
        return self._job(job_id).render()

    def update_job(self, job_id: str, body: m.JobUpdate) -> Json:
        job = self._job(job_id)
        if body.config is not None:
            job.config = body.config
            job.updated_at = self._now()
        return job.render()

    def delete_job(self, job_id: str) -> Json:
        job = self._job(job_id)
        job.is_deleted = True
        job.updated_at = self._now()
        return {"message": f"Job {job_id} soft deleted"}

    def latest_run(self, job_id: str) -> Json | None:
        job = self._job(job_id)
        runs = [r for r in self.job_runs.values() if r.job is job]
        return self._render_job_run(runs[-1]) if runs else None

    def _render_job_run(self, run: JobRun) -> Json:
        return run.render(self._clock(), self._now() if run.lifecycle.final is None else run.created_at)

    def create_job_run(self, body: m.JobRunCreate) -> Json:
        job = self.jobs.get(body.job_id)
        if job is None or job.is_deleted:
            raise InvalidReference(("job_id",), body.job_id, "job id")
        config = {**job.config, **(body.config or {})}
        run = JobRun(new_id(), job, config, self._now(), self._lifecycle())
        self.job_runs[run.uuid] = run
        return self._render_job_run(run)

    def list_job_runs(self, query: m.JobRunListQuery) -> Json:
        now = self._clock()
        return envelope(
            [
                self._render_job_run(run)
                for run in reversed(self.job_runs.values())
                if (query.job_id is None or run.job.uuid == query.job_id)
                and (not query.job_types or run.job.job_type in query.job_types)
                and (not query.statuses or run.lifecycle.status(now) in query.statuses)
                and in_range(run.created_at, query)
            ]
        )

    def get_job_run(self, job_run_id: str) -> Json:
        run = get_or_404(self.job_runs, job_run_id)
        run.lifecycle.polls += 1
        return self._render_job_run(run)

    def cancel_job_run(self, job_run_id: str) -> Json:
        run = get_or_404(self.job_runs, job_run_id)
        cancelled = 0
        if run.lifecycle.status(self._clock()) not in TERMINAL_JOB_STATUSES:
            run.lifecycle.final = "cancelled"
            cancelled = 1
        return {"message": f"Job run {job_run_id} cancelled", "cancelled_count": cancelled}
