"""Retention: finished jobs (with their attempts), old audit events and old provider events are
removed by a policy, in small batches, by the scheduler (jobs_scheduler) or `manage.py jobs_prune`.

The policy (`RetentionPolicy.from_settings`, JOBS_RETAIN_*): days per terminal status, counted
from `finished_at`, and days for audit events and for provider events, counted from their
creation. Only terminal statuses can have a retention, so a scheduled, queued or running job is
never a candidate; a status without one (failed and stalled by default) is kept until an
operator acts.

Audit events outlive the jobs they speak of: an event is removed by its own age only, never with
its job, and never while the job it names still exists (nor a task's `create_task` event while a
job of that task exists), so a job kept for a year keeps its whole timeline.

Provider events go the same way: by their own age, and never while a job made from them
(`Job.provider_event`) still exists, so a kept job still shows what pushed it. A provider event
is also the dedup record of a provider's push (unique on account, provider, external id):
once it is removed, a redelivery of that push is ingested again as new. Their retention
(30 days by default) is therefore well beyond any provider's redelivery window.

How a run stays gentle on a large table:
- each batch is one short transaction that locks at most JOBS_PRUNE_BATCH jobs (SKIP LOCKED: a
  job an operator is acting on right now is left for the next run) and removes them through
  `_rows.delete_job_rows`, the one home of how a job's rows go;
- the rows are found through indexes, oldest first: jobs by `job_finished_at` (finished_at,
  status), audit events by their `created_at` index, provider events by
  `provider_event_created` (whether a job still points to one is a probe of the partial index
  `job_provider_event`), so no batch scans a table;
- each class of rows keeps a cursor for the run, so rows that are kept (an old failed job when
  failed jobs are kept, an old audit or provider event of a job that still exists) are stepped
  over once per run, not once per batch;
- the scheduler spends at most JOBS_PRUNE_ROWS_PER_MINUTE rows a minute (jobs, audit events
  and provider events), one batch per round of its loop, so dispatching never waits behind a
  clean-up and autovacuum keeps pace with the dead tuples (no bloat spike).

Each run that removes something is one audit event (`prune`, by `system:pruner`) written with
its first batch and brought up to date in the transaction of every later batch, so its counts
are exact even if the run is interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from core.actors import Actor
from core.audit import AuditCommand, audit
from core.models import AuditEvent
from jobs.models import Job, JobAttempt, ProviderEvent
from jobs.services import _rows
from jobs.states import SYSTEM_PRUNER, TERMINAL, JobStatus

AUDIT = "audit_events"
PROVIDER_EVENTS = "provider_events"
# The statuses in the order a run takes them (and the admin shows them).
_STATUS_ORDER = (JobStatus.SUCCEEDED, JobStatus.RESOLVED, JobStatus.FAILED, JobStatus.STALLED)
assert set(_STATUS_ORDER) == TERMINAL
# Every class of rows, in that order: the jobs first, so that the events of the jobs a run
# removes can go in the same run.
_CLASS_ORDER = (*(status.value for status in _STATUS_ORDER), AUDIT, PROVIDER_EVENTS)


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep a finished job per terminal status (None: keep), audit events and provider
    events."""

    job_days: dict[JobStatus, float | None]
    audit_days: float | None
    # Kept unless asked for: a policy built by hand (a test, a bench) removes no provider event.
    provider_event_days: float | None = None
    batch: int = 500
    rows_per_minute: int = 30_000

    def __post_init__(self) -> None:
        not_terminal = set(self.job_days) - TERMINAL
        if not_terminal:
            # A retention for a waiting or running job would remove work still to be done.
            raise ValueError(f"Only finished jobs have a retention, not {sorted(not_terminal)}.")
        for days in [*self.job_days.values(), self.audit_days, self.provider_event_days]:
            if days is not None and not days > 0:
                raise ValueError(f"A retention is more than 0 days, not {days!r}.")
        if self.batch < 1:
            raise ValueError("The batch size is at least 1.")

    @classmethod
    def from_settings(cls) -> RetentionPolicy:
        return cls(
            job_days={
                JobStatus.SUCCEEDED: settings.JOBS_RETAIN_SUCCEEDED_DAYS,
                JobStatus.RESOLVED: settings.JOBS_RETAIN_RESOLVED_DAYS,
                JobStatus.FAILED: settings.JOBS_RETAIN_FAILED_DAYS,
                JobStatus.STALLED: settings.JOBS_RETAIN_STALLED_DAYS,
            },
            audit_days=settings.JOBS_RETAIN_AUDIT_DAYS,
            provider_event_days=settings.JOBS_RETAIN_PROVIDER_EVENTS_DAYS,
            batch=settings.JOBS_PRUNE_BATCH,
            rows_per_minute=settings.JOBS_PRUNE_ROWS_PER_MINUTE,
        )

    def days_of(self, name: str) -> float | None:
        if name == AUDIT:
            return self.audit_days
        if name == PROVIDER_EVENTS:
            return self.provider_event_days
        return self.job_days.get(JobStatus(name))

    def classes(self) -> list[str]:
        """The classes of rows this policy removes, in the order a run takes them."""
        return [name for name in _CLASS_ORDER if self.days_of(name)]

    def cutoff(self, name: str, now: datetime) -> datetime | None:
        """Rows of class `name` older than this are removed (None: kept)."""
        days = self.days_of(name)
        return None if days is None else now - timedelta(days=days)


