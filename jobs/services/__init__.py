"""Every rule that changes a job lives in this package, one module per role; callers import
the public services from here (`from jobs import services`).

- creation: jobs, tasks and provider events;
- commands: the operators' commands, one job at a time or by search;
- execution: a worker's claim, heartbeat, success, failure and stop (a cancelled run);
- bulk: bulk operations, a command over a filter's fixed set in set-based batches on the workers;
- limits: per-account concurrency limits (the slot a claim takes, holding and releasing);
- maintenance: the scheduler's sweeps (lost runs, due jobs, unclaimed messages);
- schedules: sync schedules (create, update, pause, resume, run now, delete) and the
  scheduler's step that fires the due ones;
- retention: removing finished jobs, old audit events and provider events by the retention
  policy, in batches;
- quarantine: failing a job whose row a step cannot read or process, so it stops no one else;
- _rows: row helpers for these modules only (locking, bookkeeping, task status, deletes).

Each service is one transaction that locks its rows in a fixed order (jobs by id, then their
tasks by id), checks jobs.states, writes, audits and sends broker messages after commit.
"""

from jobs.services.bulk import (
    STALLED_NOW_KEY,
    bulk_operation_cancel,
    bulk_operation_create,
    bulk_operation_run,
    bulk_operations_dispatch,
)
from jobs.services.commands import (
    SEARCH_DELETE_BATCH,
    job_cancel,
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
    Beat,
    ClaimedRun,
    job_claim,
    job_fail,
    job_heartbeat,
    job_stop,
    job_succeed,
)
from jobs.services.limits import (
    account_limit_set,
    jobs_release_waiting,
    jobs_release_waiting_all,
    limits_of_account,
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
from jobs.services.schedules import (
    check_schedule_params,
    schedule_create,
    schedule_create_default,
    schedule_delete,
    schedule_pause,
    schedule_resume,
    schedule_run_now,
    schedule_update,
    schedules_fire_due,
)

__all__ = [
    "SEARCH_DELETE_BATCH",
    "STALLED_NOW_KEY",
    "Beat",
    "ClaimedRun",
    "JobQuarantined",
    "PruneRun",
    "Pruner",
    "RetentionPolicy",
    "account_limit_set",
    "bulk_operation_cancel",
    "bulk_operation_create",
    "bulk_operation_run",
    "bulk_operations_dispatch",
    "check_schedule_params",
    "job_cancel",
    "job_claim",
    "job_command",
    "job_create",
    "job_delete",
    "job_fail",
    "job_heartbeat",
    "job_quarantine",
    "job_resolve",
    "job_retry",
    "job_stop",
    "job_succeed",
    "job_trigger",
    "job_update",
    "jobs_create",
    "jobs_dispatch_due",
    "jobs_prune",
    "jobs_release_waiting",
    "jobs_release_waiting_all",
    "jobs_requeue_unclaimed",
    "jobs_search_delete",
    "jobs_sweep_lost",
    "limits_of_account",
    "provider_event_ingest",
    "retention_preview",
    "schedule_create",
    "schedule_create_default",
    "schedule_delete",
    "schedule_pause",
    "schedule_resume",
    "schedule_run_now",
    "schedule_update",
    "schedules_fire_due",
    "task_create",
]
