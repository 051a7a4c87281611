"""Execution through real django-q2 clusters on a real database (issue 4).

Each test starts `manage.py qcluster` and `manage.py jobs_scheduler` as real processes (see
conftest.py) and watches the job table, the source of truth."""

from __future__ import annotations

import itertools
import os
import re
import signal
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.execution.actions.registry import JobSpec, policy_for
from jobs.execution.broker import enqueue
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import TERMINAL, JobStatus
from tests.execution.conftest import Execution
from tests.factories import JobFactory

pytestmark = pytest.mark.slow

ACTOR = Actor.system("test")
S = JobStatus


def create(account, action: str, count: int = 1, **payload) -> list[str]:
    specs = [JobSpec(action, dict(payload)) for _ in range(count)]
    return [job.pk for job in services.jobs_create(account=account, specs=specs, actor=ACTOR)]


def status_counts(ids: list[str]) -> Counter:
    return Counter(Job.objects.filter(pk__in=ids).values_list("status", flat=True))


def all_terminal(ids: list[str]) -> bool:
    counts = status_counts(ids)
    return sum(n for status, n in counts.items() if status in TERMINAL) == len(ids)


def transitions(job_id: str) -> list[tuple[str, str, str]]:
    return list(
        AuditEvent.objects.filter(job_id=job_id)
        .order_by("id")
        .values_list("command", "from_status", "to_status")
    )


def runs_per_job(execution: Execution) -> Counter:
    log = execution.runs / "runs.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[0] for line in lines)


def overlaps(execution: Execution) -> list[str]:
    log = execution.runs / "overlaps.log"
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_jobs_flow_through_a_real_cluster(execution: Execution, account) -> None:
    execution.cluster()
    execution.scheduler()
    [ok] = create(account, "noop")
    run_at = timezone.now() + timedelta(seconds=2)
    delayed = services.job_create(account=account, action="noop", actor=ACTOR, run_at=run_at).pk
    [crash] = create(account, "test_crash")
    # A message for an action this deployment does not know (registered elsewhere, or removed).
    unknown = JobFactory(account=account, action="no_such_action", status=S.QUEUED).pk
    enqueue([unknown])
    ids = [ok, delayed, crash, unknown]

    execution.wait(lambda: all_terminal(ids), timeout=60, what="every job to finish")

    job = Job.objects.get(pk=ok)
    assert job.status == S.SUCCEEDED
    assert job.result == {"ok": True}
    assert transitions(ok) == [
        ("create", "", S.QUEUED),
        ("claim", S.QUEUED, S.RUNNING),
        ("succeed", S.RUNNING, S.SUCCEEDED),
    ]
    [attempt] = JobAttempt.objects.filter(job_id=ok)
    assert attempt.outcome == AttemptOutcome.SUCCEEDED
    assert re.fullmatch(r".+:\d+", attempt.worker)
    assert attempt.worker == job.worker
    assert attempt.finished_at is not None
    assert attempt.duration_ms is not None

    # The dispatcher moved the delayed job to the broker within 2 s of its run_at.
    assert transitions(delayed) == [
        ("create", "", S.SCHEDULED),
        ("dispatch", S.SCHEDULED, S.QUEUED),
        ("claim", S.QUEUED, S.RUNNING),
        ("succeed", S.RUNNING, S.SUCCEEDED),
    ]
    started = JobAttempt.objects.get(job_id=delayed).started_at
    assert timedelta(0) <= started - run_at < timedelta(seconds=2), started - run_at

    job = Job.objects.get(pk=crash)
    assert (job.status, job.last_error_code, job.attempt_count) == (
        S.FAILED,
        "internal_error",
        1,
    )
    assert "RuntimeError: boom in the handler" in JobAttempt.objects.get(job_id=crash).traceback

    job = Job.objects.get(pk=unknown)
    assert (job.status, job.last_error_code, job.attempt_count) == (
        S.FAILED,
        "unknown_action",
        1,
    )


def test_failing_action_retries_with_backoff_until_its_budget_is_spent(
    execution: Execution, account
) -> None:
    execution.cluster()
    execution.scheduler()
    [job_id] = create(account, "test_flaky")

    execution.wait(lambda: all_terminal([job_id]), timeout=60, what="the flaky job to fail")

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempt_count, job.last_error_code) == (
        S.FAILED,
        3,
        "provider_unavailable",
    )
    attempts = list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))
    assert [a.outcome for a in attempts] == [
        AttemptOutcome.RETRY_SCHEDULED,
        AttemptOutcome.RETRY_SCHEDULED,
        AttemptOutcome.FAILED,
    ]
    assert [a.error_detail for a in attempts] == [f"attempt {n}: try later" for n in (1, 2, 3)]
    policy = policy_for("test_flaky")
    for previous, following in itertools.pairwise(attempts):
        # The backoff before attempt n+1 is base * factor^(n-1), less at most the jitter.
        least = (
            policy.backoff_base
            * policy.backoff_factor ** (previous.number - 1)
            * (1 - policy.jitter)
        )
        waited = (following.started_at - previous.finished_at).total_seconds()
        assert waited >= least, (previous.number, waited, least)
    assert [command for command, *_ in transitions(job_id)].count("dispatch") == 2


