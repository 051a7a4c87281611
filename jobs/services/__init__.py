"""Every rule that changes a job lives in this package, one module per role; callers import
the public services from here (`from jobs import services`).

- creation: jobs, tasks and provider events;
- commands: the operators' commands, one job at a time or by search;
- execution: a worker's claim, heartbeat, success and failure;
- maintenance: the scheduler's sweeps (lost runs, due jobs, unclaimed messages);
- retention: removing finished jobs and old audit events by the retention policy, in batches;
- quarantine: failing a job whose row a step cannot read or process, so it stops no one else;
- _rows: row helpers for these modules only (locking, bookkeeping, task status, deletes).

Each service is one transaction that locks its rows in a fixed order (jobs by id, then their
tasks by id), checks jobs.states, writes, audits and sends broker messages after commit.
"""

from jobs.services.commands import (
    SEARCH_DELETE_BATCH,
    job_command,
    job_delete,
    job_resolve,
    job_retry,
    job_trigger,
    job_update,
    jobs_search_delete,
)
from jobs.services.creation import job_create, jobs_create, provider_event_ingest, task_create
from jobs.services.execution import (
    ClaimedRun,
    job_claim,
    job_fail,
    job_heartbeat,
    job_succeed,
)
from jobs.services.maintenance import (
    jobs_dispatch_due,
    jobs_requeue_unclaimed,
    jobs_sweep_lost,
)
from jobs.services.quarantine import JobQuarantined, job_quarantine
from jobs.services.retention import (
    Pruner,
    PruneRun,
    RetentionPolicy,
    jobs_prune,
    retention_preview,
)

__all__ = [
    "SEARCH_DELETE_BATCH",
    "ClaimedRun",
    "JobQuarantined",
    "PruneRun",
    "Pruner",
    "RetentionPolicy",
    "job_claim",
    "job_command",
    "job_create",
    "job_delete",
    "job_fail",
    "job_heartbeat",
    "job_quarantine",
    "job_resolve",
    "job_retry",
    "job_succeed",
    "job_trigger",
    "job_update",
    "jobs_create",
    "jobs_dispatch_due",
    "jobs_prune",
    "jobs_requeue_unclaimed",
    "jobs_search_delete",
    "jobs_sweep_lost",
    "provider_event_ingest",
    "retention_preview",
    "task_create",
]
