"""Aggregate reads for the operators' console: the error triage, the dashboard and the
per-account summary. Each is a handful of GROUP BY queries over indexed columns; none loads
jobs one by one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs import sql
from jobs.models import Job
from jobs.monitoring import rollups
from jobs.monitoring import triage as triage_counts
from jobs.states import NEEDS_OPERATOR, JobStatus, stale_heartbeat


@dataclass
class TriageGroup:
    action: str
    error_code: str
    count: int
    failed: int
    stalled: int
    first_seen: datetime | None
    last_seen: datetime | None
    accounts: int
    sample_job_id: str
    sample_detail: str = ""


@dataclass
class Triage:
    groups: list[TriageGroup]
    # When the scheduler counted the groups (jobs.monitoring.triage), on a table too large to
    # count on every load; None: counted just now.
    counted_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(group.count for group in self.groups)


def triage(
    *, account_id: str | None = None, limit: int = 200, now: datetime | None = None
) -> Triage:
    """The triage's groups: counted live, or read from the scheduler's counts while those stand
    (more failed and stalled jobs than a page load should group)."""
    at = triage_counts.counted_at(now=now)
    if at is None:
        return Triage(triage_groups(account_id=account_id, limit=limit))
    rows = (
        triage_counts.counts(account_id=account_id)
        .values("action", "error_code")
        .annotate(
            count=Sum(F("failed") + F("stalled")),
            failed=Sum("failed"),
            stalled=Sum("stalled"),
            first_seen=Min("first_seen"),
            last_seen=Max("last_seen"),
            accounts=Count("*"),
        )
        .order_by("-count", "action", "error_code")[:limit]
    )
    return Triage(_with_samples(_groups(rows, code="error_code"), account_id), counted_at=at)


def triage_groups(*, account_id: str | None = None, limit: int = 200) -> list[TriageGroup]:
    """Failed and stalled jobs grouped by (action, error code), largest group first, counted now.

    Every column the grouping reads is in the partial index `job_triage`, so PostgreSQL answers
    it from the index alone; the sample of each group (its latest failure) is then looked up
    by error time through `job_failing_error_at`.
    """
    jobs = _failing(account_id)
    rows = (
        jobs.values("action", "last_error_code")
        .annotate(
            count=Count("*"),
            failed=Count("status", filter=Q(status=JobStatus.FAILED)),
            stalled=Count("status", filter=Q(status=JobStatus.STALLED)),
            first_seen=Min("last_error_at"),
            last_seen=Max("last_error_at"),
            accounts=Count("account_id", distinct=True),
        )
        .order_by("-count", "action", "last_error_code")[:limit]
    )
    return _with_samples(_groups(rows, code="last_error_code"), account_id)


def _failing(account_id: str | None) -> QuerySet[Job]:
    jobs = Job.objects.filter(status__in=NEEDS_OPERATOR)
    return jobs.filter(account_id=account_id) if account_id else jobs


def _groups(rows: Iterable[Mapping[str, Any]], *, code: str) -> list[TriageGroup]:
    return [
        TriageGroup(
            action=row["action"],
            error_code=row[code],
            count=row["count"],
            failed=row["failed"],
            stalled=row["stalled"],
            first_seen=_readable(row["first_seen"]),
            last_seen=_readable(row["last_seen"]),
            accounts=row["accounts"],
            sample_job_id="",
        )
        for row in rows
    ]


def _with_samples(groups: list[TriageGroup], account_id: str | None) -> list[TriageGroup]:
    """Each group's sample: its latest failure, found by its last error time."""
    latest = {group.last_seen for group in groups if group.last_seen}
    samples: dict[tuple[str, str, datetime | None], tuple[str, str]] = {}
    for job_id, action, code, error_at, detail in (
        _failing(account_id)
        .filter(last_error_at__in=latest)
        .order_by("-id")
        .values_list("pk", "action", "last_error_code", "last_error_at", "last_error_detail")
    ):
        samples.setdefault((action, code, error_at), (job_id, detail))
    for group in groups:
        group.sample_job_id, group.sample_detail = samples.get(
            (group.action, group.error_code, group.last_seen), ("", "")
        )
    return groups