# --- what a class's rows are ----------------------------------------------------------------


def _expired_jobs(status: str, cutoff: datetime) -> QuerySet[Job]:
    # `finished_at < cutoff` implies `finished_at IS NOT NULL`: the range is read from the
    # partial index job_finished_at (finished_at, status), the status checked in the index.
    return Job.objects.filter(status=status, finished_at__lt=cutoff)


def _expired_audit_events(cutoff: datetime) -> QuerySet[AuditEvent]:
    """Audit events older than `cutoff` that speak of no job still in the table."""
    job_exists = Exists(Job.objects.filter(pk=OuterRef("job_id")))
    # A task's jobs are recorded by its create_task event, with no job id (selectors.job_timeline).
    task_job_exists = Exists(Job.objects.filter(task_id=OuterRef("task_id")))
    return AuditEvent.objects.filter(created_at__lt=cutoff).exclude(
        Q(~Q(job_id=""), job_exists)
        | Q(job_id="", command=AuditCommand.CREATE_TASK, task_id__gt="") & Q(task_job_exists)
    )


def _expired_provider_events(cutoff: datetime) -> QuerySet[ProviderEvent]:
    """Provider events older than `cutoff` that no job still in the table was made from."""
    # `provider_event_id = <id>` implies NOT NULL: a probe of the partial index
    # job_provider_event. Only a job created with its event points to one (ingest), so an old
    # event cannot gain a job between this read and its deletion.
    job_exists = Exists(Job.objects.filter(provider_event_id=OuterRef("pk")))
    return ProviderEvent.objects.filter(created_at__lt=cutoff).exclude(job_exists)


# The classes removed by their own age, counted from `created_at`, batch after batch in
# (created_at, id) order.
_BY_AGE: dict[str, Callable[[datetime], QuerySet[Any]]] = {
    AUDIT: _expired_audit_events,
    PROVIDER_EVENTS: _expired_provider_events,
}


def _expired(name: str, cutoff: datetime) -> QuerySet[Any]:
    """The rows of class `name` past `cutoff` that may go: what a run removes, a preview counts."""
    return _BY_AGE[name](cutoff) if name in _BY_AGE else _expired_jobs(name, cutoff)


# --- a run ------------------------------------------------------------------------------------


