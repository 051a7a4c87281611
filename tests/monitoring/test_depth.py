"""Queue depth over time: the scheduler's once-a-minute samples equal a direct count of the job
table, cost nothing for idle accounts, are written once per minute however many schedulers
sample, close into hour rows kept like the rollups, and are what the dashboard reads."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from jobs.models import DepthSample, Job, RollupCursor
from jobs.monitoring import rollups
from jobs.states import JobStatus as S
from tests.factories import AccountFactory, JobFactory

WAITING = (S.SCHEDULED, S.QUEUED, S.RUNNING)


def samples(minute=None, **scope):
    rows = DepthSample.objects.filter(granularity="m", **scope)
    if minute is not None:
        rows = rows.filter(bucket=minute)
    return {(r.account_id, r.action): r for r in rows}


def direct(account_id=None, action=None):
    jobs = Job.objects.filter(status__in=WAITING)
    if account_id:
        jobs = jobs.filter(account_id=account_id)
    if action:
        jobs = jobs.filter(action=action)
    return Counter(jobs.values_list("status", flat=True))


def test_a_sample_equals_a_direct_count_of_the_job_table(db):
    now = timezone.now().replace(second=10)
    one, two = AccountFactory(), AccountFactory()
    for account, action, status, n in (
        (one, "noop", S.QUEUED, 3),
        (one, "noop", S.RUNNING, 1),
        (one, "imap_sync_messages", S.SCHEDULED, 2),
        (two, "noop", S.QUEUED, 1),
        (two, "imap_sync_messages", S.QUEUED, 2),
        (two, "noop", S.SUCCEEDED, 4),  # finished: not depth
        (two, "noop", S.FAILED, 2),
    ):
        for _ in range(n):
            JobFactory(account=account, action=action, status=status)
    Job.objects.filter(account=two, action="imap_sync_messages").update(
        run_at=now - timedelta(minutes=7)
    )
    assert rollups.sample_depth(now=now)
    rows = samples(rollups.floor_minute(now))
    for account_id in ("", one.pk, two.pk):
        for action in ("", "noop", "imap_sync_messages"):
            counted = direct(account_id or None, action or None)
            row = rows.get((account_id, action))
            if not counted:
                assert row is None, (account_id, action)  # nothing waiting: no row
                continue
            assert (row.scheduled, row.queued, row.running) == (
                counted[S.SCHEDULED],
                counted[S.QUEUED],
                counted[S.RUNNING],
            ), (account_id, action)
    assert rows[("", "")].oldest_queued_seconds == pytest.approx(420, abs=2)
    assert rows[(two.pk, "imap_sync_messages")].oldest_queued_seconds == pytest.approx(420, abs=2)
    assert rows[(one.pk, "imap_sync_messages")].oldest_queued_seconds is None  # none queued
    # The same minute again: nothing more.
    assert not rollups.sample_depth(now=now + timedelta(seconds=20))
    assert DepthSample.objects.count() == len(rows)


def test_idle_accounts_write_no_rows(db):
    idle = [AccountFactory() for _ in range(30)]
    for account in idle:
        JobFactory(account=account, status=S.SUCCEEDED)
        JobFactory(account=account, status=S.FAILED)
    busy = AccountFactory()
    JobFactory(account=busy, status=S.QUEUED)
    rollups.sample_depth()
    assert set(DepthSample.objects.values_list("account_id", flat=True)) == {"", busy.pk}
    assert DepthSample.objects.count() == 4  # (busy | every) x (noop | every action)
    # A quiet minute still says it was sampled, with one row of zeros.
    Job.objects.filter(account=busy).update(status=S.SUCCEEDED)
    rollups.sample_depth(now=timezone.now() + timedelta(minutes=1))
    quiet = samples(rollups.floor_minute(timezone.now() + timedelta(minutes=1)))
    assert list(quiet) == [("", "")] and quiet[("", "")].queued == 0


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_sampling_at_once_write_one_sample_per_minute():
    account = AccountFactory()
    for _ in range(3):
        JobFactory(account=account, status=S.QUEUED)
    now = timezone.now()
    barrier = threading.Barrier(2)
    sampled: list[bool] = []
    errors: list[BaseException] = []

    def scheduler():
        try:
            barrier.wait(5)
            for second in (0, 1):
                sampled.append(rollups.sample_depth(now=now + timedelta(seconds=second)))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sampled.count(True) <= 1
    # Whichever created the cursor, the minute has one sample (or, if both lost the cursor's
    # creation race to each other, the next call writes it; never two).
    rollups.sample_depth(now=now)
    counts = Counter(
        DepthSample.objects.filter(account_id="", action="").values_list("bucket", flat=True)
    )
    assert counts == {rollups.floor_minute(now): 1}
    assert samples(rollups.floor_minute(now))[(account.pk, "noop")].queued == 3
    assert RollupCursor.objects.filter(name=rollups.DEPTH_CURSOR).count() == 1


def test_a_range_reads_the_samples(db):
    account = AccountFactory()
    now = timezone.now().replace(minute=30, second=5, microsecond=0)
    # Three hours of samples, every minute, with the queue growing by one job a minute.
    job_ids = []
    start = now - timedelta(hours=3)
    for i in range(0, 181):
        moment = start + timedelta(minutes=i)
        job_ids.append(JobFactory(account=account, status=S.QUEUED).pk)
        Job.objects.filter(pk=job_ids[0]).update(run_at=start)
        assert rollups.sample_depth(now=moment)
    # Closed hours have their hour rows: the deepest minute of each.
    hours = DepthSample.objects.filter(granularity="h", account_id="", action="")
    assert hours.count() == 3
    last_closed = hours.order_by("-bucket").first()
    assert last_closed.bucket == rollups.floor_hour(now) - timedelta(hours=1)
    closed = DepthSample.objects.filter(
        granularity="m",
        account_id="",
        action="",
        bucket__gte=last_closed.bucket,
        bucket__lt=last_closed.bucket + timedelta(hours=1),
    )
    assert closed.count() == 60
    assert last_closed.queued == max(r.queued for r in closed)

    hour = rollups.depth_history("1h", now=now)
    assert len(hour.series) == 60
    assert all(point is not None for _, point in hour.series[:-1])
    assert hour.current is not None and hour.current.queued == 181
    assert hour.current.oldest_queued_seconds == 3 * 3600
    assert [p.queued for _, p in hour.series if p][-3:] == [179, 180, 181]

    day = rollups.depth_history("24h", account_id=account.pk, action="noop", now=now)
    assert len(day.series) == 24
    sampled = [(start, p.queued) for start, p in day.series if p is not None]
    # Closed hours from their hour rows, the open hour from its minutes: the deepest of each.
    assert [q for _, q in sampled][-2:] == [last_closed.queued, 181]
    assert day.current and day.current.queued == 181

    week = rollups.depth_history("7d", now=now)
    assert len(week.series) == 28
    assert max(p.queued for _, p in week.series if p) == 181
    # Another account sees zeros where the minute was sampled, not its neighbour's queue.
    other = rollups.depth_history("1h", account_id=AccountFactory().pk, now=now)
    assert other.current is not None and other.current.queued == 0


def test_old_samples_go_with_the_rollups_retention(db):
    now = timezone.now()
    old = rollups.floor_hour(now) - rollups.KEEP_MINUTES - timedelta(hours=2)
    ancient = rollups.floor_hour(now) - rollups.KEEP_HOURS - timedelta(hours=2)
    for granularity, bucket in (("m", old), ("h", ancient), ("h", old)):
        DepthSample.objects.create(
            granularity=granularity, bucket=bucket, account_id="", action="", sampled_at=bucket
        )
    RollupCursor.objects.create(
        name=rollups.DEPTH_CURSOR, through=rollups.floor_hour(now) - timedelta(minutes=1)
    )
    rollups.sample_depth(now=rollups.floor_hour(now) + timedelta(seconds=1))
    left = set(DepthSample.objects.values_list("granularity", "bucket"))
    assert ("m", old) not in left and ("h", ancient) not in left
    assert ("h", old) in left