def _readable(moment: datetime | None) -> datetime | None:
    # A first or last time Python cannot hold (written by SQL, see core.unreadable) is unknown.
    return None if isinstance(moment, str) else moment


def counts_by_status(jobs: QuerySet[Job] | None = None) -> dict[str, int]:
    """{status: count} for every status (zero included), in the state table's order."""
    jobs = Job.objects.all() if jobs is None else jobs
    counts = _counts(jobs)
    return {status.value: counts.get(status.value, 0) for status in JobStatus}


# On a large table exact counts read too much on every dashboard load: finished work piles up,
# and at 10M jobs counting the 1.9M scheduled, queued, running, failed and stalled ones took
# 2.1 s. So every status shows the planner's estimate there (the waiting ones are exact, as of
# the scheduler's last depth sample, in the queue-health cards below).
ESTIMATED_STATUSES = frozenset(JobStatus)
# "Running without a heartbeat now" is counted up to this many (then shown as "N+").
STALLED_NOW_CAP = 10_000
# Below this many rows every count is exact (and cheap).
ESTIMATE_ABOVE_ROWS = 200_000


def status_estimates() -> dict[str, int]:
    """Estimated rows per status from PostgreSQL's statistics (rows x the status's frequency),
    for a table of more than ESTIMATE_ABOVE_ROWS rows; {} when counting exactly is cheap or
    there are no statistics yet."""
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        cursor.execute(sql.STATUS_FREQUENCIES)
        row = cursor.fetchone()
    if row is None or row[0] is None or row[2] < ESTIMATE_ABOVE_ROWS:
        return {}
    frequencies = dict(zip(row[0], row[1], strict=True))
    return {
        status.value: round(row[2] * frequencies.get(status.value, 0.0))
        for status in ESTIMATED_STATUSES
    }


@dataclass
class HourBucket:
    hour: datetime
    succeeded: int = 0
    failed: int = 0


@dataclass
class Dashboard:
    now: datetime
    by_status: dict[str, int]
    stalled_now: int
    failures_by_code: list[tuple[str, int]]
    hours: list[HourBucket] = field(default_factory=list)
    estimated: frozenset[str] = frozenset()  # statuses whose count is an estimate
    stalled_capped: bool = False  # stalled_now is STALLED_NOW_CAP and there are more

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def needs_operator(self) -> int:
        return sum(self.by_status[status] for status in NEEDS_OPERATOR)


def dashboard(*, now: datetime | None = None, hours: int = 24) -> Dashboard:
    """Counts by status, failures of the last `hours` by error code, and an hourly series of
    jobs that finished succeeded or failed (failed includes stalled)."""
    now = now or timezone.now()
    since = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    failures = list(
        Job.objects.filter(last_error_at__gte=since, status__in=NEEDS_OPERATOR)
        .order_by()
        .values_list("last_error_code")
        .annotate(n=Count("*"))
        .order_by("-n", "last_error_code")
    )
    buckets = {
        since + timedelta(hours=i): HourBucket(since + timedelta(hours=i)) for i in range(hours)
    }
    estimates = status_estimates()
    if estimates and hours == 24:
        # A large table: grouping a day of finished jobs reads every one of them (330,000 in
        # 320 ms at 10M); the scheduler's rollups hold the same figures per hour (runs that
        # ended succeeded, and those that left the job failed or stalled).
        for point in rollups.queue_health("24h", now=now).series:
            bucket = buckets.get(point.start)
            if bucket is not None:
                bucket.succeeded, bucket.failed = point.tally.succeeded, point.tally.failed
    else:
        _count_finished(buckets, since, since + timedelta(hours=hours))
    stalled_now = Job.objects.filter(stale_heartbeat(now)).order_by()[: STALLED_NOW_CAP + 1].count()
    return Dashboard(
        now=now,
        by_status=estimates or counts_by_status(),
        estimated=frozenset(estimates),
        stalled_now=min(stalled_now, STALLED_NOW_CAP),
        stalled_capped=stalled_now > STALLED_NOW_CAP,
        failures_by_code=[(code or "(none)", n) for code, n in failures],
        hours=list(buckets.values()),
    )


