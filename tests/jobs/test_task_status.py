"""A task's status is derived from its jobs and kept current in the same transaction: each
transition moves the task's counters (jobs.states.TASK_COUNTER) and derives the status from
them, exactly, also when jobs of one task finish at the same moment."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.db import connection, connections, transaction
from django.db.models import Count

from core.errors import ValidationFailed
from jobs import services, sql
from jobs.models import Job, Task
from jobs.states import JobStatus, TaskStatus, derive_task_status

S = JobStatus


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, TaskStatus.EMPTY),
        ({S.QUEUED: 2}, TaskStatus.PENDING),
        ({S.SCHEDULED: 1, S.QUEUED: 1}, TaskStatus.PENDING),
        ({S.RUNNING: 1, S.QUEUED: 1}, TaskStatus.RUNNING),
        ({S.SUCCEEDED: 1, S.QUEUED: 1}, TaskStatus.RUNNING),
        ({S.SUCCEEDED: 2}, TaskStatus.SUCCEEDED),
        ({S.SUCCEEDED: 1, S.RESOLVED: 1}, TaskStatus.SUCCEEDED),
        ({S.SUCCEEDED: 1, S.FAILED: 1}, TaskStatus.FAILED),
        ({S.STALLED: 1}, TaskStatus.FAILED),
    ],
)
def test_derivation(counts, expected):
    assert derive_task_status(counts) == expected


@pytest.mark.django_db
def test_the_sql_rendering_derives_what_derive_task_status_does():
    cases = [
        dict(zip(JobStatus, counts, strict=True))
        for counts in itertools.product((0, 1), repeat=len(JobStatus))
    ]
    cases += [{S.SUCCEEDED: 3, S.QUEUED: 2}, {S.FAILED: 2, S.RESOLVED: 5}, {S.SCHEDULED: 4}]
    selects = [
        "SELECT " + sql.task_status_case(lambda status, c=case: str(c.get(status, 0)))
        for case in cases
    ]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(selects))
        derived = [status for (status,) in cursor.fetchall()]
    assert derived == [derive_task_status(case) for case in cases]


def counted(task_id: str) -> dict[str, int]:
    """The task's jobs counted by status from the job table, the truth the counters keep."""
    rows = Job.objects.filter(task_id=task_id).values_list("status").annotate(n=Count("*"))
    return {status: n for status, n in rows.order_by()}


def status_of(task) -> str:
    """The task's stored status, after checking that its counters and status are exactly
    what its jobs say."""
    stored = Task.objects.get(pk=task.pk)
    assert stored.job_counts() == counted(task.pk)
    assert stored.status == derive_task_status(counted(task.pk))
    return stored.status


def test_task_follows_its_jobs_through_every_transition(account, actor):
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 2}, actor=actor
    )
    first, second = task.jobs.order_by("id")
    assert status_of(task) == TaskStatus.PENDING

    attempt = services.job_claim(job_id=first.pk, worker="w")
    assert status_of(task) == TaskStatus.RUNNING
    services.job_fail(
        job_id=first.pk, attempt=attempt.number, code="boom", detail="x", retryable=False
    )
    assert status_of(task) == TaskStatus.RUNNING  # the second job is still queued

    attempt = services.job_claim(job_id=second.pk, worker="w")
    services.job_succeed(job_id=second.pk, attempt=attempt.number, result={})
    assert status_of(task) == TaskStatus.FAILED

    services.job_retry(job_id=first.pk, actor=actor)
    assert status_of(task) == TaskStatus.RUNNING

    services.job_resolve(job_id=first.pk, actor=actor, code="ignored", note="not needed")
    assert status_of(task) == TaskStatus.SUCCEEDED

    services.job_trigger(job_id=second.pk, actor=actor)
    assert status_of(task) == TaskStatus.RUNNING

    services.job_update(job_id=second.pk, actor=actor, changes={"run_at": "2099-01-01T00:00:00Z"})
    assert status_of(task) == TaskStatus.RUNNING  # one resolved, one scheduled

    services.job_delete(job_id=second.pk, actor=actor)
    assert status_of(task) == TaskStatus.SUCCEEDED

    services.jobs_search_delete(
        account_id=account.pk, filters={"task_id": task.pk}, actor=actor, expected_count=1
    )
    assert status_of(task) == TaskStatus.EMPTY


def test_lost_run_and_dispatch_update_the_task(account, actor, settings):
    settings.JOBS_STALL_GRACE_SECONDS = 0
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 1}, actor=actor
    )
    job = task.jobs.get()
    job.max_attempts = 1
    job.save()
    services.job_claim(job_id=job.pk, worker="w")
    assert services.jobs_sweep_lost() == [job.pk]
    job.refresh_from_db()
    assert job.status == S.STALLED
    assert status_of(task) == TaskStatus.FAILED


