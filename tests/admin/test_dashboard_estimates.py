from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from jobs import reports
from jobs.models import Job
from jobs.states import JobStatus
from tests.factories import JobFactory


def test_large_tables_estimate_every_status(account, monkeypatch):
    for status, n in [(JobStatus.SUCCEEDED, 30), (JobStatus.FAILED, 3), (JobStatus.QUEUED, 2)]:
        for _ in range(n):
            JobFactory(account=account, status=status)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")
    monkeypatch.setattr(reports, "ESTIMATE_ABOVE_ROWS", 0)  # treat this table as large

    board = reports.dashboard()

    # ANALYZE read the whole small table, so the estimates are exact here.
    assert board.by_status[JobStatus.FAILED] == 3
    assert board.by_status[JobStatus.QUEUED] == 2
    if connection.vendor == "postgresql":
        # Counting the waiting and failing jobs of 10M took 2.1 s: every status is estimated
        # (the waiting ones are exact in the depth sample).
        assert board.estimated == set(JobStatus)
        assert board.by_status[JobStatus.SUCCEEDED] == 30
    else:
        assert board.estimated == frozenset()
        assert board.by_status[JobStatus.SUCCEEDED] == 30


def test_small_tables_count_everything_exactly(account):
    JobFactory(account=account, status=JobStatus.SUCCEEDED)
    board = reports.dashboard()
    assert board.estimated == frozenset()
    assert board.by_status[JobStatus.SUCCEEDED] == 1


def test_running_without_a_heartbeat_is_counted_up_to_a_cap(account, monkeypatch):
    for _ in range(3):
        JobFactory(account=account, status=JobStatus.RUNNING)
    Job.objects.update(heartbeat_at=timezone.now() - timedelta(days=1))
    monkeypatch.setattr(reports, "STALLED_NOW_CAP", 2)
    board = reports.dashboard()
    assert (board.stalled_now, board.stalled_capped) == (2, True)
    monkeypatch.setattr(reports, "STALLED_NOW_CAP", 3)
    board = reports.dashboard()
    assert (board.stalled_now, board.stalled_capped) == (3, False)
