from __future__ import annotations

from django.db import connection

from jobs import reports
from jobs.states import JobStatus
from tests.factories import JobFactory


def test_large_tables_estimate_finished_statuses_and_count_the_rest_exactly(account, monkeypatch):
    for status, n in [(JobStatus.SUCCEEDED, 30), (JobStatus.FAILED, 3), (JobStatus.QUEUED, 2)]:
        for _ in range(n):
            JobFactory(account=account, status=status)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE jobs_job")
    monkeypatch.setattr(reports, "ESTIMATE_ABOVE_ROWS", 0)  # treat this table as large

    board = reports.dashboard()

    # Work that waits or needs an operator is always counted exactly.
    assert board.by_status[JobStatus.FAILED] == 3
    assert board.by_status[JobStatus.QUEUED] == 2
    if connection.vendor == "postgresql":
        assert board.estimated == {JobStatus.SUCCEEDED, JobStatus.RESOLVED}
        # ANALYZE read the whole small table, so the estimate is exact here.
        assert board.by_status[JobStatus.SUCCEEDED] == 30
    else:
        assert board.estimated == frozenset()
        assert board.by_status[JobStatus.SUCCEEDED] == 30


def test_small_tables_count_everything_exactly(account):
    JobFactory(account=account, status=JobStatus.SUCCEEDED)
    board = reports.dashboard()
    assert board.estimated == frozenset()
    assert board.by_status[JobStatus.SUCCEEDED] == 1
