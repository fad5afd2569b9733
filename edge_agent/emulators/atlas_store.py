"""The Atlas emulator's state and rules, with no I/O: takes validated request models, answers plain
JSON-able dicts shaped as in shared/api/atlas-*.md. Clocks are passed in, so lifecycles (report and job
run status) are testable without sleeping.

`AtlasStore` is the whole tenant: its records are in atlas_records.py, and each resource's rules in
its own module (atlas_sessions.py: sessions, attachments, issues; atlas_test_runs.py: test runs;
atlas_reports.py: their reports; atlas_jobs.py: jobs). Choices the pages leave open are marked
INFERRED where they are made.
"""

from __future__ import annotations

from edge_agent.emulators.atlas_jobs import Jobs
from edge_agent.emulators.atlas_records import Json
from edge_agent.emulators.atlas_sessions import Issues, Sessions
from edge_agent.emulators.atlas_test_runs import TestRuns


class AtlasStore(Sessions, Issues, TestRuns, Jobs):
    """Everything the emulated tenant holds. `now` gives Atlas timestamps, `clock` monotonic seconds."""

    def snapshot(self) -> Json:
        """Everything held, JSON-able, attachments as metadata (size, sha256), never raw bytes."""
        return {
            "sessions": [
                s.render([self.attachments[a].metadata() for a in s.attachment_ids if a in self.attachments])
                for s in self.sessions.values()
            ],
            "issues": [
                {
                    **self._render_issue(i),
                    "session_ids": list(i.fields.session_ids),
                    "attachment_ids": list(i.fields.attachment_ids),
                    "comments": [self._render_comment(c) for c in i.comments],
                    "files": [f.render() for f in i.files],
                }
                for i in self.issues.values()
            ],
            "test_runs": [
                {**self._render_run(r), "summary": self._run_summary(r)} for r in self.test_runs.values()
            ],
            "jobs": [j.render() for j in self.jobs.values()],
            "job_runs": [self._render_job_run(r) for r in self.job_runs.values()],
            "counts": {
                "sessions": len(self.sessions),
                "attachments": len(self.attachments),
                "issues": len(self.issues),
                "comments": sum(len(i.comments) for i in self.issues.values()),
                "test_runs": len(self.test_runs),
                "jobs": len(self.jobs),
                "job_runs": len(self.job_runs),
            },
        }
