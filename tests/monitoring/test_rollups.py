"""Queue-health rollups: equal to a direct count of the same runs, written once per minute
however many schedulers roll up, and read back per range, account and action."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from core.models import AuditEvent
from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt, JobRollup, RollupCursor
from jobs.monitoring import rollups
from jobs.states import JobStatus
from tests.factories import AccountFactory, JobFactory


def run_jobs(account, *, succeed=3, fail=2, retry=1, action="noop", created_ago=5.0):
    """Real transitions through the services: each job queued `created_ago` seconds ago, claimed,
    then succeeded, failed terminally or failed with a retry scheduled."""
    created = timezone.now() - timedelta(seconds=created_ago)
    outcomes = ["succeed"] * succeed + ["fail"] * fail + ["retry"] * retry
    for outcome in outcomes:
        job = JobFactory(account=account, action=action, status=JobStatus.QUEUED, max_attempts=3)
        Job.objects.filter(pk=job.pk).update(created_at=created)
        run = services.job_claim(job_id=job.pk, worker="host:1")
        assert run is not None
        if outcome == "succeed":
            assert services.job_succeed(job_id=job.pk, attempt=run.number, result=None)
        else:
            services.job_fail(
                job_id=job.pk,
                attempt=run.number,
                code="provider_timeout" if outcome == "retry" else "provider_auth_failed",
                detail="x",
                retryable=outcome == "retry",
            )


def later(minutes=2):
    return timezone.now() + timedelta(minutes=minutes)


def totals(account_id=""):
    rows = JobRollup.objects.filter(granularity="m", account_id=account_id)
    tally = rollups.Tally()
    for row in rows:
        tally.add(row)
    return tally


def test_rollup_equals_a_direct_count_of_the_attempts(db):
    a, b = AccountFactory(), AccountFactory()
    run_jobs(a, succeed=3, fail=2, retry=1)
    run_jobs(b, succeed=1, fail=0, retry=2, action="sleep")
    assert rollups.roll_up(now=later()) >= 1

    every = totals()
    attempts = JobAttempt.objects.all()
    assert every.started == attempts.count() == 9
    assert every.succeeded == attempts.filter(outcome=AttemptOutcome.SUCCEEDED).count() == 4
    assert every.failed == attempts.filter(outcome=AttemptOutcome.FAILED).count() == 2
    assert every.retried == attempts.filter(outcome=AttemptOutcome.RETRY_SCHEDULED).count() == 3
    assert dict(every.errors) == {"provider_auth_failed": 2, "provider_timeout": 3}
    # Each account's rows add up to its own runs; the per-account rows add up to the total.
    assert totals(a.pk).started == JobAttempt.objects.filter(job__account=a).count() == 6
    assert totals(b.pk).retried == 2 and totals(b.pk).errors == {"provider_timeout": 2}
    # Every first run waited about 5 s since its job was created: the (2.5, 5] or (5, 10] bucket.
    assert every.latency_samples == 9
    assert 2.5 <= every.latency_quantile(0.5) <= 10
    by_action = {row.action for row in JobRollup.objects.filter(account_id="")}
    assert by_action == {"noop", "sleep"}


def test_rolling_up_again_counts_nothing_twice(db):
    run_jobs(AccountFactory(), succeed=2, fail=0, retry=0)
    rollups.roll_up(now=later())
    rows = list(JobRollup.objects.values_list("account_id", "action", "started", "succeeded"))
    assert rollups.roll_up(now=later()) == 0
    assert rollups.roll_up(now=later(3)) == 0
    assert list(JobRollup.objects.values_list("account_id", "action", "started", "succeeded")) == (
        rows
    )
    assert totals().succeeded == 2


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_rolling_up_at_once_count_each_run_once():
    run_jobs(AccountFactory(), succeed=5, fail=1, retry=1)
    now = later()
    barrier = threading.Barrier(2)
    done: list[int] = []
    errors: list[BaseException] = []

    def scheduler():
        try:
            barrier.wait(5)
            done.append(rollups.roll_up(now=now))
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
    assert RollupCursor.objects.count() == 1
    every = totals()
    assert (every.started, every.succeeded, every.failed, every.retried) == (7, 5, 1, 1)
    assert sum(done) >= 1


def test_a_closed_hour_is_summed_from_its_minutes_and_read_back(db):
    account = AccountFactory()
    run_jobs(account, succeed=2, fail=1, retry=0)
    rollups.roll_up(now=later())
    # Move the rolled-up minutes two hours back, then close that hour. A run at the top of the
    # hour has already closed the hour the jobs ran in: that row sums minutes moved away; drop it.
    JobRollup.objects.filter(granularity="h").delete()
    minute_rows = JobRollup.objects.filter(granularity="m")
    hour_ago = rollups.floor_hour(timezone.now()) - timedelta(hours=2)
    minute_rows.update(bucket=hour_ago + timedelta(minutes=7))
    rollups._roll_up_hour(hour_ago)
    hours = JobRollup.objects.filter(granularity="h", bucket=hour_ago, account_id="")
    assert sum(row.succeeded for row in hours) == 2
    day = rollups.queue_health("24h")
    assert (day.total.succeeded, day.total.failed) == (2, 1)  # the hour row, not its minutes too
    assert sum(bucket.tally.succeeded for bucket in day.series) == 2
    assert len(day.series) == 24 and len(rollups.queue_health("7d").series) == 28
    mine = rollups.queue_health("24h", account_id=account.pk, action="noop")
    assert mine.total.failed == 1 and mine.failure_rows() == [("provider_auth_failed", 1, 1 / 3)]
    assert rollups.queue_health("24h", account_id=AccountFactory().pk).total.started == 0
    assert rollups.queue_health("1h").total.started == 0  # the minutes are two hours back now


def test_the_last_hour_reads_minute_rows(db):
    run_jobs(AccountFactory(), succeed=4, fail=0, retry=0)
    rollups.roll_up(now=later())
    health = rollups.queue_health("1h")
    assert len(health.series) == 60
    assert health.total.succeeded == 4 and health.through is not None
    assert health.throughput_per_minute > 0


def test_empty_minutes_are_skipped_and_old_rows_pruned(db):
    old = timezone.now() - timedelta(days=3)
    AuditEvent.objects.create(
        created_at=old,
        actor_type="system",
        actor="system:worker",
        command="claim",
        account_id="acc_x",
        job_id="job_gone",
        data={"attempt": 1},
    )
    assert rollups.roll_up(now=later()) == 1  # the one busy minute, then straight to now
    assert RollupCursor.objects.get().through >= rollups.floor_minute(timezone.now())
    # Closing the hours after it pruned its minute rows (older than two days) but kept the hour.
    assert not JobRollup.objects.filter(granularity="m").exists()
    row = JobRollup.objects.get(granularity="h", account_id="")
    assert row.action == rollups.DELETED_ACTION and row.started == 1


def test_latency_quantiles_interpolate_within_a_bucket():
    tally = rollups.Tally()
    for seconds in (0.05, 0.05, 3, 4, 4.5, 100, 100, 100, 100, 5000):
        tally.add_latency(seconds)
    assert tally.latency_samples == 10
    assert 2.5 <= tally.latency_quantile(0.5) <= 5
    assert 60 <= tally.latency_quantile(0.8) <= 300
    assert tally.latency_quantile(0.99) == rollups.LATENCY_BOUNDS[-1]
    assert rollups.Tally().latency_quantile(0.5) is None


def test_vendor_clock(db):
    from jobs.monitoring.heartbeats import _db_now

    assert abs((_db_now() - timezone.now()).total_seconds()) < 5
    assert connection.vendor in {"sqlite", "postgresql"}
