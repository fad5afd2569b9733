"""Durable outbox: every Atlas write is a job in SQLite (WAL) before it is attempted.

`Outbox` (worker.py) is the component; `JobHandler` (model.py) is what a job kind plugs in and what a
group guarantees; policy.py says what is retried and for how long; store.py holds the jobs (their
lifecycle) on database.py's SQLite file (opening, transactions, compaction; schema.py its layout), and
views.py reads them for /status; clock.py is the outbox's own timeline (blind to wall-clock steps);
journal.py witnesses every commit outside SQLite and recovery.py puts back what a damaged `-wal` lost
and survives a damaged database file.
"""

from edge_agent.outbox.model import (
    BatchRef,
    DeliveryError,
    Job,
    JobHandler,
    JobSpec,
    JobState,
    Json,
    OutboxError,
    Permanent,
    Retryable,
    Unsatisfiable,
    Waiting,
)
from edge_agent.outbox.policy import (
    NOT_FINISHED_STATUS,
    RetryPolicy,
    Verdict,
    classify_status,
    error_for_status,
    parse_retry_after,
)
from edge_agent.outbox.recovery import RecoveryReport, RestoreReport
from edge_agent.outbox.worker import Outbox

__all__ = [
    "NOT_FINISHED_STATUS",
    "BatchRef",
    "DeliveryError",
    "Job",
    "JobHandler",
    "JobSpec",
    "JobState",
    "Json",
    "Outbox",
    "OutboxError",
    "Permanent",
    "RecoveryReport",
    "RestoreReport",
    "RetryPolicy",
    "Retryable",
    "Unsatisfiable",
    "Verdict",
    "Waiting",
    "classify_status",
    "error_for_status",
    "parse_retry_after",
]