def _count_finished(buckets: dict[datetime, HourBucket], since: datetime, until: datetime) -> None:
    """Jobs that finished succeeded, or failed or stalled, per hour from `since` to `until`."""
    finished = (
        Job.objects.filter(
            # Bounded above too: a finish after the last hour has no bucket (and one after
            # year 9999, written by SQL, could not be read).
            finished_at__gte=since,
            finished_at__lt=until,
            status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STALLED],
        )
        .annotate(hour=TruncHour("finished_at"))
        .order_by()
        .values_list("hour", "status")
        .annotate(n=Count("*"))
    )
    for hour, status, n in finished:
        bucket = buckets.get(hour)
        if bucket is None:
            continue
        if status == JobStatus.SUCCEEDED:
            bucket.succeeded += n
        else:
            bucket.failed += n


@dataclass
class ChartBar:
    x: float
    width: float
    y: float
    height: float
    value: int
    kind: str
    label: str


@dataclass
class Chart:
    """Geometry of the hourly succeeded/failed bar chart, for a server-rendered SVG."""

    width: int
    height: int
    bars: list[ChartBar]
    ticks: list[tuple[float, str]]  # (x, label) on the time axis
    grid: list[tuple[float, int]]  # (y, value) of horizontal grid lines
    plot_left: int
    plot_bottom: int


def hourly_chart(hours: list[HourBucket], *, width: int = 760, height: int = 220) -> Chart:
    """Side-by-side bars per hour: succeeded (green) and failed (red), on one scale."""
    left, right, top, bottom = 48, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([1, *(max(b.succeeded, b.failed) for b in hours)])
    scale = _nice_ceiling(peak)
    slot = plot_w / max(len(hours), 1)
    bar_w = max(1.0, slot * 0.38)
    bars: list[ChartBar] = []
    ticks: list[tuple[float, str]] = []
    for i, bucket in enumerate(hours):
        x0 = left + i * slot + slot * 0.1
        label = bucket.hour.strftime("%H:00")
        for j, (kind, value) in enumerate(
            (("succeeded", bucket.succeeded), ("failed", bucket.failed))
        ):
            h = plot_h * value / scale
            bars.append(
                ChartBar(
                    x=round(x0 + j * bar_w, 1),
                    width=round(bar_w, 1),
                    y=round(top + plot_h - h, 1),
                    height=round(h, 1),
                    value=value,
                    kind=kind,
                    label=f"{label} UTC: {value} {kind}",
                )
            )
        if i % 3 == 0:
            ticks.append((round(left + i * slot + slot / 2, 1), label))
    grid = [(round(top + plot_h - plot_h * k / 4, 1), int(scale * k / 4)) for k in range(0, 5)]
    return Chart(width, height, bars, ticks, grid, left, top + plot_h)


def _nice_ceiling(value: int) -> int:
    """The smallest 4 * (1, 2 or 5) * 10^n at or above `value`: four grid lines on round
    numbers."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if 4 * step * magnitude >= value:
                return 4 * step * magnitude
        magnitude *= 10


@dataclass
class AccountSummary:
    by_status: dict[str, int]
    failing_actions: list[tuple[str, str, int]]  # (action, error code, count)
    last_errors: list[Job]


def account_summary(account_id: str, *, last: int = 10) -> AccountSummary:
    """One account's queue: counts by status, failing (action, error code) groups, last errors."""
    jobs = Job.objects.filter(account_id=account_id)
    failing = list(
        jobs.filter(status__in=NEEDS_OPERATOR)
        .order_by()
        .values_list("action", "last_error_code")
        .annotate(n=Count("*"))
        .order_by("-n", "action")[:20]
    )
    last_errors = list(
        jobs.exclude(last_error_code="")
        .filter(status__in=NEEDS_OPERATOR)
        .only("id", "action", "status", "last_error_code", "last_error_detail", "last_error_at")
        .order_by("-id")[:last]
    )
    return AccountSummary(counts_by_status(jobs), failing, last_errors)


