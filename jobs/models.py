from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from accounts.models import Account
from core.ids import PublicIdField
from core.unreadable import Unreadable
from jobs.states import NEEDS_OPERATOR_Q, QUEUED_Q, RUNNING_Q, JobStatus, TaskStatus


class ReadableJSONField(models.JSONField):
    """A JSONField that loads a document nested deeper than Python's recursion limit (storable
    in PostgreSQL's jsonb) as an Unreadable holding the start of its text, instead of failing
    every query that reads it (see core.unreadable). The same column as models.JSONField."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        try:
            return super().from_db_value(value, expression, connection)
        except RecursionError:
            text = value if isinstance(value, str) else str(value)
            return Unreadable(
                text[:200] + ("…" if len(text) > 200 else ""),
                f"JSON nested deeper than Python can read ({len(text):,} characters)",
            )

    def deconstruct(self) -> Any:
        # Migrations see the plain JSONField: nothing about the column changes.
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs


class Task(models.Model):
    """Work a client asked for; produces one or more jobs. Its status is derived from them."""

    id = PublicIdField("tsk")
    # Indexed by task_account_id below.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    kind = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=TaskStatus.choices, default=TaskStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["account", "-id"], name="task_account_id")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class ProviderEvent(models.Model):
    """A change pushed by a mail provider; deduplicated on the provider's own event id."""

    id = PublicIdField("evt")
    # Indexed by the unique constraint below.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="provider_events", db_index=False
    )
    provider = models.CharField(max_length=50)
    type = models.CharField(max_length=100)
    external_id = models.CharField(max_length=255)
    payload = models.JSONField(default=dict, blank=True)
    # The job this event produced, or joined when a sync of the account was already pending.
    job = models.ForeignKey(
        "Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    coalesced = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "provider", "external_id"], name="provider_event_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.type} {self.external_id}"


class Job(models.Model):
    """The executable queue unit: one action with its payload, run by django-q2 workers."""

    id = PublicIdField("job")
    # The foreign keys are indexed by the composite and partial indexes of Meta: every index of
    # this table is written on every status change, so none is kept that another one covers.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="jobs", db_index=False
    )
    task = models.ForeignKey(
        Task,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,
    )
    provider_event = models.ForeignKey(
        ProviderEvent,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,
    )
    action = models.CharField(max_length=100)
    payload = ReadableJSONField(default=dict, blank=True)
    labels = ReadableJSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.IntegerField(default=0)
    run_at = models.DateTimeField(default=timezone.now)
    attempt_count = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    last_error_code = models.CharField(max_length=100, blank=True)
    last_error_detail = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    result = ReadableJSONField(null=True, blank=True)
    resolution = ReadableJSONField(null=True, blank=True)

    # Execution bookkeeping.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["account", "-id"], name="job_account_id"),
            models.Index(fields=["account", "status", "-id"], name="job_account_status_id"),
            models.Index(
                fields=["account", "action", "last_error_code"], name="job_account_action_error"
            ),
            # The dispatcher (due scheduled jobs), and counts by status from the index alone.
            models.Index(fields=["status", "run_at"], name="job_status_run_at"),
            # The stall sweeper and the unclaimed-message sweeper look at one status each.
            models.Index(
                fields=["heartbeat_at"],
                name="job_status_heartbeat",
                condition=RUNNING_Q,
            ),
            models.Index(
                fields=["enqueued_at"],
                name="job_status_enqueued",
                condition=QUEUED_Q,
            ),
            models.Index(
                fields=["task", "status"],
                name="job_task_status",
                condition=models.Q(task__isnull=False),
            ),
            models.Index(
                fields=["provider_event"],
                name="job_provider_event",
                condition=models.Q(provider_event__isnull=False),
            ),
            # The triage view and the dashboard read only jobs that wait for an operator, a small
            # part of the table: partial indexes keep those reads off the bulk of succeeded rows.
            models.Index(
                fields=["action", "last_error_code", "account", "status", "last_error_at"],
                name="job_triage",
                condition=NEEDS_OPERATOR_Q,
            ),
            models.Index(
                fields=["last_error_at", "last_error_code"],
                name="job_failing_error_at",
                condition=NEEDS_OPERATOR_Q,
            ),
            models.Index(
                fields=["finished_at", "status"],
                name="job_finished_at",
                condition=models.Q(finished_at__isnull=False),
            ),
        ]
        permissions = [
            ("retry_job", "Can retry jobs"),
            ("resolve_job", "Can resolve jobs"),
            ("trigger_job", "Can trigger jobs"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.id}"


class AttemptOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"  # terminal: no retry
    RETRY_SCHEDULED = "retry_scheduled", "Failed, retry scheduled"
    TIMEOUT = "timeout", "Timed out"
    WORKER_LOST = "worker_lost", "Worker lost"


class JobAttempt(models.Model):
    """One execution of a job by a worker."""

    # Indexed by the unique constraint on (job, number).
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(
        max_length=20, choices=AttemptOutcome.choices, default=AttemptOutcome.RUNNING
    )
    error_code = models.CharField(max_length=100, blank=True)
    error_detail = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="job_attempt_unique")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.number} {self.outcome}"


class ScheduleOutcome(models.TextChoices):
    """What the last run of a schedule did (jobs.services.schedules)."""

    CREATED = "created", "Task created"
    # A job of the same account and action was still scheduled, queued or running: no new
    # task, so a slow mailbox never piles up syncs.
    COALESCED = "coalesced", "Coalesced with a pending job"
    # The task could not be made (its kind is no longer registered, its params are refused).
    FAILED = "failed", "Failed"


class Schedule(models.Model):
    """A task created for one account on a cadence: every `interval_seconds`, or at the times a
    cron expression names in `time_zone`. One per account and task kind. The scheduler fires it
    when `next_run_at` is due, unless it or its account is paused (then it waits, and runs once
    when resumed)."""

    id = PublicIdField("sch")
    # Indexed by the unique constraint below.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="schedules", db_index=False
    )
    kind = models.CharField(max_length=100)
    params = models.JSONField(default=dict, blank=True)
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    cron = models.CharField(max_length=200, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=16, choices=ScheduleOutcome.choices, blank=True)
    # The task the last run created, or the pending job it coalesced with.
    last_task = models.ForeignKey(
        Task, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_job_id = models.CharField(max_length=32, blank=True)
    last_detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "kind"], name="schedule_account_kind"),
            # Exactly one cadence: an interval or a cron expression.
            models.CheckConstraint(
                condition=(
                    models.Q(interval_seconds__isnull=False, cron="")
                    | (models.Q(interval_seconds__isnull=True) & ~models.Q(cron=""))
                ),
                name="schedule_one_cadence",
            ),
        ]
        indexes = [
            # The scheduler's read: due schedules that are not paused, soonest first.
            models.Index(
                fields=["next_run_at"],
                name="schedule_due",
                condition=models.Q(paused_at__isnull=True),
            ),
        ]
        permissions = [("run_schedule", "Can run schedules now")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.account_id} ({self.cadence})"

    @property
    def cadence(self) -> str:
        if self.interval_seconds:
            return f"every {describe_seconds(self.interval_seconds)}"
        zone = "" if self.time_zone == "UTC" else f" ({self.time_zone})"
        return f"cron {self.cron}{zone}"

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None


def describe_seconds(seconds: int) -> str:
    """60 -> "1 min", 5400 -> "90 min", 86400 -> "1 day": an interval as an operator reads it."""
    for unit, name in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds % unit == 0:
            n = seconds // unit
            return f"{n} {name}{'s' if name == 'day' and n != 1 else ''}"
    return f"{seconds} s"
