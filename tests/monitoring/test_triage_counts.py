"""The scheduler's triage counts: on a table with more failed and stalled jobs than a page load
should group, the triage page and /metrics read counts the scheduler keeps, equal to a live
grouping of the same moment; below the threshold, and when the counts are stale, every reader
counts live."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from jobs import reports
from jobs.models import Job, RollupCursor, TriageCount
from jobs.monitoring import rollups, triage
from jobs.states import JobStatus as S
from tests.factories import AccountFactory, JobFactory


@pytest.fixture
def counted(settings):
    """Counts kept above two waiting jobs."""
    settings.JOBS_TRIAGE_COUNT_ABOVE = 2
    settings.JOBS_TRIAGE_COUNT_INTERVAL = 30.0
    return settings


def seed(accounts):
    early = timezone.now() - timedelta(hours=3)
    a, b, c = accounts
    JobFactory(account=a, status=S.FAILED, action="sleep", last_error_at=early)
    JobFactory(account=a, status=S.FAILED, action="sleep", last_error_detail="newest")
    JobFactory(account=b, status=S.STALLED, action="sleep")  # worker_lost
    JobFactory(account=b, status=S.FAILED, action="sleep")
    JobFactory(account=c, status=S.FAILED, action="noop", last_error_code="provider_auth_failed")
    JobFactory(account=c, status=S.STALLED, action="noop", last_error_code="provider_auth_failed")
    JobFactory(account=c, status=S.SUCCEEDED, action="noop")
    JobFactory(account=c, status=S.QUEUED, action="noop")


def as_rows(groups):
    return [
        (g.action, g.error_code, g.count, g.failed, g.stalled, g.accounts, g.first_seen,
         g.last_seen, g.sample_job_id, g.sample_detail)
        for g in groups
    ]  # fmt: skip


def test_the_counts_equal_a_live_grouping_of_the_same_moment(db, counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    assert triage.refresh() is True
    assert TriageCount.objects.count() == 4  # (a, sleep, timeout), (b, sleep, lost and timeout), …

    scheduled = reports.triage()
    assert scheduled.counted_at is not None
    assert as_rows(scheduled.groups) == as_rows(reports.triage_groups())
    assert scheduled.total == 6
    for account in accounts:
        mine = reports.triage(account_id=account.pk)
        assert mine.counted_at is not None
        assert as_rows(mine.groups) == as_rows(reports.triage_groups(account_id=account.pk))


def test_the_counts_stand_until_the_next_count_then_follow_the_table(db, counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    now = timezone.now()
    assert triage.refresh(now=now) is True
    Job.objects.filter(status=S.STALLED).update(status=S.RESOLVED)

    # Within the interval another round (this scheduler's or another's) does not count again,
    # and the page keeps showing the standing counts, saying when they were taken.
    assert triage.refresh(now=now + timedelta(seconds=10)) is False
    assert reports.triage(now=now + timedelta(seconds=10)).total == 6
    assert reports.triage(now=now + timedelta(seconds=10)).counted_at == now

    assert triage.refresh(now=now + timedelta(seconds=31)) is True
    assert reports.triage(now=now + timedelta(seconds=31)).total == 4


def test_below_the_threshold_the_counts_go_and_readers_count_live(db, counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    assert triage.refresh() is True
    Job.objects.filter(status__in=(S.FAILED, S.STALLED)).exclude(action="noop").delete()

    assert triage.refresh(force=True) is False  # two left: not above the threshold
    assert not TriageCount.objects.exists()
    live = reports.triage()
    assert live.counted_at is None and live.total == 2


def test_stale_counts_are_not_shown(db, counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    then = timezone.now() - triage.stale_after() - timedelta(seconds=1)
    assert triage.refresh(now=then) is True
    JobFactory(account=accounts[0], status=S.FAILED, action="sleep")

    # The schedulers stopped counting: the page counts live (slower, but true).
    fresh = reports.triage()
    assert fresh.counted_at is None and fresh.total == 7


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_count_once_per_interval(counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    now = timezone.now()
    results: list[bool] = []
    start = threading.Barrier(2)

    def count():
        try:
            start.wait()
            results.append(triage.refresh(now=now))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=count) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert RollupCursor.objects.get(name=triage.CURSOR).through == now
    assert TriageCount.objects.count() == 4


def test_metrics_depth_reads_the_samples_and_the_counts(db, counted):
    accounts = AccountFactory.create_batch(3)
    seed(accounts)
    now = timezone.now()
    assert rollups.sample_depth(now=now)
    assert triage.refresh(now=now)
    # Work arrives after the scheduler's round: the figures are those of its round.
    JobFactory(account=accounts[0], status=S.QUEUED, action="noop")
    JobFactory(account=accounts[0], status=S.FAILED, action="noop")

    depth = reports.depth(now=now + timedelta(seconds=20))
    assert depth.by_status == {
        S.SCHEDULED: 0,
        S.QUEUED: 1,
        S.RUNNING: 0,
        S.FAILED: 4,
        S.STALLED: 2,
    }
    assert depth.oldest_queued_run_at is not None

    # Without a recent sample or standing counts, everything is counted live.
    later = now + timedelta(minutes=10)
    live = reports.depth(now=later)
    assert live.by_status[S.QUEUED] == 2 and live.by_status[S.FAILED] == 5
    assert (
        live.oldest_queued_run_at
        == (
            Job.objects.filter(status=S.QUEUED)
            .order_by("run_at")
            .values_list("run_at", flat=True)[0]
        )
    )
