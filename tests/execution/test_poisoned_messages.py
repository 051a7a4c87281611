"""Poisoned rows and messages against real processes (issue 13, finding 1): a `qcluster` worker
handed messages for jobs it cannot claim or load quarantines them and goes on running other
jobs, in the same process; `jobs_scheduler` recovers another account's lost run next to one
whose row it cannot read."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from core.actors import Actor
from core.models import AuditEvent
from jobs import services
from jobs.execution.actions.registry import JobSpec
from jobs.execution.broker import enqueue
from jobs.models import Job, JobAttempt
from jobs.states import JobStatus
from tests.execution.conftest import Execution, wait_until
from tests.factories import JobFactory
from tests.poison import DEEP_JSON, corrupt, is_postgres, unreadable_timestamps

pytestmark = pytest.mark.slow

S = JobStatus
ACTOR = Actor.system("test")


def create(account, count: int, directory: str) -> list[str]:
    specs = [JobSpec("test_record", {"dir": directory}) for _ in range(count)]
    return [job.pk for job in services.jobs_create(account=account, specs=specs, actor=ACTOR)]


def lost_run(account, **job) -> Job:
    """A running job whose worker stopped heart-beating long ago."""
    long_ago = timezone.now() - timedelta(hours=1)
    job = JobFactory(
        account=account,
        status=S.RUNNING,
        heartbeat_at=long_ago,
        started_at=long_ago,
        attempt_count=1,
        max_attempts=5,
        **job,
    )
    JobAttempt.objects.create(job=job, number=1, worker=job.worker, started_at=long_ago)
    return job


def statuses(ids: list[str]) -> dict[str, tuple[str, str]]:
    return {
        pk: (status, code)
        for pk, status, code in Job.objects.filter(pk__in=ids).values_list(
            "pk", "status", "last_error_code"
        )
    }


def worker_pids(execution: Execution) -> set[str]:
    log = execution.runs / "runs.log"
    return {line.split()[2] for line in log.read_text().splitlines()} if log.exists() else set()


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_a_worker_survives_poisoned_messages_and_keeps_running_jobs(
    execution: Execution, account, other_account
) -> None:
    runs = str(execution.runs)
    cluster = execution.cluster(workers=1)
    scheduler = execution.scheduler()
    first = create(other_account, 3, runs)
    execution.wait(
        lambda: set(statuses(first).values()) == {(S.SUCCEEDED, "")},
        timeout=60,
        what="the first jobs to succeed",
    )
    [pid] = worker_pids(execution)

    # Messages for jobs of one account that no worker can claim or load.
    poison = {"payload": "[]", "payload ": '"x"', "payload  ": "null"}
    if is_postgres():
        poison.update({"payload   ": DEEP_JSON, "attempt_count": "2147483647"})
    poisoned = []
    for column, value in poison.items():
        job = JobFactory(account=account, action="test_record", status=S.QUEUED)
        corrupt(job.pk, **{column.strip(): value})
        poisoned.append(job.pk)
    # A lost run of that account whose row the sweeper cannot read, and one of the other
    # account's that it must recover all the same.
    unreadable = lost_run(account, action="test_record", payload={"dir": runs})
    corrupt(unreadable.pk, run_at=unreadable_timestamps()[0])
    recovered = lost_run(other_account, action="test_record", payload={"dir": runs})
    enqueue(poisoned)
    enqueue(poisoned)  # a duplicate of each: consumed as a no-op
    second = create(other_account, 3, runs)

    quarantined = [*poisoned, unreadable.pk]
    wait_until(
        lambda: (
            set(statuses(quarantined).values()) == {(S.FAILED, "internal_error")}
            and set(statuses(second).values()) == {(S.SUCCEEDED, "")}
            # Recovered by the sweeper, then run again.
            and statuses([recovered.pk]) == {recovered.pk: (S.SUCCEEDED, "worker_lost")}
        ),
        timeout=90,
        what="the poisoned jobs to be quarantined and the others to succeed",
        logs=lambda: f"{statuses([*quarantined, *second, recovered.pk])}\n{execution.logs()}",
    )
    # The one worker process ran everything: it never died on a poisoned message.
    assert worker_pids(execution) == {pid}
    assert cluster.popen.poll() is None and scheduler.popen.poll() is None
    for job_id in quarantined:
        events = AuditEvent.objects.filter(job_id=job_id, command="quarantine")
        assert events.count() == 1, job_id
        assert not JobAttempt.objects.filter(job_id=job_id, outcome="running").exists()
    found_by = dict(
        AuditEvent.objects.filter(command="quarantine").values_list("job_id", "data__found_by")
    )
    assert found_by == {**dict.fromkeys(poisoned, "system:worker"), unreadable.pk: "system:sweeper"}
    # Nothing was ever handed to a handler for them.
    log = (execution.runs / "runs.log").read_text()
    assert not any(job_id in log for job_id in quarantined)
    logs = execution.logs()
    for job_id in quarantined:
        assert f"quarantined job {job_id}" in logs, job_id


def test_a_scheduler_round_ends_despite_a_row_it_cannot_read(
    execution: Execution, account, other_account
) -> None:
    """`jobs_scheduler --once` on a database holding an unreadable lost run: the round
    completes (before, it failed and started again forever) and recovers the other one."""
    unreadable = lost_run(account)
    corrupt(unreadable.pk, run_at=unreadable_timestamps()[0])
    recovered = lost_run(other_account)
    scheduler = execution.start("scheduler", "jobs_scheduler", "--once")
    try:
        assert scheduler.popen.wait(60) == 0, execution.logs()
    except subprocess.TimeoutExpired:
        pytest.fail(f"the round never ended\n{execution.logs()}")
    assert statuses([unreadable.pk, recovered.pk]) == {
        unreadable.pk: (S.FAILED, "internal_error"),
        recovered.pk: (S.SCHEDULED, "worker_lost"),
    }
    assert f"quarantined job {unreadable.pk}" in execution.logs()
