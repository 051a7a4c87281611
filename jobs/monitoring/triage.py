"""The triage's counts on a large table: how many jobs wait for an operator per account, action
and error code, counted by the scheduler instead of on every page load.

Grouping every failed and stalled job is one pass over the partial index `job_triage`: cheap
for thousands, not for the 700,000 of a 10M-job table (1.7 s a load, and the triage page is a
live region that reloads every few seconds). So while more than JOBS_TRIAGE_COUNT_ABOVE jobs
wait for an operator, the scheduler counts them every JOBS_TRIAGE_COUNT_INTERVAL seconds into
`TriageCount` rows (one per account, action and error code), and the triage page and /metrics
read those rows (a few thousand, summed per group), saying when they were counted. Below the
threshold the rows go and every reader counts live, exactly.

The count and its moment commit together, under the cursor row "triage" held locked, so two
schedulers count once per interval and a reader never sees half a count. Counts older than
STALE (the schedulers are down) are not used: the readers count live again, slower but true.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from jobs import sql
from jobs.models import Job, RollupCursor, TriageCount
from jobs.states import NEEDS_OPERATOR, JobStatus

CURSOR = "triage"


def stale_after() -> timedelta:
    """How old counts may be and still be shown: a few missed intervals, at least two minutes."""
    return timedelta(seconds=max(4 * settings.JOBS_TRIAGE_COUNT_INTERVAL, 120.0))


def refresh(*, now: datetime | None = None, force: bool = False) -> bool:
    """Count the failed and stalled jobs per (account, action, error code) into TriageCount,
    unless another scheduler did within JOBS_TRIAGE_COUNT_INTERVAL (or `force`). While at most
    JOBS_TRIAGE_COUNT_ABOVE jobs wait for an operator the rows are removed instead. Returns
    whether counts were written."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.JOBS_TRIAGE_COUNT_INTERVAL)
    with transaction.atomic():
        cursor = RollupCursor.objects.select_for_update().filter(name=CURSOR).first()
        if cursor is None:
            try:
                with transaction.atomic():
                    cursor = RollupCursor.objects.create(name=CURSOR, through=now)
            except IntegrityError:
                return False  # another scheduler created it just now: it counts this round
        elif not force and now - interval < cursor.through <= now:
            return False
        TriageCount.objects.all().delete()
        counted = _too_many_to_count_live()
        if counted:
            with connection.cursor() as db:
                db.execute(sql.TRIAGE_COUNT_INSERT)
        cursor.through = now
        cursor.save(update_fields=["through"])
    return counted


def _too_many_to_count_live() -> bool:
    # Reads at most the threshold's number of index entries.
    above = settings.JOBS_TRIAGE_COUNT_ABOVE
    return Job.objects.filter(status__in=NEEDS_OPERATOR).order_by()[: above + 1].count() > above


def counted_at(*, now: datetime | None = None) -> datetime | None:
    """When the standing counts were taken, or None when readers must count live (there are
    none, or they are older than `stale_after()`)."""
    now = now or timezone.now()
    at = RollupCursor.objects.filter(name=CURSOR).values_list("through", flat=True).first()
    if at is None or at < now - stale_after() or not TriageCount.objects.exists():
        return None
    return at


def counts(*, account_id: str | None = None) -> QuerySet[TriageCount]:
    rows = TriageCount.objects.all()
    return rows.filter(account_id=account_id) if account_id else rows


def totals() -> dict[str, int]:
    """{status: jobs} for failed and stalled, summed from the standing counts."""
    sums = TriageCount.objects.aggregate(failed=Sum("failed"), stalled=Sum("stalled"))
    return {
        JobStatus.FAILED.value: sums["failed"] or 0,
        JobStatus.STALLED.value: sums["stalled"] or 0,
    }
