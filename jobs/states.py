"""Job statuses and which command is allowed from which status: declared once, read everywhere."""

from __future__ import annotations

from django.db import models


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


S = JobStatus
ALL_STATUSES = frozenset(S)

# The whole state machine for operator commands. Everything else (services, admin buttons,
# API docs) asks this table.
ALLOWED_FROM: dict[Command, frozenset[JobStatus]] = {
    Command.RETRY: frozenset({S.FAILED, S.STALLED}),
    Command.RESOLVE: frozenset({S.SCHEDULED, S.QUEUED, S.FAILED, S.STALLED}),
    Command.TRIGGER: frozenset(
        {S.SCHEDULED, S.QUEUED, S.FAILED, S.STALLED, S.SUCCEEDED, S.RESOLVED}
    ),
    Command.UPDATE: ALL_STATUSES - {S.RUNNING},
    Command.DELETE: ALL_STATUSES - {S.RUNNING},
}

# Where each command leaves the job.
TARGET_OF: dict[Command, JobStatus | None] = {
    Command.RETRY: S.QUEUED,
    Command.RESOLVE: S.RESOLVED,
    Command.TRIGGER: S.QUEUED,
    Command.UPDATE: None,  # unchanged
    Command.DELETE: None,  # gone
}

# Statuses in which a job is waiting for an operator (the triage view's subject).
NEEDS_OPERATOR = frozenset({S.FAILED, S.STALLED})
# Statuses a job never leaves on its own.
TERMINAL = frozenset({S.SUCCEEDED, S.FAILED, S.STALLED, S.RESOLVED})
# Statuses in which the job is still going to run without anyone's help.
PENDING = frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING})

# The fields PATCH may change; anything else is immutable.
MUTABLE_FIELDS = ("priority", "run_at", "max_attempts", "payload", "labels")


def is_allowed(command: Command | str, status: JobStatus | str) -> bool:
    return JobStatus(status) in ALLOWED_FROM[Command(command)]


def allowed_commands(status: JobStatus | str) -> list[Command]:
    """The commands an operator may run on a job in `status`, for buttons and API hints."""
    return [command for command, sources in ALLOWED_FROM.items() if JobStatus(status) in sources]


class TaskStatus(models.TextChoices):
    """A task's status, derived from its jobs (see jobs.services.task_refresh_status)."""

    PENDING = "pending", "Pending"  # no job has started yet
    RUNNING = "running", "Running"  # some job is running or done, others still to go
    SUCCEEDED = "succeeded", "Succeeded"  # every job succeeded or was resolved
    FAILED = "failed", "Failed"  # every job finished and at least one failed or stalled
    EMPTY = "empty", "Empty"  # no jobs (all deleted)


def derive_task_status(counts: dict[str, int]) -> TaskStatus:
    """Task status from a {job status: count} mapping."""
    total = sum(counts.values())
    if total == 0:
        return TaskStatus.EMPTY
    pending = counts.get(S.SCHEDULED, 0) + counts.get(S.QUEUED, 0)
    running = counts.get(S.RUNNING, 0)
    done_ok = counts.get(S.SUCCEEDED, 0) + counts.get(S.RESOLVED, 0)
    done_bad = counts.get(S.FAILED, 0) + counts.get(S.STALLED, 0)
    if pending == total:
        return TaskStatus.PENDING
    if pending or running:
        return TaskStatus.RUNNING
    if done_bad:
        return TaskStatus.FAILED
    assert done_ok == total
    return TaskStatus.SUCCEEDED
