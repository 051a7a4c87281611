"""Every job status and every transition between them, declared once and read everywhere.

- `ALLOWED_FROM` / `TARGET_OF`: the operators' commands (services, admin buttons, API hints).
- `SYSTEM_TRANSITIONS`: what the worker, the dispatcher and the sweeper do on their own.
- The groups of statuses the partial indexes of jobs.models are built on (`NEEDS_OPERATOR`,
  ...), their `Q` conditions, and the SQL literals jobs.sql inlines so the planner can match
  those indexes.
- `stale_heartbeat`: when a running job counts as lost (the sweeper, the admin's filter).

tests/jobs/test_states.py checks that the services, the SQL and the indexes agree with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.expressions import Combinable
from django.db.models.functions import Now

from core.actors import Actor
from core.audit import AuditCommand


class JobStatus(models.TextChoices):
    # Waiting for run_at: a delay, a retry backoff, or a paused account.
    SCHEDULED = "scheduled", "Scheduled"
    # Handed to the broker, waiting for a worker.
    QUEUED = "queued", "Queued"
    # Claimed by a worker, which keeps a heartbeat.
    RUNNING = "running", "Running"
    # Done.
    SUCCEEDED = "succeeded", "Succeeded"
    # Last attempt failed terminally or no attempts are left; waits for an operator.
    FAILED = "failed", "Failed"
    # The worker stopped heart-beating and no attempts are left; waits for an operator.
    STALLED = "stalled", "Stalled"
    # Closed by an operator, with a resolution code and note.
    RESOLVED = "resolved", "Resolved"


class Command(models.TextChoices):
    RETRY = "retry", "Retry"
    RESOLVE = "resolve", "Resolve"
    TRIGGER = "trigger", "Trigger"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    # Asks the worker running the job to stop it (jobs.services.job_cancel); the job stays
    # running until the worker (or the sweeper, for a lost run) closes the run as cancelled.
    CANCEL = "cancel", "Cancel"

    @property
    def audit_command(self) -> AuditCommand:
        return AuditCommand(self.value)


_S = JobStatus  # short, for the tables below
ALL_STATUSES = frozenset(JobStatus)

# The whole state machine for operator commands. Everything else (services, admin buttons,
# API docs) asks this table.
ALLOWED_FROM: dict[Command, frozenset[JobStatus]] = {
    Command.RETRY: frozenset({_S.FAILED, _S.STALLED}),
    Command.RESOLVE: frozenset({_S.SCHEDULED, _S.QUEUED, _S.FAILED, _S.STALLED}),
    Command.TRIGGER: frozenset(
        {_S.SCHEDULED, _S.QUEUED, _S.FAILED, _S.STALLED, _S.SUCCEEDED, _S.RESOLVED}
    ),
    Command.UPDATE: ALL_STATUSES - {_S.RUNNING},
    Command.DELETE: ALL_STATUSES - {_S.RUNNING},
    Command.CANCEL: frozenset({_S.RUNNING}),
}

# Where each command leaves the job.
TARGET_OF: dict[Command, JobStatus | None] = {
    Command.RETRY: _S.QUEUED,
    Command.RESOLVE: _S.RESOLVED,
    Command.TRIGGER: _S.QUEUED,
    Command.UPDATE: None,  # unchanged
    Command.DELETE: None,  # gone
    # Not at once: the request is recorded and the job stays running until the worker stops
    # the run (SYSTEM_TRANSITIONS[STOP], or STOP_LOST for a lost run), which resolves it with
    # the code CANCELLED_CODE.
    Command.CANCEL: _S.RESOLVED,
}

# The resolution code of a job whose run was stopped by a cancel.
CANCELLED_CODE = "cancelled"

# The commands a bulk operation (jobs.services.bulk) runs over everything a filter matched. Each
# batch acts on the jobs whose status ALLOWED_FROM[command] holds and counts the others as
# skipped (jobs.services._batch.BATCH_WRITERS has the set-based write of each).
BULK_COMMANDS: tuple[Command, ...] = (
    Command.RETRY,
    Command.RESOLVE,
    Command.TRIGGER,
    Command.DELETE,
    Command.CANCEL,
)


class BulkStatus(models.TextChoices):
    """Where a bulk operation is (jobs.models.BulkOperation)."""

    # Created, its set fixed; batches still to run.
    RUNNING = "running", "Running"
    # Every batch ran.
    SUCCEEDED = "succeeded", "Succeeded"
    # Stopped by an operator: the batches that ran stay done and counted.
    CANCELLED = "cancelled", "Cancelled"


BULK_ACTIVE = frozenset({BulkStatus.RUNNING})


# Statuses in which a job is waiting for an operator (the triage view's subject).
NEEDS_OPERATOR = frozenset({_S.FAILED, _S.STALLED})
# Statuses a job never leaves on its own.
TERMINAL = frozenset({_S.SUCCEEDED, _S.FAILED, _S.STALLED, _S.RESOLVED})
# Statuses in which the job is still going to run without anyone's help.
PENDING = frozenset({_S.SCHEDULED, _S.QUEUED, _S.RUNNING})


@dataclass(frozen=True)
class Transition:
    """A change of status the system makes by itself, recorded as `command` in the audit log."""

    command: AuditCommand
    sources: frozenset[JobStatus]
    targets: frozenset[JobStatus]
    actor: Actor


# The system's actors, as audit events name them.
SYSTEM_WORKER = Actor.system("worker")
SYSTEM_SWEEPER = Actor.system("sweeper")
SYSTEM_DISPATCHER = Actor.system("dispatcher")
# Fails a job whose row the dispatcher, the sweeper or a worker could not read or process
# (jobs.services.quarantine); the event's data names which of them found it.
SYSTEM_QUARANTINE = Actor.system("quarantine")
# Holds a job over its per-account concurrency limit and releases it when a slot frees
# (jobs.services.limits), whichever process (worker, sweeper, API) finds the slot taken or free.
SYSTEM_LIMITER = Actor.system("limiter")


class WaitReason(models.TextChoices):
    """Why a `scheduled` job whose run_at has come is not dispatched (Job.wait_reason; empty
    for a job that only waits for its run_at or for its paused account)."""

    # Its action's per-account concurrency limit was reached when a worker came to claim it;
    # it is released (queued again) when a run of the same account and action ends. It spent
    # no attempt.
    CONCURRENCY_LIMIT = "concurrency_limit", "Waiting for a concurrency slot"


# A job held back by its concurrency limit (the partial index job_waiting_slot).
WAITING_SLOT_Q = Q(wait_reason=WaitReason.CONCURRENCY_LIMIT.value)
# Fires due sync schedules (jobs.services.schedules): the tasks it creates name it.
SYSTEM_SCHEDULER = Actor.system("scheduler")
# Removes finished jobs, old audit events and old provider events by the retention policy
# (jobs.services.retention).
SYSTEM_PRUNER = Actor.system("pruner")


# Every move the system makes on its own (jobs.services.execution and .maintenance).
SYSTEM_TRANSITIONS: dict[AuditCommand, Transition] = {
    transition.command: transition
    for transition in (
        # jobs_dispatch_due: a due scheduled job of an active account goes to the broker.
        Transition(
            AuditCommand.DISPATCH,
            frozenset({_S.SCHEDULED}),
            frozenset({_S.QUEUED}),
            SYSTEM_DISPATCHER,
        ),
        # job_claim: a worker takes a queued job and opens an attempt.
        Transition(
            AuditCommand.CLAIM, frozenset({_S.QUEUED}), frozenset({_S.RUNNING}), SYSTEM_WORKER
        ),
        # job_succeed.
        Transition(
            AuditCommand.SUCCEED, frozenset({_S.RUNNING}), frozenset({_S.SUCCEEDED}), SYSTEM_WORKER
        ),
        # job_fail: retried after a backoff while attempts remain and the error allows it.
        Transition(
            AuditCommand.FAIL,
            frozenset({_S.RUNNING}),
            frozenset({_S.SCHEDULED, _S.FAILED}),
            SYSTEM_WORKER,
        ),
        # jobs_sweep_lost: a run whose worker stopped heart-beating...
        Transition(
            AuditCommand.STALL, frozenset({_S.RUNNING}), frozenset({_S.STALLED}), SYSTEM_SWEEPER
        ),
        # ...is rescheduled at once when attempts remain.
        Transition(
            AuditCommand.RESCHEDULE,
            frozenset({_S.STALLED}),
            frozenset({_S.SCHEDULED}),
            SYSTEM_SWEEPER,
        ),
        # job_fail of a run an operator asked to cancel (jobs.services.job_cancel): stopped at
        # an ownership check, at its timeout, or by a failure; resolved, never retried.
        Transition(
            AuditCommand.STOP, frozenset({_S.RUNNING}), frozenset({_S.RESOLVED}), SYSTEM_WORKER
        ),
        # jobs_sweep_lost of a lost run that had a cancel requested: resolved, not retried.
        Transition(
            AuditCommand.STOP_LOST,
            frozenset({_S.RUNNING}),
            frozenset({_S.RESOLVED}),
            SYSTEM_SWEEPER,
        ),
        # jobs.services.limits: a worker (or trigger's claim) finds the job's account already
        # running as many jobs of its action as the limit allows: it waits, scheduled...
        Transition(
            AuditCommand.HOLD, frozenset({_S.QUEUED}), frozenset({_S.SCHEDULED}), SYSTEM_LIMITER
        ),
        # ...until a run of the same account and action ends (or the limit is raised).
        Transition(
            AuditCommand.RELEASE,
            frozenset({_S.SCHEDULED}),
            frozenset({_S.QUEUED}),
            SYSTEM_LIMITER,
        ),
        # job_quarantine: a pending job whose row a step could not read or process is failed
        # with internal_error, so it stops nobody else's work and waits for an operator.
        Transition(
            AuditCommand.QUARANTINE,
            frozenset({_S.SCHEDULED, _S.QUEUED, _S.RUNNING}),
            frozenset({_S.FAILED}),
            SYSTEM_QUARANTINE,
        ),
    )
}
# jobs_requeue_unclaimed sends a queued job's message again; its status does not change, so
# it is no transition and writes no audit event.

# The most attempts a job can count: attempt_count is an integer column (PostgreSQL's int4).
MAX_ATTEMPT_COUNT = 2**31 - 1

# The fields PATCH may change; anything else is immutable.
MUTABLE_FIELDS = ("priority", "run_at", "max_attempts", "payload", "labels")


# The conditions of the partial indexes of jobs.models, and the same groups as SQL literals
# for the raw statements of jobs.sql (a parameter would keep the planner from matching them).
NEEDS_OPERATOR_Q = Q(status__in=sorted(NEEDS_OPERATOR))
RUNNING_Q = Q(status=_S.RUNNING)
QUEUED_Q = Q(status=_S.QUEUED)
# A running job no one has asked to cancel yet: what a cancel request may be recorded on
# (jobs.services._rows.request_cancel, one job or a batch).
CANCELLABLE_Q = RUNNING_Q & Q(cancel_requested_at__isnull=True)


def sql_list(statuses: frozenset[JobStatus]) -> str:
    """`'failed', 'stalled'`: statuses as SQL literals, in a stable order."""
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))


def stale_heartbeat(now: datetime | Combinable | None = None) -> Q:
    """A running job whose worker has not heart-beaten within the grace: the sweeper declares it
    lost. Heartbeats carry the database's clock (jobs.services.job_heartbeat), so by default
    staleness is judged by it too (hosts' clocks may disagree by more than the grace)."""
    stale_before = (now if now is not None else Now()) - timedelta(
        seconds=settings.JOBS_STALL_GRACE_SECONDS
    )
    return RUNNING_Q & (Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))