@dataclass
class PruneRun:
    """One pass of the policy over the tables: its cut-offs are fixed when it starts."""

    policy: RetentionPolicy
    now: datetime
    counts: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    event_id: int | None = None
    # Per class: the position reached (a finished_at for jobs, a (created_at, id) for audit and
    # provider events); and the classes done for this run.
    cursors: dict[str, Any] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    # Who the run's audit event names: the pruner, or the operator who asked for a run now.
    actor: Actor = SYSTEM_PRUNER

    @classmethod
    def start(
        cls,
        policy: RetentionPolicy | None = None,
        now: datetime | None = None,
        actor: Actor = SYSTEM_PRUNER,
    ) -> PruneRun:
        return cls(policy or RetentionPolicy.from_settings(), now or timezone.now(), actor=actor)

    @property
    def finished(self) -> bool:
        return all(name in self.done for name in self.policy.classes())

    @property
    def removed(self) -> int:
        """Rows this run removed that count against the budget (jobs, audit and provider
        events; attempts go with their job)."""
        return sum(n for name, n in self.counts.items() if name != "attempts")

    def record(self) -> dict[str, Any]:
        return {
            "removed": {name: self.counts.get(name, 0) for name in self.policy.classes()},
            "attempts": self.counts.get("attempts", 0),
            "batches": self.batches,
            "complete": self.finished,
            "policy_days": {name: self.policy.days_of(name) for name in self.policy.classes()},
            "cutoffs": {
                name: cutoff.isoformat()
                for name in self.policy.classes()
                if (cutoff := self.policy.cutoff(name, self.now)) is not None
            },
        }

    def step(self, limit: int | None = None) -> int:
        """Remove one batch (at most `limit` rows, or the policy's batch size) of the first
        class not done yet, in one transaction with the run's audit event. Returns the rows
        removed (0 when the run is finished)."""
        limit = min(limit or self.policy.batch, self.policy.batch)
        for name in self.policy.classes():
            if name in self.done:
                continue
            with transaction.atomic():
                if name in _BY_AGE:
                    removed, attempts = self._by_age_batch(name, limit), 0
                else:
                    removed, attempts = self._job_batch(name, limit)
                if removed:
                    self.counts[name] = self.counts.get(name, 0) + removed
                    if attempts:
                        self.counts["attempts"] = self.counts.get("attempts", 0) + attempts
                    self.batches += 1
                if removed < limit:
                    self.done.add(name)
                if removed or (self.event_id and self.finished):
                    self._audit()
            if removed:
                return removed
        return 0

    def _job_batch(self, status: str, limit: int) -> tuple[int, int]:
        cutoff = self.policy.cutoff(status, self.now)
        assert cutoff is not None  # classes() lists only statuses with a retention
        queryset = _expired_jobs(status, cutoff)
        if status in self.cursors:
            queryset = queryset.filter(finished_at__gte=self.cursors[status])
        rows = list(
            queryset.select_for_update(skip_locked=True)
            .order_by("finished_at")
            .values_list("pk", "finished_at", "task_id")[:limit]
        )
        if not rows:
            return 0, 0
        ids = [pk for pk, _, _ in rows]
        attempts = JobAttempt.objects.filter(job_id__in=ids).count()
        _rows.delete_job_rows(ids)
        _rows.forget_pruned_jobs(task_id for _, _, task_id in rows)
        self.cursors[status] = rows[-1][1]
        return len(ids), attempts

    def _by_age_batch(self, name: str, limit: int) -> int:
        """A batch of audit or provider events."""
        cutoff = self.policy.cutoff(name, self.now)
        assert cutoff is not None  # classes() lists a class only with a retention
        queryset = _BY_AGE[name](cutoff)
        if name in self.cursors:
            # Past the last event this run removed, in (created_at, id) order: the created_at
            # index gives the range, the id breaks ties between events of one instant.
            at, last_id = self.cursors[name]
            queryset = queryset.filter(created_at__gte=at).exclude(created_at=at, id__lte=last_id)
        rows = list(queryset.order_by("created_at", "id").values_list("id", "created_at")[:limit])
        if not rows:
            return 0
        # Counted as deleted by this statement: another scheduler's run may have taken some
        # of the same events first (events are not locked; deleting one twice is no harm).
        # Only the ids are loaded: a provider event is deleted through Django's collector (for
        # Job.provider_event's SET_NULL, which finds no job here), and its payload is not needed.
        ids = [pk for pk, _ in rows]
        deleted: int = queryset.model.objects.filter(id__in=ids).only("id").delete()[0]
        self.cursors[name] = (rows[-1][1], rows[-1][0])
        return deleted

    def _audit(self) -> None:
        data = self.record()
        summary = ", ".join(f"{n:,} {name}" for name, n in data["removed"].items() if n)
        reason = f"Retention removed {summary or 'nothing'}" + (
            "." if self.finished else " (in progress)."
        )
        if self.event_id is None:
            event = audit(
                actor=self.actor,
                command=AuditCommand.PRUNE,
                account_id="",
                reason=reason,
                data=data,
                now=self.now,
            )
            self.event_id = event.pk
        else:
            AuditEvent.objects.filter(pk=self.event_id).update(reason=reason, data=data)


