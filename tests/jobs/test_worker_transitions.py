"""The worker's claim and success write exactly the rows the rest of the product reads.

On PostgreSQL they are single statements that commit on their own (outside any transaction,
as in a worker), on SQLite one transaction each: both must leave the same job, attempt, audit
and task rows. `transactional_db` so the statements run outside a test transaction, as they do
in a worker.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from core.models import AuditEvent
from jobs import services
from jobs import sql as job_sql
from jobs.execution.actions.registry import JobSpec
from jobs.models import AttemptOutcome, Job, JobAttempt, Task
from jobs.states import JobStatus, TaskStatus
from tests.factories import AccountFactory

S = JobStatus
WORKER = "host-a:4242"

pytestmark = pytest.mark.django_db(transaction=True)


def audit_rows(job_id: str) -> list[dict]:
    return list(
        AuditEvent.objects.filter(job_id=job_id, command__in=["claim", "succeed"])
        .order_by("id")
        .values(
            "actor_type",
            "actor",
            "command",
            "account_id",
            "task_id",
            "from_status",
            "to_status",
            "reason",
            "data",
        )
    )


def expected_audit(job: Job, task_id: str = "") -> list[dict]:
    common = {"actor_type": "system", "actor": "system:worker", "reason": ""}
    common |= {"account_id": job.account_id, "task_id": task_id}
    return [
        common
        | {"command": "claim", "from_status": S.QUEUED, "to_status": S.RUNNING}
        | {"data": {"attempt": 1, "worker": WORKER}},
        common
        | {"command": "succeed", "from_status": S.RUNNING, "to_status": S.SUCCEEDED}
        | {"data": {"attempt": 1}},
    ]


def test_job_without_task_is_claimed_and_succeeds_with_its_attempt_and_audit(actor):
    account = AccountFactory()
    job = services.job_create(account=account, action="noop", actor=actor, payload={"n": "é"})

    run = services.job_claim(job_id=job.pk, worker=WORKER)

    assert (run.job_id, run.account_id, run.task_id) == (job.pk, account.pk, None)
    assert (run.action, run.payload, run.number) == ("noop", {"n": "é"}, 1)
    claimed = Job.objects.get(pk=job.pk)
    assert (claimed.status, claimed.worker, claimed.attempt_count) == (S.RUNNING, WORKER, 1)
    assert claimed.heartbeat_at is not None and claimed.started_at is not None
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.number, attempt.worker, attempt.outcome) == (1, WORKER, "running")

    assert services.job_succeed(job_id=job.pk, attempt=1, result={"ok": True}) is True

    done = Job.objects.get(pk=job.pk)
    assert (done.status, done.result, done.heartbeat_at) == (S.SUCCEEDED, {"ok": True}, None)
    assert done.finished_at >= done.started_at
    attempt.refresh_from_db()
    assert attempt.outcome == AttemptOutcome.SUCCEEDED
    assert attempt.finished_at == done.finished_at
    assert attempt.duration_ms is not None and attempt.duration_ms >= 0
    assert audit_rows(job.pk) == expected_audit(job)


def test_task_job_claim_sets_the_task_running_and_success_derives_it(actor):
    account = AccountFactory()
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 2}, actor=actor
    )
    first, second = task.jobs.order_by("id")

    run = services.job_claim(job_id=first.pk, worker=WORKER)
    assert run.task_id == task.pk
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING
    assert services.job_succeed(job_id=first.pk, attempt=run.number, result=None) is True
    assert Task.objects.get(pk=task.pk).status == TaskStatus.RUNNING  # the second one waits
    assert audit_rows(first.pk) == expected_audit(first, task_id=task.pk)

    run = services.job_claim(job_id=second.pk, worker=WORKER)
    services.job_succeed(job_id=second.pk, attempt=run.number, result=None)
    assert Task.objects.get(pk=task.pk).status == TaskStatus.SUCCEEDED


def test_a_second_delivery_or_a_stale_outcome_changes_nothing(actor):
    job = services.job_create(account=AccountFactory(), action="noop", actor=actor)
    run = services.job_claim(job_id=job.pk, worker=WORKER)

    assert services.job_claim(job_id=job.pk, worker="host-b:1") is None
    assert services.job_succeed(job_id=job.pk, attempt=run.number + 1, result={}) is False
    assert Job.objects.get(pk=job.pk).status == S.RUNNING
    assert services.job_succeed(job_id=job.pk, attempt=run.number, result={}) is True
    assert services.job_succeed(job_id=job.pk, attempt=run.number, result={"x": 1}) is False

    assert Job.objects.get(pk=job.pk).result == {}
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert AuditEvent.objects.filter(job_id=job.pk, command="succeed").count() == 1


def test_created_rows_read_back_as_written_and_save_as_updates(actor):
    account = AccountFactory()
    specs = [
        JobSpec("noop", {"text": "naïve ✓", "nested": {"list": [1, None, "x"]}}),
        JobSpec("noop", {}, priority=7, labels={"team": "mail"}, max_attempts=2),
    ]
    created = services.jobs_create(account=account, specs=specs, actor=actor)

    stored = {job.pk: job for job in Job.objects.filter(account=account)}
    for job, spec in zip(created, specs, strict=True):
        row = stored[job.pk]
        assert (row.payload, row.labels, row.priority) == (spec.payload, spec.labels, spec.priority)
        assert (row.result, row.resolution, row.created_at) == (None, None, job.created_at)
    assert stored[created[1].pk].max_attempts == 2

    created[0].priority = 3
    created[0].save(update_fields=["priority"])  # an UPDATE: the row exists
    assert Job.objects.get(pk=created[0].pk).priority == 3


def test_a_retried_claim_whose_first_reply_was_lost_gets_its_own_claim_back(actor):
    job = services.job_create(account=AccountFactory(), action="noop", actor=actor)
    claimed_at = timezone.now()
    first = services.job_claim(job_id=job.pk, worker=WORKER, claimed_at=claimed_at)

    # The worker never saw `first` (the connection broke after the commit) and tries again.
    again = services.job_claim(job_id=job.pk, worker=WORKER, claimed_at=claimed_at)

    assert again == first
    assert JobAttempt.objects.filter(job=job).count() == 1
    assert AuditEvent.objects.filter(job_id=job.pk, command="claim").count() == 1
    # Anyone else, or the same worker at another time (a later duplicate message), gets nothing.
    assert services.job_claim(job_id=job.pk, worker="host-b:1", claimed_at=claimed_at) is None
    assert services.job_claim(job_id=job.pk, worker=WORKER) is None


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="about PostgreSQL's planner and partial indexes"
)
def test_claim_and_success_use_the_primary_key_even_when_statistics_say_nothing_is_queued(actor):
    # Statistics taken when no job was queued, then a burst the last ANALYZE has not seen: with
    # a plain `status = 'queued'` the planner scans the partial "queued" index (empty, as far as
    # it knows) instead of the primary key, and every claim reads every queued job.
    account = AccountFactory()
    services.jobs_create(account=account, specs=[JobSpec("noop", {})] * 3000, actor=actor)
    Job.objects.update(status=S.SUCCEEDED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
    job = services.jobs_create(account=account, specs=[JobSpec("noop", {})] * 300, actor=actor)[0]
    params = {"job_id": job.pk, "worker": WORKER, "now": timezone.now(), "attempt": 1}
    params["limited"] = "imap_sync_messages"
    statements = {
        "claim": job_sql.CLAIM_SQL_POSTGRESQL,
        "succeed": job_sql.SUCCEED_SQL_POSTGRESQL,
    }
    for name, sql in statements.items():
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}", params | {"result": None})
            plan = "\n".join(line for (line,) in cursor.fetchall())
        assert "jobs_job_pkey" in plan, (name, plan)
        assert "job_status_" not in plan and "Seq Scan on jobs_job " not in plan, (name, plan)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the libpq path is PostgreSQL's")
def test_hot_statements_prepare_again_after_the_session_dropped_them(actor):
    account = AccountFactory()
    first, second = services.jobs_create(
        account=account, specs=[JobSpec("noop", {})] * 2, actor=actor
    )
    assert services.job_claim(job_id=first.pk, worker=WORKER) is not None
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")

    assert services.job_claim(job_id=second.pk, worker=WORKER).number == 1
    assert services.job_succeed(job_id=second.pk, attempt=1, result={"ok": 1}) is True


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the libpq path is PostgreSQL's")
def test_a_lost_connection_is_an_operational_error_the_worker_retries(actor):
    import psycopg
    from django.db import OperationalError

    (job,) = services.jobs_create(
        account=AccountFactory(), specs=[JobSpec("noop", {})], actor=actor
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            pass  # until the backend is gone

    with pytest.raises(OperationalError):
        services.job_claim(job_id=job.pk, worker=WORKER)
    connection.close()
    assert Job.objects.get(pk=job.pk).status == S.QUEUED  # nothing happened; a retry claims it
    assert services.job_claim(job_id=job.pk, worker=WORKER).number == 1
