from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone

from accounts.models import Account
from core.ids import PublicIdField
from core.unreadable import Unreadable
from jobs.states import (
    NEEDS_OPERATOR_Q,
    QUEUED_Q,
    RUNNING_Q,
    TASK_COUNTER,
    WAITING_SLOT_Q,
    BulkStatus,
    JobStatus,
    TaskStatus,
    WaitReason,
)


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
    # How many of its jobs are in each status (jobs.states.TASK_COUNTER), moved by every
    # transition in its own statement (jobs.services._rows): `status` is derived from them, so
    # no transition scans the task's jobs. Not PositiveIntegerField: a CHECK constraint would
    # turn a miscount into a failed transition instead of a wrong number an operator can see.
    # The columns added in this release have database defaults too (db_default), so that rows
    # written without naming them (a process of the previous release during a rolling deploy,
    # COPY loads) are valid.
    jobs_scheduled = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_queued = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_running = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_succeeded = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_failed = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_stalled = models.IntegerField(default=0, db_default=0, editable=False)
    jobs_resolved = models.IntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["account", "-id"], name="task_account_id")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"

    def job_counts(self) -> dict[str, int]:
        """{job status: count} of the statuses its jobs are in (none with 0)."""
        counts = {status.value: getattr(self, TASK_COUNTER[status]) for status in JobStatus}
        return {status: n for status, n in counts.items() if n}


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
        indexes = [
            # The retention policy finds expired events oldest first (jobs.services.retention).
            models.Index(fields=["created_at"], name="provider_event_created"),
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
    # A cancel an operator asked for while the job ran (jobs.services.job_cancel): when, by
    # whom, why. The worker's heartbeat reads it; the run's end turns it into the resolution.
    # Cleared when the job is queued again (a retry or trigger of the resolved job).
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.CharField(max_length=200, blank=True, default="", db_default="")
    cancel_note = models.TextField(blank=True, default="", db_default="")
    # Per-account concurrency limits (jobs.services.limits): why a due scheduled job waits
    # (held over its limit), and whether its next claim may go over the limit (a forced trigger).
    wait_reason = models.CharField(
        max_length=32, choices=WaitReason.choices, blank=True, default="", db_default=""
    )
    ignore_limit = models.BooleanField(default=False, db_default=False)

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
            # The jobs held by a concurrency limit, released oldest first per account and
            # action; empty (one probe) when no limit is reached, which is nearly always.
            models.Index(
                fields=["account", "action", "-priority", "run_at", "id"],
                name="job_waiting_slot",
                condition=WAITING_SLOT_Q,
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
            ("cancel_job", "Can cancel running jobs"),
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
    # Stopped because an operator cancelled the job (at an ownership check, at its timeout,
    # by a failure, or lost after the request): the job is resolved as cancelled.
    CANCELLED = "cancelled", "Cancelled"


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


class BulkOperation(models.Model):
    """An operator's command over everything a filter matched (jobs.services.bulk).

    Its set is fixed when it is created: the matched ids are written, in id order, into
    BulkOperationChunk rows of `batch_size` ids each, and batch N acts on chunk N. The workers
    run the batches in order (`next_batch` is the first one not done); each batch commits its
    changes to the jobs together with the operation's counters and `next_batch`, so a batch
    is done exactly once whoever runs it, and a run killed midway leaves the batch to be done
    again from the start. `lease_until`: while in the future, someone is running it or a
    message to run it is on its way; once past (a killed worker), the scheduler sends another
    (jobs.services.bulk.bulk_operations_dispatch)."""

    id = PublicIdField("bop")
    command = models.CharField(max_length=16)
    # None: across accounts (operators only).
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    # The normalized filter ({name: [values]}), as jobs.filters reads it.
    filter = models.JSONField(default=dict, blank=True)
    # What the command takes besides the note: {"code": ...} for resolve, {"force": ...} for
    # trigger.
    inputs = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    actor_type = models.CharField(max_length=10)
    actor = models.CharField(max_length=200)
    # Jobs per second for retry and trigger (None: as fast as the batches go).
    rate = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=BulkStatus.choices, default=BulkStatus.RUNNING)
    batch_size = models.PositiveIntegerField()
    batches = models.PositiveIntegerField(default=0)
    next_batch = models.PositiveIntegerField(default=0)
    next_batch_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    matched = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    # {reason: count}: "running", "gone", "status_changed:succeeded", "sibling_running", ...
    skipped = models.JSONField(default=dict, blank=True)
    cancelled_by = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["account", "-id"], name="bulk_account_id"),
            # The scheduler's look for operations to (re)start.
            models.Index(
                fields=["next_batch_at"],
                name="bulk_active_due",
                condition=models.Q(status=BulkStatus.RUNNING),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.command} {self.id}"


