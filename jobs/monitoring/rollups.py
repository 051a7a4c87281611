"""Queue health from rollups: what happened to jobs per minute and per hour, per action and per
account, kept by the scheduler so that the dashboard and /metrics never scan the job table.

The source is the audit trail, which records every run's start (`claim`) and end (`succeed`,
`fail`, `stall`, `quarantine`) with its time, account and error code, through the index on its
`created_at`; the job's action and creation time come from the job's primary key. Audit events
are never changed, so rolling a minute up again would give the same rows: the rollup of each
closed minute is written once, in the transaction that advances the one `RollupCursor` row it
holds locked, so two schedulers never count a minute twice (the second waits, then finds the
minute done). A minute is rolled up once it is JOBS_ROLLUP_SETTLE_SECONDS old, when the
transitions stamped in it have committed. A job deleted within that time counts under the
action "(deleted)".

Rows are kept per (minute, account, action) and per (minute, every account, action), and the
same per hour once the hour has closed (summed from its minutes). Minute rows are kept two days,
hour rows 35 days: the 1 h view reads 60 minutes, the 24 h and 7 d views read closed hours plus
the minutes of the hour in progress.

Queue depth is not in the audit trail: `sample_depth` counts it once a minute from the job
table's status index (scheduled, queued, running, and the oldest queued job's wait) into
`DepthSample` rows, only for the accounts and actions that have such jobs, under its own cursor
row; closed hours keep their deepest minute, with the same retention. `depth_history` reads
them back for a range, like `queue_health`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs.models import DepthSample, Job, JobRollup, RollupCursor, RollupGranularity
from jobs.states import JobStatus

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
CURSOR = "minute"
TOTAL_BUCKET = datetime(2000, 1, 1, tzinfo=UTC)
DELETED_ACTION = "(deleted)"
EVERY_ACCOUNT = ""

# Upper bounds (seconds) of the created -> first start latency histogram; one more bucket counts
# what is above the last.
LATENCY_BOUNDS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

KEEP_MINUTES = timedelta(days=2)
KEEP_HOURS = timedelta(days=35)
# A rollup round gives the scheduler's loop back after this long; it goes on next round.
ROUND_SECONDS = 2.0

RUN_EVENTS = (
    AuditCommand.CLAIM,
    AuditCommand.SUCCEED,
    AuditCommand.FAIL,
    AuditCommand.STALL,
    AuditCommand.QUARANTINE,
)
# A stall's error code (the sweeper records it on the job, not in the event).
WORKER_LOST = "worker_lost"
INTERNAL_ERROR = "internal_error"


def floor_minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class Tally:
    """The figures of one rollup row, added up."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_sum_ms: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.retried

    def add_latency(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        index = next(
            (i for i, bound in enumerate(LATENCY_BOUNDS) if seconds <= bound), len(LATENCY_BOUNDS)
        )
        self.latency_counts[index] += 1
        self.latency_sum_ms += round(seconds * 1000)

    def add(self, other: Tally | JobRollup) -> None:
        self.started += other.started
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        self.errors.update(other.errors)
        counts = other.latency_counts or []
        for i, n in enumerate(counts[: len(self.latency_counts)]):
            self.latency_counts[i] += n
        self.latency_sum_ms += other.latency_sum_ms

    @property
    def latency_samples(self) -> int:
        return sum(self.latency_counts)

    def latency_quantile(self, q: float) -> float | None:
        """Seconds, interpolated within the histogram's bucket; None without samples. Above
        the last bound: the last bound (reported as "more than")."""
        total = self.latency_samples
        if not total:
            return None
        target = q * total
        seen = 0
        lower = 0.0
        for i, n in enumerate(self.latency_counts):
            upper = LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
            if n and seen + n >= target:
                if i == len(LATENCY_BOUNDS):
                    return upper
                return lower + (upper - lower) * (target - seen) / n
            seen += n
            lower = upper
        return LATENCY_BOUNDS[-1]

    def row(self, granularity: str, bucket: datetime, account_id: str, action: str) -> JobRollup:
        return JobRollup(
            granularity=granularity,
            bucket=bucket,
            account_id=account_id,
            action=action,
            started=self.started,
            succeeded=self.succeeded,
            failed=self.failed,
            retried=self.retried,
            errors=dict(self.errors),
            latency_counts=self.latency_counts,
            latency_sum_ms=self.latency_sum_ms,
        )


# --- writing (the scheduler) -------------------------------------------------------------------


def roll_up(*, now: datetime | None = None, budget: float = ROUND_SECONDS) -> int:
    """Roll up every closed minute not yet rolled up (as many as `budget` seconds allow).
    Returns how many minutes were rolled up. Safe with several schedulers."""
    now = now or timezone.now()
    target = floor_minute(now - timedelta(seconds=settings.JOBS_ROLLUP_SETTLE_SECONDS))
    deadline = time.monotonic() + budget
    done = 0
    while time.monotonic() < deadline:
        with transaction.atomic():
            cursor = _locked_cursor(target)
            if cursor is None or cursor.through >= target:
                break
            before = cursor.through
            minute = _next_busy_minute(before, target)
            if minute is None:
                cursor.through = target  # nothing happened since: skip the empty minutes
            else:
                _roll_up_minute(minute)
                cursor.through = minute + MINUTE
                done += 1
            for hour in _closed_hours(before, cursor.through):
                _roll_up_hour(hour)
            cursor.save(update_fields=["through"])
    return done


def _locked_cursor(target: datetime) -> RollupCursor | None:
    cursor = RollupCursor.objects.select_for_update().filter(name=CURSOR).first()
    if cursor is not None:
        return cursor
    # The first rollup starts with the oldest audit event of the last seven days.
    oldest = AuditEvent.objects.filter(created_at__gte=target - timedelta(days=7)).aggregate(
        first=Min("created_at")
    )["first"]
    try:
        with transaction.atomic():
            return RollupCursor.objects.create(
                name=CURSOR, through=floor_minute(oldest) if oldest else target
            )
    except IntegrityError:
        return None  # another scheduler created it just now: it rolls up this round


def _next_busy_minute(after: datetime, before: datetime) -> datetime | None:
    first = (
        AuditEvent.objects.filter(
            created_at__gte=after, created_at__lt=before, command__in=RUN_EVENTS
        )
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    return floor_minute(first) if first else None


def _closed_hours(after: datetime, before: datetime) -> list[datetime]:
    """The hours that end in (after, before]: those whose minutes are all rolled up now."""
    hours = []
    hour = floor_hour(after)
    while hour + HOUR <= before:
        if hour + HOUR > after:
            hours.append(hour)
        hour += HOUR
    return hours


def tally_events(start: datetime, end: datetime) -> dict[tuple[str, str], Tally]:
    """{(account id, action): Tally} of the runs that started or ended in [start, end), from
    the audit trail; also under (EVERY_ACCOUNT, action)."""
    events = list(
        AuditEvent.objects.filter(
            created_at__gte=start, created_at__lt=end, command__in=RUN_EVENTS
        ).values_list("created_at", "job_id", "account_id", "command", "to_status", "data")
    )
    jobs = _jobs_of(event[1] for event in events)
    tallies: dict[tuple[str, str], Tally] = {}
    for created_at, job_id, account_id, command, to_status, data in events:
        action, job_created = jobs.get(job_id, (DELETED_ACTION, None))
        data = data if isinstance(data, dict) else {}
        for key in ((account_id, action), (EVERY_ACCOUNT, action)):
            tally = tallies.setdefault(key, Tally())
            _count(tally, command, to_status, data, created_at, job_created)
    return tallies


def _count(
    tally: Tally,
    command: str,
    to_status: str,
    data: dict[str, Any],
    at: datetime,
    job_created: datetime | None,
) -> None:
    if command == AuditCommand.CLAIM:
        tally.started += 1
        if data.get("attempt") == 1 and isinstance(job_created, datetime):
            tally.add_latency((at - job_created).total_seconds())
    elif command == AuditCommand.SUCCEED:
        tally.succeeded += 1
    elif command == AuditCommand.FAIL:
        if to_status == JobStatus.SCHEDULED:
            tally.retried += 1
        else:
            tally.failed += 1
        tally.errors[str(data.get("error_code") or INTERNAL_ERROR)] += 1
    elif command == AuditCommand.STALL:
        # The run was lost; whether the job is retried is the reschedule that follows.
        tally.failed += 1
        tally.errors[WORKER_LOST] += 1
    elif command == AuditCommand.QUARANTINE:
        tally.failed += 1
        tally.errors[INTERNAL_ERROR] += 1


def _jobs_of(job_ids: Iterable[str]) -> dict[str, tuple[str, Any]]:
    ids = sorted({job_id for job_id in job_ids if job_id})
    found: dict[str, tuple[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for pk, action, created_at in Job.objects.filter(pk__in=ids[i : i + 500]).values_list(
            "pk", "action", "created_at"
        ):
            found[pk] = (action, created_at)
    return found


def _roll_up_minute(minute: datetime) -> None:
    tallies = tally_events(minute, minute + MINUTE)
    JobRollup.objects.bulk_create(
        [
            tally.row(RollupGranularity.MINUTE, minute, account_id, action)
            for (account_id, action), tally in tallies.items()
        ]
    )
    # The running totals (under the cursor's lock, like the rows above).
    for (account_id, action), tally in tallies.items():
        if account_id != EVERY_ACCOUNT:
            continue
        total = JobRollup.objects.filter(
            granularity=RollupGranularity.TOTAL, account_id=EVERY_ACCOUNT, action=action
        ).first()
        if total is None:
            tally.row(RollupGranularity.TOTAL, TOTAL_BUCKET, EVERY_ACCOUNT, action).save()
            continue
        summed = Tally()
        summed.add(total)
        summed.add(tally)
        row = summed.row(RollupGranularity.TOTAL, TOTAL_BUCKET, EVERY_ACCOUNT, action)
        row.pk = total.pk
        row.save()


def rolled_up_through() -> datetime | None:
    """Every minute before this is rolled up (None: nothing yet)."""
    return RollupCursor.objects.filter(name=CURSOR).values_list("through", flat=True).first()


def totals() -> dict[str, Tally]:
    """{action: Tally} of every run rolled up so far (every account): /metrics' counters."""
    found: dict[str, Tally] = {}
    for row in JobRollup.objects.filter(
        granularity=RollupGranularity.TOTAL, account_id=EVERY_ACCOUNT
    ):
        found.setdefault(row.action, Tally()).add(row)
    return found


def _roll_up_hour(hour: datetime) -> None:
    """An hour's rows, from its minutes' rows (once; an hour already rolled up is left)."""
    if JobRollup.objects.filter(granularity=RollupGranularity.HOUR, bucket=hour).exists():
        return
    tallies: dict[tuple[str, str], Tally] = {}
    for row in JobRollup.objects.filter(
        granularity=RollupGranularity.MINUTE, bucket__gte=hour, bucket__lt=hour + HOUR
    ):
        tallies.setdefault((row.account_id, row.action), Tally()).add(row)
    JobRollup.objects.bulk_create(
        [
            tally.row(RollupGranularity.HOUR, hour, account_id, action)
            for (account_id, action), tally in tallies.items()
        ]
    )
    # Old rows go as hours close: a handful of index range deletes an hour.
    JobRollup.objects.filter(
        Q(granularity=RollupGranularity.MINUTE, bucket__lt=hour - KEEP_MINUTES)
        | Q(granularity=RollupGranularity.HOUR, bucket__lt=hour - KEEP_HOURS)
    ).delete()


# --- reading (the dashboard, /metrics) ---------------------------------------------------------

# range: (span, the rows it reads, the series' step: 60 minutes, 24 hours, 28 quarter-days).
RANGES: dict[str, tuple[timedelta, str, timedelta]] = {
    "1h": (HOUR, RollupGranularity.MINUTE, MINUTE),
    "24h": (timedelta(hours=24), RollupGranularity.HOUR, HOUR),
    "7d": (timedelta(days=7), RollupGranularity.HOUR, timedelta(hours=6)),
}


@dataclass
class Bucket:
    start: datetime
    tally: Tally


@dataclass
class QueueHealth:
    range_key: str
    start: datetime
    end: datetime
    through: datetime | None  # rolled up until (None: never)
    total: Tally
    series: list[Bucket]
    by_action: dict[str, Tally]

    @property
    def minutes(self) -> float:
        end = min(self.end, self.through) if self.through else self.end
        return max((end - self.start).total_seconds() / 60, 1.0)

    @property
    def throughput_per_minute(self) -> float:
        return self.total.finished / self.minutes

    def failure_rows(self) -> list[tuple[str, int, float]]:
        """(error code, runs, share of finished runs), most frequent first."""
        finished = max(self.total.finished, 1)
        return [
            (code, n, n / finished)
            for code, n in sorted(self.total.errors.items(), key=lambda item: (-item[1], item[0]))
        ]


def queue_health(
    range_key: str,
    *,
    account_id: str | None = None,
    action: str | None = None,
    now: datetime | None = None,
) -> QueueHealth:
    """The rolled-up figures of `range_key` ("1h", "24h", "7d"), for every account or one, every
    action or one, with a series per minute (1 h) or per hour."""
    span, granularity, step = RANGES[range_key]
    now = now or timezone.now()
    cursor = rolled_up_through()
    if granularity == RollupGranularity.MINUTE:
        end = floor_minute(now) + MINUTE
    else:
        end = floor_hour(now) + HOUR
        end += -(end - TOTAL_BUCKET) % step  # series buckets on whole steps (UTC)
    start = end - span
    buckets = {start + i * step: Bucket(start + i * step, Tally()) for i in range(span // step)}
    rows = JobRollup.objects.filter(account_id=account_id or EVERY_ACCOUNT)
    if action:
        rows = rows.filter(action=action)
    if granularity == RollupGranularity.MINUTE:
        selected = rows.filter(granularity=granularity, bucket__gte=start, bucket__lt=end)
        chosen = list(selected)
    else:
        # Closed hours from the hour rows; the hour in progress (and an hour whose row is not
        # written yet) from its minutes.
        hours = list(rows.filter(granularity=granularity, bucket__gte=start, bucket__lt=end))
        covered = {row.bucket for row in hours}
        open_from = max(covered) + HOUR if covered else start
        minutes = list(
            rows.filter(granularity=RollupGranularity.MINUTE, bucket__gte=open_from, bucket__lt=end)
        )
        chosen = hours + minutes
    total = Tally()
    by_action: dict[str, Tally] = {}
    for row in chosen:
        bucket = buckets.get(row.bucket - (row.bucket - start) % step)
        if bucket is None:
            continue
        bucket.tally.add(row)
        total.add(row)
        by_action.setdefault(row.action, Tally()).add(row)
    return QueueHealth(
        range_key=range_key,
        start=start,
        end=end,
        through=cursor,
        total=total,
        series=list(buckets.values()),
        by_action=dict(sorted(by_action.items())),
    )


# --- queue depth over time (the scheduler samples it once a minute) ----------------------------

DEPTH_CURSOR = "depth"
EVERY_ACTION = ""
# The statuses a depth sample counts: work still to do.
SAMPLED_STATUSES = (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING)
MAX_AGE_SECONDS = 2**31 - 1


@dataclass
class DepthPoint:
    """One sample (or the deepest of a bucket's samples) of one scope."""

    start: datetime
    scheduled: int = 0
    queued: int = 0
    running: int = 0
    oldest_queued_seconds: int | None = None
    sampled_at: datetime | None = None

    def by_status(self) -> dict[str, int]:
        return {
            JobStatus.SCHEDULED.value: self.scheduled,
            JobStatus.QUEUED.value: self.queued,
            JobStatus.RUNNING.value: self.running,
        }

    def deepest(self, other: DepthPoint | DepthSample) -> None:
        self.scheduled = max(self.scheduled, other.scheduled)
        self.queued = max(self.queued, other.queued)
        self.running = max(self.running, other.running)
        if other.oldest_queued_seconds is not None:
            self.oldest_queued_seconds = max(
                self.oldest_queued_seconds or 0, other.oldest_queued_seconds
            )
        if other.sampled_at and (self.sampled_at is None or other.sampled_at > self.sampled_at):
            self.sampled_at = other.sampled_at


def depth_now(now: datetime) -> dict[tuple[str, str], DepthPoint]:
    """{(account id, action): depth} of every account and action with a scheduled, queued or
    running job, also under every account (""), every action ("") and both: one GROUP BY over
    those statuses' ranges of the (status, run_at) index, so idle accounts cost nothing."""
    minute = floor_minute(now)
    rows = (
        Job.objects.filter(status__in=SAMPLED_STATUSES)
        .order_by()
        .values_list("account_id", "action", "status")
        .annotate(n=Count("*"), oldest=Min("run_at", filter=Q(status=JobStatus.QUEUED)))
    )
    points: dict[tuple[str, str], DepthPoint] = {
        (EVERY_ACCOUNT, EVERY_ACTION): DepthPoint(minute, sampled_at=now)
    }
    for account_id, action, status, n, oldest in rows:
        age = None
        if isinstance(oldest, datetime):
            # Clamped to the column (a run_at written by SQL may be centuries old).
            age = min(max(int((now - oldest).total_seconds()), 0), MAX_AGE_SECONDS)
        for key in (
            (account_id, action),
            (account_id, EVERY_ACTION),
            (EVERY_ACCOUNT, action),
            (EVERY_ACCOUNT, EVERY_ACTION),
        ):
            point = points.setdefault(key, DepthPoint(minute, sampled_at=now))
            setattr(point, status, getattr(point, status) + n)
            if age is not None:
                point.oldest_queued_seconds = max(point.oldest_queued_seconds or 0, age)
    return points


def sample_depth(*, now: datetime | None = None) -> bool:
    """Write this minute's depth samples, unless they are written already (by this scheduler or
    another: the samples' cursor row is held locked meanwhile). Closes the hours before it:
    their hour rows (the deepest minute of each scope) once, and old rows go. Returns whether
    this call sampled."""
    now = now or timezone.now()
    minute = floor_minute(now)
    with transaction.atomic():
        cursor = RollupCursor.objects.select_for_update().filter(name=DEPTH_CURSOR).first()
        if cursor is None:
            try:
                with transaction.atomic():
                    cursor = RollupCursor.objects.create(name=DEPTH_CURSOR, through=minute)
            except IntegrityError:
                return False  # another scheduler created it just now: it samples this minute
        elif cursor.through > minute:
            return False  # this minute is sampled
        previous = cursor.through
        DepthSample.objects.bulk_create(
            [
                DepthSample(
                    granularity=RollupGranularity.MINUTE,
                    bucket=minute,
                    account_id=account_id,
                    action=action,
                    sampled_at=now,
                    scheduled=point.scheduled,
                    queued=point.queued,
                    running=point.running,
                    oldest_queued_seconds=point.oldest_queued_seconds,
                )
                for (account_id, action), point in depth_now(now).items()
            ]
        )
        for hour in _closed_hours(previous - MINUTE, minute):
            _depth_hour(hour)
        cursor.through = minute + MINUTE
        cursor.save(update_fields=["through"])
    return True


def _depth_hour(hour: datetime) -> None:
    """An hour's depth rows: per scope, the deepest of its minutes (once); old rows go."""
    if DepthSample.objects.filter(granularity=RollupGranularity.HOUR, bucket=hour).exists():
        return
    points: dict[tuple[str, str], DepthPoint] = {}
    for row in DepthSample.objects.filter(
        granularity=RollupGranularity.MINUTE, bucket__gte=hour, bucket__lt=hour + HOUR
    ):
        points.setdefault((row.account_id, row.action), DepthPoint(hour)).deepest(row)
    DepthSample.objects.bulk_create(
        [
            DepthSample(
                granularity=RollupGranularity.HOUR,
                bucket=hour,
                account_id=account_id,
                action=action,
                sampled_at=point.sampled_at or hour,
                scheduled=point.scheduled,
                queued=point.queued,
                running=point.running,
                oldest_queued_seconds=point.oldest_queued_seconds,
            )
            for (account_id, action), point in points.items()
        ]
    )
    # The same retention as the rollups' rows.
    DepthSample.objects.filter(
        Q(granularity=RollupGranularity.MINUTE, bucket__lt=hour - KEEP_MINUTES)
        | Q(granularity=RollupGranularity.HOUR, bucket__lt=hour - KEEP_HOURS)
    ).delete()


def newest_depth(*, now: datetime | None = None) -> DepthPoint | None:
    """Every account's and action's depth in the newest minute sample, if it was taken within
    the last three minutes (the scheduler samples once a minute); None otherwise."""
    now = now or timezone.now()
    row = (
        DepthSample.objects.filter(
            granularity=RollupGranularity.MINUTE,
            account_id=EVERY_ACCOUNT,
            action=EVERY_ACTION,
            bucket__gte=floor_minute(now) - 3 * MINUTE,
        )
        .order_by("-bucket")
        .first()
    )
    if row is None:
        return None
    point = DepthPoint(row.bucket, sampled_at=row.sampled_at)
    point.deepest(row)
    return point


@dataclass
class DepthHistory:
    """A scope's depth over a range: a point per bucket (the deepest sample in it; None where
    nothing was sampled), and the newest sample (None: never sampled)."""

    series: list[tuple[datetime, DepthPoint | None]]
    current: DepthPoint | None


def depth_history(
    range_key: str,
    *,
    account_id: str | None = None,
    action: str | None = None,
    now: datetime | None = None,
) -> DepthHistory:
    """Depth samples of `range_key` for every account or one, every action or one: minutes for
    1 h; for 24 h and 7 d closed hours from the hour rows, the open hour from its minutes; each
    bucket the deepest of its rows. A bucket that was sampled (the every-account, every-action
    row, written each minute, says so) but where the scope had no row is zero. The current
    depth is the scope's row in the newest sample."""
    span, granularity, step = RANGES[range_key]
    now = now or timezone.now()
    if granularity == RollupGranularity.MINUTE:
        end = floor_minute(now) + MINUTE
    else:
        end = floor_hour(now) + HOUR
        end += -(end - TOTAL_BUCKET) % step
    start = end - span
    sampled = DepthSample.objects.filter(account_id=EVERY_ACCOUNT, action=EVERY_ACTION)
    scope = DepthSample.objects.filter(
        account_id=account_id or EVERY_ACCOUNT, action=action or EVERY_ACTION
    )
    # Minutes from `open_from` (the hour after the last hour row; for 1 h, the range's start).
    open_from = start
    if granularity == RollupGranularity.HOUR:
        last_hour = (
            sampled.filter(granularity=granularity, bucket__gte=start, bucket__lt=end)
            .order_by("-bucket")
            .values_list("bucket", flat=True)
            .first()
        )
        open_from = last_hour + HOUR if last_hour else start

    def rows_of(rows: QuerySet[DepthSample]) -> list[DepthSample]:
        # One query: the minutes from open_from, the hour rows before it (two index ranges).
        wanted = Q(granularity=RollupGranularity.MINUTE, bucket__gte=open_from, bucket__lt=end)
        if granularity == RollupGranularity.HOUR:
            wanted |= Q(granularity=granularity, bucket__gte=start, bucket__lt=open_from)
        return list(rows.filter(wanted))

    points: dict[datetime, DepthPoint | None] = {
        start + i * step: None for i in range(span // step)
    }
    for row in rows_of(sampled) if (account_id or action) else []:
        key = row.bucket - (row.bucket - start) % step
        if key in points:
            points[key] = DepthPoint(key)
    for row in rows_of(scope):
        key = row.bucket - (row.bucket - start) % step
        if key in points:
            point = points[key] or DepthPoint(key)
            point.deepest(row)
            points[key] = point
    newest = sampled.filter(granularity=RollupGranularity.MINUTE).order_by("-bucket").first()
    current = None
    if newest:
        current = DepthPoint(newest.bucket, sampled_at=newest.sampled_at)
        mine: DepthSample | None = newest
        if account_id or action:
            mine = scope.filter(granularity=RollupGranularity.MINUTE, bucket=newest.bucket).first()
        if mine is not None:
            current.deepest(mine)
    return DepthHistory(series=list(points.items()), current=current)