def failing_error_codes(*, limit: int = 100) -> list[str]:
    """The error codes of jobs waiting for an operator, for the queue's filter sidebar.

    On PostgreSQL a loose index scan over the partial index `job_triage`: one index probe per
    (action, error code) group instead of reading every failed row (a plain DISTINCT read
    230,000 rows of the benchmark's million)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql.FAILING_ERROR_CODES, {"limit": limit})
            return sorted(row[0] for row in cursor.fetchall())
    return sorted(
        Job.objects.filter(status__in=NEEDS_OPERATOR)
        .exclude(last_error_code="")
        .order_by()
        .values_list("last_error_code", flat=True)
        .distinct()[:limit]
    )


# --- queue health: depth now (jobs.monitoring.rollups has the figures over time) -----------------

# The statuses a queue's depth counts: work still to do, and work waiting for an operator.
DEPTH_STATUSES = (
    JobStatus.SCHEDULED,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.FAILED,
    JobStatus.STALLED,
)


@dataclass
class Depth:
    by_status: dict[str, int]
    oldest_queued_run_at: datetime | None  # when the longest-waiting queued job became due

    def oldest_queued_age(self, now: datetime) -> float | None:
        """Seconds the oldest queued job has waited since it was due."""
        if self.oldest_queued_run_at is None:
            return None
        return max((now - self.oldest_queued_run_at).total_seconds(), 0.0)


def _counts(jobs: QuerySet[Job]) -> dict[str, int]:
    return dict(jobs.order_by().values_list("status").annotate(n=Count("*")))


def _oldest_queued(jobs: QuerySet[Job]) -> datetime | None:
    """When the longest-waiting queued job became due: the first entry of its status's range."""
    oldest = (
        jobs.filter(status=JobStatus.QUEUED)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
    )
    return oldest if isinstance(oldest, datetime) else None