class BulkOperationChunk(models.Model):
    """One batch's share of an operation's fixed set: up to batch_size job ids, in id order,
    comma-separated (ids never hold a comma). A few hundred rows for 100,000 jobs: cheap to
    write inside the request that creates the operation."""

    pk = models.CompositePrimaryKey("operation_id", "number")
    operation = models.ForeignKey(
        BulkOperation, on_delete=models.CASCADE, related_name="chunks", db_index=False
    )
    number = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    job_ids = models.TextField()

    def __str__(self) -> str:
        return f"{self.operation_id} #{self.number}"


class ConcurrencyLimit(models.Model):
    """An account's own cap on how many jobs of one action run at once, overriding the
    action's policy (ActionPolicy.per_account_limit; jobs.services.limits)."""

    # Indexed by the unique constraint below.
    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="concurrency_limits", db_index=False
    )
    action = models.CharField(max_length=100)
    limit = models.PositiveIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["account", "action"]
        constraints = [
            models.UniqueConstraint(fields=["account", "action"], name="concurrency_limit_unique"),
            models.CheckConstraint(condition=models.Q(limit__gte=1), name="concurrency_limit_min"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}: {self.action} at most {self.limit}"


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


class DepthSample(models.Model):
    """How deep a queue was at one minute (or, per hour, the deepest of the hour's minutes):
    jobs scheduled, queued and running, and how long the oldest queued job had waited, for one
    action of one account, every action (action "") or every account (account_id ""). Sampled
    once a minute by the scheduler (jobs.monitoring.rollups.sample_depth) from the job table's
    status index, only for accounts and actions that have such jobs, besides the one row of
    every account and every action that says the minute was sampled. Kept as long as the
    rollups (minute rows two days, hour rows 35 days)."""

    granularity = models.CharField(max_length=1, choices=RollupGranularity.choices)
    bucket = models.DateTimeField()  # the start of the minute or hour (UTC)
    account_id = models.CharField(max_length=32, blank=True)  # "": every account
    action = models.CharField(max_length=100, blank=True)  # "": every action
    sampled_at = models.DateTimeField()  # when (the hour's last sample, for an hour row)
    scheduled = models.PositiveIntegerField(default=0)
    queued = models.PositiveIntegerField(default=0)
    running = models.PositiveIntegerField(default=0)
    # Seconds the longest-waiting queued job had waited since it was due (None: none queued).
    oldest_queued_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["granularity", "account_id", "action", "bucket"],
                name="depth_sample_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket} {self.account_id or '*'} {self.action or '*'}"


class TriageCount(models.Model):
    """How many jobs of one account wait for an operator, per action and error code, as the
    scheduler last counted them (jobs.monitoring.triage). Kept only while counting them live
    would read too much (more than JOBS_TRIAGE_COUNT_ABOVE failed and stalled jobs): the
    triage page and /metrics then read these rows and say when they were counted. The moment
    of the count is the `through` of RollupCursor "triage"."""

    account_id = models.CharField(max_length=32)
    action = models.CharField(max_length=100)
    error_code = models.CharField(max_length=100, blank=True)
    failed = models.PositiveIntegerField(default=0)
    stalled = models.PositiveIntegerField(default=0)
    first_seen = models.DateTimeField(null=True, blank=True)  # the group's oldest last_error_at
    last_seen = models.DateTimeField(null=True, blank=True)  # and its newest

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account_id", "action", "error_code"], name="triage_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.action} {self.error_code}: {self.failed + self.stalled}"


class RollupCursor(models.Model):
    """How far the rollups go: every minute before `through` is rolled up. One row, locked by the
    scheduler that rolls up, so two schedulers never count a minute twice."""

    name = models.CharField(max_length=32, primary_key=True)
    through = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} through {self.through}"


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
