"""Cancel of a running job on real django-q2 clusters (issue 14): the request reaches the worker
with its heartbeat, the handler stops at its next ownership check or at its timeout, and a run
whose worker is killed after the request is resolved by the scheduler's sweeper, not run again.
(The same paths in-process, and the races with success: tests/jobs/test_cancel.py.)"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from core.actors import Actor
from core.errors import InvalidTransition
from core.models import AuditEvent
from jobs import services
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import CANCELLED_CODE, JobStatus
from tests.execution.conftest import Execution
from tests.execution.test_execution import create, transitions

pytestmark = pytest.mark.slow

OPERATOR = Actor.system("ops")
S = JobStatus


def running(execution: Execution, job_id: str) -> Job:
    return execution.wait(
        lambda: Job.objects.filter(pk=job_id, status=S.RUNNING).first(),
        timeout=30,
        what="the job to run",
    )


def resolved(execution: Execution, job_id: str, *, timeout: float = 30) -> Job:
    return execution.wait(
        lambda: Job.objects.filter(pk=job_id, status=S.RESOLVED).first(),
        timeout=timeout,
        what="the job to be resolved",
    )


def assert_cancelled(job: Job, note: str) -> None:
    assert job.resolution["code"] == CANCELLED_CODE
    assert (job.resolution["note"], job.resolution["by"]) == (note, OPERATOR.name)


@pytest.mark.parametrize("broker", ["orm", "redis"], indirect=True)
def test_cancel_stops_a_handler_at_its_next_ownership_check(execution: Execution, account) -> None:
    execution.cluster(workers=1)
    execution.scheduler()
    # Works until a file appears that never does, checking ownership every 20 ms.
    [job_id] = create(
        account, "fault_record", dir=str(execution.runs), until="never", cooperative=True
    )
    running(execution, job_id)

    services.job_cancel(job_id=job_id, actor=OPERATOR, note="provider is down")

    job = resolved(execution, job_id)
    assert_cancelled(job, "provider is down")
    # Within a few heartbeats (0.5 s here) of the request, not at the 60 s timeout.
    assert (job.finished_at - job.cancel_requested_at).total_seconds() < 10
    [attempt] = JobAttempt.objects.filter(job_id=job_id)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "cancelled")
    # The handler itself was stopped by RunCancelled (the recorder names what ended it).
    [end] = [p.name for p in Path(execution.runs).glob(f"{job_id}.*.end")]
    assert end.endswith(".RunCancelled.end")
    assert [command for command, *_ in transitions(job_id)] == [
        "create",
        "claim",
        "cancel",
        "stop",
    ]
    # The run is over: a cancel now loses cleanly with the current status.
    with pytest.raises(InvalidTransition) as excinfo:
        services.job_cancel(job_id=job_id, actor=OPERATOR)
    assert excinfo.value.as_dict()["error"]["current_status"] == S.RESOLVED


def test_cancel_of_a_handler_that_ignores_it_takes_effect_at_its_timeout(
    execution: Execution, account
) -> None:
    execution.cluster(workers=1)
    execution.scheduler()
    [job_id] = create(account, "test_stubborn", seconds=30)
    [after] = create(account, "noop")
    running(execution, job_id)

    services.job_cancel(job_id=job_id, actor=OPERATOR, note="stop")

    job = resolved(execution, job_id)
    assert_cancelled(job, "stop")
    assert job.attempt_count == 1  # a timeout is retryable, but the cancel wins
    [attempt] = JobAttempt.objects.filter(job_id=job_id)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "timeout")
    assert 3_500 <= attempt.duration_ms < 20_000
    stop = AuditEvent.objects.get(job_id=job_id, command="stop")
    assert stop.data["stopped"] == "timeout"
    # The same worker process went on with the next job.
    done = execution.wait(
        lambda: Job.objects.filter(pk=after, status=S.SUCCEEDED).first(),
        timeout=30,
        what="the next job",
    )
    assert done.worker == job.worker


def test_a_killed_worker_with_a_cancel_requested_is_resolved_not_retried(
    execution: Execution, account
) -> None:
    execution.cluster(workers=1)
    execution.scheduler()
    [job_id] = create(account, "test_hang_first", seconds=60)  # attempts remain (3)
    job = running(execution, job_id)
    services.job_cancel(job_id=job_id, actor=OPERATOR, note="stuck")

    os.kill(int(job.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    job = resolved(execution, job_id)
    assert_cancelled(job, "stuck")
    assert job.attempt_count == 1
    [attempt] = JobAttempt.objects.filter(job_id=job_id)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "worker_lost")
    assert transitions(job_id)[-1] == ("stop_lost", S.RUNNING, S.RESOLVED)
    assert not AuditEvent.objects.filter(job_id=job_id, command="reschedule").exists()
