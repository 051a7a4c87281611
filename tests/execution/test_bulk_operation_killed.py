"""A bulk operation on real django-q2 workers: the whole cluster is killed with SIGKILL while a
worker is inside a batch's transaction; the scheduler hands the operation to a new cluster once
the lease expires, and it finishes without acting twice on any job."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from core.actors import Actor
from core.models import AuditEvent, AuditEventJob
from jobs import services
from jobs.models import BulkOperation, Job
from jobs.states import BulkStatus, JobStatus
from tests.conftest import is_postgres
from tests.execution.conftest import Execution
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.slow

LEASE = "2"


def waiting_on_a_lock() -> bool:
    """A session (the worker's) waits for a row lock of jobs_job."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE %s",
            ["%jobs_job%FOR NO KEY UPDATE%"],
        )
        return cursor.fetchone()[0] > 0


def test_killed_mid_operation_it_resumes_without_acting_twice(execution: Execution, settings):
    if not is_postgres():
        # As the fault suite: the worker is held inside its batch by a PostgreSQL row lock;
        # on SQLite the same interruption is tested in-process (tests/jobs/test_bulk_operations).
        pytest.skip("runs on PostgreSQL (DATABASE_URL is SQLite)")
    settings.JOBS_BULK_BATCH_SIZE = 5
    settings.JOBS_BULK_LEASE_SECONDS = float(LEASE)
    execution.env["JOBS_BULK_LEASE_SECONDS"] = LEASE
    account = AccountFactory()
    jobs = sorted(
        (JobFactory(account=account, status=JobStatus.FAILED, max_attempts=1) for _ in range(20)),
        key=lambda job: job.pk,
    )
    # Another session holds the first job of batch 2: the worker does batches 0 and 1, then
    # waits inside batch 2's transaction.
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        conn = connections.create_connection("default")
        try:
            with conn.cursor() as cursor:
                conn.set_autocommit(False)
                cursor.execute("SELECT id FROM jobs_job WHERE id = %s FOR UPDATE", [jobs[10].pk])
                held.set()
                release.wait(60)
                conn.rollback()
        finally:
            conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        cluster = execution.cluster(workers=1)
        operation = services.bulk_operation_create(
            command="retry",
            filters={"status": "failed"},
            account_id=account.pk,
            actor=Actor.system("test"),
            pace=None,
        )
        assert operation.batches == 4
        execution.wait(
            lambda: (
                BulkOperation.objects.get(pk=operation.pk).next_batch == 2 and waiting_on_a_lock()
            ),
            timeout=60,
            what="the worker inside batch 2",
        )
        cluster.kill()  # SIGKILL to the whole tree, the worker inside its transaction too
    finally:
        release.set()
        holder.join(30)
    stopped = BulkOperation.objects.get(pk=operation.pk)
    assert (stopped.status, stopped.next_batch, stopped.done) == (BulkStatus.RUNNING, 2, 10)

    execution.cluster(workers=1)
    execution.scheduler()  # sends the operation again once the killed worker's lease expires
    finished = execution.wait(
        lambda: BulkOperation.objects.filter(pk=operation.pk, status=BulkStatus.SUCCEEDED).first(),
        timeout=90,
        what="the operation to finish",
    )
    assert (finished.done, finished.skipped, finished.failed) == (20, {}, 0)
    for job in jobs:
        # Retried once: one link to one batch event, and one more attempt granted once.
        assert AuditEventJob.objects.filter(job_id=job.pk).count() == 1
        assert Job.objects.get(pk=job.pk).max_attempts == 2
    batches = AuditEvent.objects.filter(command="retry", data__bulk_operation_id=operation.pk)
    assert sorted(event.data["batch"] for event in batches) == [0, 1, 2, 3]