def depth(*, now: datetime | None = None) -> Depth:
    """Every account's and action's depth, for /metrics, at any table size: scheduled, queued
    and running (and the oldest queued job's wait) from the scheduler's newest depth sample, a
    minute old at most; failed and stalled from its triage counts while those stand. What the
    scheduler has not recorded lately is counted live."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    oldest: datetime | None = None
    sample = rollups.newest_depth(now=now)
    if sample is not None:
        counts.update(sample.by_status())
        if sample.oldest_queued_seconds is not None and sample.sampled_at is not None:
            oldest = sample.sampled_at - timedelta(seconds=sample.oldest_queued_seconds)
    if triage_counts.counted_at(now=now) is not None:
        counts.update(triage_counts.totals())
    missing = [status for status in DEPTH_STATUSES if status.value not in counts]
    if missing:
        counts.update(_counts(Job.objects.filter(status__in=missing)))
    if sample is None:
        oldest = _oldest_queued(Job.objects.all())
    return Depth(
        by_status={status.value: counts.get(status.value, 0) for status in DEPTH_STATUSES},
        oldest_queued_run_at=oldest,
    )


def series_chart(
    points: list[tuple[datetime, int, int]], *, step_minutes: int, width: int = 760
) -> Chart:
    """The succeeded/failed bar chart for a series of (bucket start, succeeded, failed) at one
    bucket per `step_minutes`: minutes (1 h), hours (24 h), hours over days (7 d)."""
    hours = [HourBucket(start, succeeded, failed) for start, succeeded, failed in points]
    chart = hourly_chart(hours, width=width)
    if step_minutes == 1:
        label, every = "%H:%M", 10
    elif step_minutes == 60:
        label, every = "%H:00", 3
    else:
        label, every = "%a %d %H:00", 4
    slot = (chart.width - chart.plot_left - 8) / max(len(points), 1)
    chart.ticks = [
        (round(chart.plot_left + i * slot + slot / 2, 1), start.strftime(label))
        for i, (start, _, _) in enumerate(points)
        if i % every == 0
    ]
    for bar, (start, _, _) in zip(chart.bars[::2], points, strict=False):
        bar.label = f"{start.strftime('%Y-%m-%d %H:%M')} UTC: {bar.value} {bar.kind}"
    for bar, (start, _, _) in zip(chart.bars[1::2], points, strict=False):
        bar.label = f"{start.strftime('%Y-%m-%d %H:%M')} UTC: {bar.value} failed or retried"
    return chart


@dataclass(frozen=True)
class CappedCount:
    value: int
    capped: bool  # there are more than `value`

    def __str__(self) -> str:
        return f"{self.value:,}+" if self.capped else f"{self.value:,}"


# The admin index's counts stop at this many: each is then at most this many index entries.
NOW_COUNT_CAP = 10_000


def _capped(jobs: QuerySet[Job], cap: int) -> CappedCount:
    counted = jobs.order_by()[: cap + 1].count()
    return CappedCount(min(counted, cap), counted > cap)


def operator_counts(*, cap: int = NOW_COUNT_CAP) -> dict[str, CappedCount]:
    """What the console's front page shows live: jobs waiting for an operator, running (and of
    those, running without a heartbeat), queued and scheduled. Each is one range of the
    (status, run_at) index, or of the partial heartbeat index, read up to `cap` entries:
    never a scan of the table, whatever its size."""
    return {
        "needs_operator": _capped(Job.objects.filter(status__in=sorted(NEEDS_OPERATOR)), cap),
        "running": _capped(Job.objects.filter(status=JobStatus.RUNNING), cap),
        "stalled_now": _capped(Job.objects.filter(stale_heartbeat()), cap),
        "queued": _capped(Job.objects.filter(status=JobStatus.QUEUED), cap),
        "scheduled": _capped(Job.objects.filter(status=JobStatus.SCHEDULED), cap),
    }


def prune_runs(*, limit: int = 10) -> list[AuditEvent]:
    """The last runs of the retention pruner, newest first (their audit events, through the
    audit_command index)."""
    return list(AuditEvent.objects.filter(command=AuditCommand.PRUNE).order_by("-id")[:limit])


@dataclass
class LineSeries:
    kind: str  # a status: its colour
    label: str
    segments: list[str]  # SVG polylines' points ("x,y x,y ..."): a gap where nothing was sampled
    dots: list[tuple[float, float, str]]  # (x, y, hover text) of each sampled bucket


@dataclass
class LineChart:
    """Geometry of the queue-depth line chart (a line per status), for a server-rendered SVG."""

    width: int
    height: int
    lines: list[LineSeries]
    ticks: list[tuple[float, str]]
    grid: list[tuple[float, int]]
    plot_left: int
    plot_bottom: int


def depth_chart(
    points: list[tuple[datetime, dict[str, int] | None]],
    *,
    step_minutes: int,
    width: int = 760,
    height: int = 220,
) -> LineChart:
    """Lines of jobs per status over a series of (bucket start, {status: jobs} or None where
    nothing was sampled): the deepest sample of each bucket. A line breaks where a bucket has
    no sample."""
    left, right, top, bottom = 48, 8, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    statuses = [JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING]
    peak = max([1, *(max(p.values()) for _, p in points if p)])
    scale = _nice_ceiling(peak)
    slot = plot_w / max(len(points), 1)
    label, every = _tick_format(step_minutes)
    lines = []
    for status in statuses:
        segments: list[list[str]] = [[]]
        dots = []
        for i, (start, depth) in enumerate(points):
            if depth is None:
                if segments[-1]:
                    segments.append([])
                continue
            x = round(left + i * slot + slot / 2, 1)
            y = round(top + plot_h - plot_h * depth[status.value] / scale, 1)
            segments[-1].append(f"{x},{y}")
            dots.append(
                (x, y, f"{start.strftime('%Y-%m-%d %H:%M')} UTC: {depth[status.value]} {status}")
            )
        lines.append(
            LineSeries(
                kind=status.value,
                label=status.label,
                segments=[" ".join(seg) for seg in segments if seg],
                dots=dots,
            )
        )
    ticks = [
        (round(left + i * slot + slot / 2, 1), start.strftime(label))
        for i, (start, _) in enumerate(points)
        if i % every == 0
    ]
    grid = [(round(top + plot_h - plot_h * k / 4, 1), int(scale * k / 4)) for k in range(0, 5)]
    return LineChart(width, height, lines, ticks, grid, left, top + plot_h)


def _tick_format(step_minutes: int) -> tuple[str, int]:
    if step_minutes == 1:
        return "%H:%M", 10
    if step_minutes == 60:
        return "%H:00", 3
    return "%a %d %H:00", 4