# A status no JobStatus names (written by SQL, a restore) allows only deleting the job.
UNKNOWN_STATUS_COMMANDS = frozenset({Command.DELETE})


def is_allowed(command: Command | str, status: JobStatus | str) -> bool:
    if status not in JobStatus.values:
        return Command(command) in UNKNOWN_STATUS_COMMANDS
    return JobStatus(status) in ALLOWED_FROM[Command(command)]


def allowed_commands(status: JobStatus | str) -> list[Command]:
    """The commands an operator may run on a job in `status`, for buttons and API hints."""
    if status not in JobStatus.values:
        return [command for command in Command if command in UNKNOWN_STATUS_COMMANDS]
    return [command for command, sources in ALLOWED_FROM.items() if JobStatus(status) in sources]


class TaskStatus(models.TextChoices):
    """A task's status, derived from its jobs (see derive_task_status)."""

    PENDING = "pending", "Pending"  # no job has started yet
    RUNNING = "running", "Running"  # some job is running or done, others still to go
    SUCCEEDED = "succeeded", "Succeeded"  # every job succeeded or was resolved
    FAILED = "failed", "Failed"  # every job finished and at least one failed or stalled
    EMPTY = "empty", "Empty"  # no jobs (all deleted)


# The groups of job statuses a task's status is derived from (derive_task_status, and its SQL
# rendering jobs.sql.task_status_case).
TASK_WAITING = frozenset({_S.SCHEDULED, _S.QUEUED})
TASK_RUNNING = frozenset({_S.RUNNING})
TASK_DONE_OK = frozenset({_S.SUCCEEDED, _S.RESOLVED})
TASK_DONE_BAD = NEEDS_OPERATOR

# The Task column counting its jobs in each status (jobs.models.Task). Every change of a job's
# status, and every job inserted into or deleted from a task, moves these counters in the same
# statement or transaction (jobs.services._rows: task_job_moved, refresh_task_statuses), so
# the task's status is derived from one row, never from a scan of its jobs.
TASK_COUNTER: dict[JobStatus, str] = {status: f"jobs_{status.value}" for status in JobStatus}


def derive_task_status(counts: Mapping[str, int]) -> TaskStatus:
    """Task status from a {job status: count} mapping (statuses no JobStatus names are not
    counted: such a job can only be deleted)."""

    def count(group: frozenset[JobStatus]) -> int:
        return sum(counts.get(status, 0) for status in group)

    waiting, running = count(TASK_WAITING), count(TASK_RUNNING)
    done_ok, done_bad = count(TASK_DONE_OK), count(TASK_DONE_BAD)
    total = waiting + running + done_ok + done_bad
    if total == 0:
        return TaskStatus.EMPTY
    if waiting == total:
        return TaskStatus.PENDING
    if waiting or running:
        return TaskStatus.RUNNING
    if done_bad:
        return TaskStatus.FAILED
    return TaskStatus.SUCCEEDED
