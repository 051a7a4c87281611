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


# --- observability (jobs.monitoring) -----------------------------------------------------------


class ProcessKind(models.TextChoices):
    WORKER = "worker", "Worker"  # a django-q2 worker process; its cluster is its parent process
    SCHEDULER = "scheduler", "Scheduler"


class ProcessHeartbeat(models.Model):
    """A worker or scheduler process that says it is alive: written by the process itself every
    JOBS_PROCESS_HEARTBEAT_SECONDS (jobs.monitoring.heartbeats), one row per process start."""

    kind = models.CharField(max_length=16, choices=ProcessKind.choices)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    # A worker's cluster: the django-q2 sentinel (its parent process) on the same host.
    cluster_pid = models.PositiveIntegerField(null=True, blank=True)
    queue = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)  # a clean stop said so
    jobs_done = models.PositiveBigIntegerField(default=0)
    jobs_failed = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host", "pid", "started_at"], name="process_heartbeat_unique"
            )
        ]
        indexes = [models.Index(fields=["kind", "-beat_at"], name="process_heartbeat_beat")]

    def __str__(self) -> str:
        return f"{self.kind} {self.host}:{self.pid}"


class RollupGranularity(models.TextChoices):
    MINUTE = "m", "minute"
    HOUR = "h", "hour"
    # Every minute rolled up so far, per action (every account): /metrics' counters, which must
    # never go down. One row per action, at bucket jobs.monitoring.rollups.TOTAL_BUCKET.
    TOTAL = "t", "total"


class JobRollup(models.Model):
    """What happened to jobs in one minute (or hour) for one action of one account, or of every
    account (account_id ""): the queue-health figures, rolled up by the scheduler from the audit
    trail (jobs.monitoring.rollups), so the dashboard never scans the job table."""

    granularity = models.CharField(max_length=1, choices=RollupGranularity.choices)
    bucket = models.DateTimeField()  # the start of the minute or hour (UTC)
    account_id = models.CharField(max_length=32, blank=True)  # "": every account
    action = models.CharField(max_length=100)
    started = models.PositiveIntegerField(default=0)  # runs that started (claims)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)  # runs that ended the job failed or stalled
    retried = models.PositiveIntegerField(default=0)  # runs that failed with a retry scheduled
    # {error code: runs that failed with it} (failed, retried and lost runs alike).
    errors = models.JSONField(default=dict)
    # created -> first start latency of the jobs whose first run started here: a histogram on
    # jobs.monitoring.rollups.LATENCY_BOUNDS (one count per bound, then the overflow).
    latency_counts = models.JSONField(default=list)
    latency_sum_ms = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["granularity", "account_id", "bucket", "action"], name="job_rollup_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket} {self.account_id or '*'} {self.action}"


class RollupCursor(models.Model):
    """How far the rollups go: every minute before `through` is rolled up. One row, locked by the
    scheduler that rolls up, so two schedulers never count a minute twice."""

    name = models.CharField(max_length=32, primary_key=True)
    through = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} through {self.through}"