def test_a_retried_failure_and_a_dispatch_count_the_job_where_it_is(account, actor):
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 1}, actor=actor
    )
    job = task.jobs.get()
    Job.objects.filter(pk=job.pk).update(max_attempts=3)
    run = services.job_claim(job_id=job.pk, worker="w")
    services.job_fail(
        job_id=job.pk, attempt=run.number, code="provider_timeout", detail="x", retryable=True
    )
    assert Job.objects.get(pk=job.pk).status == S.SCHEDULED
    assert status_of(task) == TaskStatus.PENDING  # every job waits again
    Job.objects.filter(pk=job.pk).update(run_at=job.created_at)
    assert services.jobs_dispatch_due() == [job.pk]
    assert status_of(task) == TaskStatus.PENDING
    assert Task.objects.get(pk=task.pk).job_counts() == {S.QUEUED: 1}


def test_task_create_rejects_unknown_kind_and_bad_params(account, actor):
    with pytest.raises(ValidationFailed) as excinfo:
        services.task_create(account=account, kind="nope", params={}, actor=actor)
    assert "kind" in excinfo.value.fields
    with pytest.raises(ValidationFailed) as excinfo:
        services.task_create(account=account, kind="noop_batch", params={"count": 0}, actor=actor)
    assert "params" in excinfo.value.fields
    assert not Task.objects.exists()


# --- concurrent transitions ---------------------------------------------------------------------


def _in_thread(target, *args):
    """Run `target` in a thread with its own database connection, closed at the end; its
    exception, if any, is raised by join()."""
    errors: list[BaseException] = []

    def run():
        try:
            target(*args)
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()

    def join():
        thread.join(60)
        assert not thread.is_alive(), "the thread did not finish"
        if errors:
            raise errors[0]

    return join


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


@pytest.mark.django_db(transaction=True)
def test_two_jobs_finishing_at_the_same_moment_leave_the_task_succeeded(account, actor):
    """The first success is held uncommitted while the second runs: the second waits for the
    task's row, then derives from both (PostgreSQL: asserted to have waited on the lock;
    SQLite takes its write lock at BEGIN, so there the second waits for the whole first)."""
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 2}, actor=actor
    )
    first, second = task.jobs.order_by("id")
    runs = [services.job_claim(job_id=job.pk, worker="w") for job in (first, second)]
    first_done, commit, second_started = threading.Event(), threading.Event(), threading.Event()
    second_pid: list[int] = []

    def finish_first():
        with transaction.atomic():
            assert services.job_succeed(job_id=first.pk, attempt=runs[0].number, result={})
            first_done.set()
            assert commit.wait(30)

    def finish_second():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                second_pid.append(cursor.fetchone()[0])
        second_started.set()
        assert services.job_succeed(job_id=second.pk, attempt=runs[1].number, result={})

    join_first = _in_thread(finish_first)
    assert first_done.wait(30)
    join_second = _in_thread(finish_second)
    assert second_started.wait(30)
    if connection.vendor == "postgresql":
        for _ in range(3000):
            if _waiting_on_a_lock(second_pid[0]):
                break
            threading.Event().wait(0.01)
        assert _waiting_on_a_lock(second_pid[0]), "the second success did not wait on the task"
        # Neither has committed: the task is still running for everyone else.
        assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING
    commit.set()
    join_first()
    join_second()

    assert status_of(task) == TaskStatus.SUCCEEDED
    assert Task.objects.get(pk=task.pk).job_counts() == {S.SUCCEEDED: 2}


@pytest.mark.django_db(transaction=True)
def test_many_jobs_of_one_task_moved_by_concurrent_workers_are_counted_exactly(account, actor):
    """Four connections claim and close the jobs of one task at once, some failing (and
    retried by an operator while the others run), others succeeding: every count ends exact."""
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 120}, actor=actor
    )
    ids = list(task.jobs.order_by("id").values_list("pk", flat=True))
    start = threading.Barrier(4)

    def work(share: list[str]):
        start.wait(30)
        for n, job_id in enumerate(share):
            run = services.job_claim(job_id=job_id, worker=f"w{n}")
            if n % 5 == 0:
                services.job_fail(
                    job_id=job_id, attempt=run.number, code="boom", detail="x", retryable=False
                )
                services.job_retry(job_id=job_id, actor=actor)
                run = services.job_claim(job_id=job_id, worker=f"w{n}")
            services.job_succeed(job_id=job_id, attempt=run.number, result=None)

    joins = [_in_thread(work, ids[i::4]) for i in range(4)]
    for join in joins:
        join()

    assert status_of(task) == TaskStatus.SUCCEEDED
    assert Task.objects.get(pk=task.pk).job_counts() == {S.SUCCEEDED: 120}