def jobs_prune(
    *,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
    max_rows: int | None = None,
    actor: Actor = SYSTEM_PRUNER,
) -> dict[str, Any]:
    """One run of the retention policy, batch after batch, until nothing is left to remove or
    `max_rows` rows (jobs, audit and provider events) are removed; returns its record (the
    counts its audit event holds). Unpaced: the scheduler paces its runs with `Pruner`."""
    run = PruneRun.start(policy, now, actor)
    while not run.finished:
        left = None if max_rows is None else max_rows - run.removed
        if left is not None and left <= 0:
            break
        run.step(left)
    return run.record()


# --- what the next run will remove -----------------------------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    name: str
    days: float | None
    cutoff: datetime | None
    # Rows past the cut-off, counted up to `cap` (None when kept): `capped` means at least.
    expired: int | None
    capped: bool
    next_run: int


def retention_preview(
    *,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
    cap: int | None = None,
) -> list[PreviewRow]:
    """The policy, class by class, with how many rows are past their cut-off now (counted up to
    `cap`: None counts them all) and how many of them the next run of the scheduler removes
    (its budget is JOBS_PRUNE_ROWS_PER_MINUTE, taken in the order of the classes)."""
    policy = policy or RetentionPolicy.from_settings()
    now = now or timezone.now()
    budget = policy.rows_per_minute
    rows: list[PreviewRow] = []
    for name in _CLASS_ORDER:
        cutoff = policy.cutoff(name, now)
        if cutoff is None:
            rows.append(PreviewRow(name, None, None, None, False, 0))
            continue
        queryset = _expired(name, cutoff).order_by()
        expired = (queryset[:cap] if cap is not None else queryset).count()
        capped = cap is not None and expired >= cap
        next_run = min(expired, budget)
        budget -= next_run
        rows.append(PreviewRow(name, policy.days_of(name), cutoff, expired, capped, next_run))
    return rows


# --- pacing, for the scheduler -------------------------------------------------------------


class Pruner:
    """The scheduler's pruning: a run every minute, one batch per call of `step`, at most the
    policy's rows per minute. Keeps its run (and so its cursors) between calls."""

    def __init__(
        self,
        policy_factory: Callable[[], RetentionPolicy] = RetentionPolicy.from_settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_factory = policy_factory
        self.clock = clock
        self.run: PruneRun | None = None
        self.next_run = 0.0
        self.window_start = 0.0
        self.spent = 0

    def step(self) -> int:
        """At most one batch; returns the rows it removed."""
        now = self.clock()
        if now - self.window_start >= 60.0:
            self.window_start, self.spent = now, 0
        if self.run is None:
            if now < self.next_run:
                return 0
            policy = self.policy_factory()
            if policy.rows_per_minute <= 0 or not policy.classes():
                self.next_run = now + 60.0
                return 0
            self.run = PruneRun.start(policy)
        left = self.run.policy.rows_per_minute - self.spent
        if left <= 0:
            return 0
        removed = self.run.step(left)
        self.spent += removed
        if self.run.finished:
            self.run = None
            self.next_run = now + 60.0
        return removed