def test_sigkill_of_the_worker_mid_job_reschedules_and_succeeds(
    execution: Execution, account
) -> None:
    execution.cluster()
    execution.scheduler()
    [job_id] = create(account, "test_hang_first", seconds=60)
    job = execution.wait(
        lambda: Job.objects.filter(pk=job_id, status=S.RUNNING).first(),
        timeout=30,
        what="the job to run",
    )
    pid = int(job.worker.rsplit(":", 1)[1])

    os.kill(pid, signal.SIGKILL)

    execution.wait(lambda: all_terminal([job_id]), timeout=60, what="the job to recover")
    job = Job.objects.get(pk=job_id)
    assert job.status == S.SUCCEEDED
    attempts = list(JobAttempt.objects.filter(job_id=job_id).order_by("number"))
    assert [(a.outcome, a.error_code) for a in attempts] == [
        (AttemptOutcome.WORKER_LOST, "worker_lost"),
        (AttemptOutcome.SUCCEEDED, ""),
    ]
    assert attempts[0].worker == f"{attempts[0].worker.rsplit(':', 1)[0]}:{pid}"
    assert attempts[1].worker != attempts[0].worker  # django-q2 replaced the killed process
    commands = [(c, f, t) for c, f, t in transitions(job_id)]
    assert ("stall", S.RUNNING, S.STALLED) in commands
    assert ("reschedule", S.STALLED, S.SCHEDULED) in commands


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_killing_the_whole_cluster_loses_no_job(execution: Execution, account) -> None:
    first = execution.cluster()
    execution.scheduler()
    ids = create(account, "test_record", count=40, dir=str(execution.runs), seconds=0.2)
    execution.wait(
        lambda: status_counts(ids)[S.SUCCEEDED] >= 4 and status_counts(ids)[S.RUNNING] >= 1,
        timeout=30,
        what="some jobs done and some running",
    )

    first.kill(signal.SIGKILL)
    in_flight = list(Job.objects.filter(pk__in=ids, status=S.RUNNING).values_list("pk", flat=True))
    assert in_flight
    execution.cluster()

    execution.wait(lambda: all_terminal(ids), timeout=90, what="every job to finish")
    assert status_counts(ids) == Counter({S.SUCCEEDED: len(ids)})
    lost = set(
        JobAttempt.objects.filter(job_id__in=ids, outcome=AttemptOutcome.WORKER_LOST).values_list(
            "job_id", flat=True
        )
    )
    assert lost == set(in_flight)
    assert set(runs_per_job(execution)) == set(ids)


def test_timeout_stops_the_run_and_the_worker_goes_on(execution: Execution, account) -> None:
    execution.cluster(workers=1)
    execution.scheduler()
    [slow] = create(account, "test_slow", seconds=30)
    [after] = create(account, "noop")

    execution.wait(lambda: all_terminal([slow, after]), timeout=40, what="both jobs to finish")

    job = Job.objects.get(pk=slow)
    assert (job.status, job.last_error_code) == (S.FAILED, "timeout")
    attempt = JobAttempt.objects.get(job_id=slow)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.TIMEOUT, "timeout")
    assert 900 <= attempt.duration_ms < 10_000
    # The same worker process ran the next job: the timeout did not cost the process.
    assert Job.objects.get(pk=after).status == S.SUCCEEDED
    assert Job.objects.get(pk=after).worker == job.worker


def test_two_clusters_share_one_database_without_concurrent_double_runs(
    execution: Execution, account
) -> None:
    execution.cluster()
    execution.cluster()
    execution.scheduler()
    ids = create(account, "test_record", count=1000, dir=str(execution.runs))

    execution.wait(lambda: all_terminal(ids), timeout=150, what="1,000 jobs to finish")

    assert status_counts(ids) == Counter({S.SUCCEEDED: 1000})
    runs = runs_per_job(execution)
    assert set(runs) == set(ids), "every job ran at least once"
    assert overlaps(execution) == [], "no job ran twice at the same time"
    duplicates = sum(runs.values()) - len(ids)
    workers = set(Job.objects.filter(pk__in=ids).values_list("worker", flat=True))
    print(
        f"\n1,000 jobs on 2 clusters: {duplicates} duplicate execution(s), {len(workers)} workers"
    )
    # Every execution is an attempt on record: a duplicate run is visible, never silent.
    assert sum(runs.values()) == JobAttempt.objects.filter(job_id__in=ids).count()
    assert len(workers) >= 3, "both clusters took part"


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_a_task_run_by_two_workers_ends_succeeded_with_exact_counts(
    execution: Execution, account
) -> None:
    """Two workers close jobs of one task at the same moments, again and again: the last one
    to commit leaves the task succeeded, and its counters say what its jobs are."""
    from jobs.models import Task
    from jobs.states import TaskStatus

    execution.cluster(workers=2)
    task = services.task_create(
        account=account, kind="noop_batch", params={"count": 400}, actor=ACTOR
    )
    ids = list(task.jobs.values_list("pk", flat=True))

    execution.wait(lambda: all_terminal(ids), timeout=120, what="every job of the task to finish")

    assert status_counts(ids) == Counter({S.SUCCEEDED: 400})
    task = Task.objects.get(pk=task.pk)
    assert (task.status, task.job_counts()) == (TaskStatus.SUCCEEDED, {S.SUCCEEDED: 400})
    workers = set(JobAttempt.objects.filter(job_id__in=ids).values_list("worker", flat=True))
    assert len(workers) == 2, workers  # both workers took part
