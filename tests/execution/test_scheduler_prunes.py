"""The scheduler process prunes by the retention policy of its environment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit import AuditCommand
from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus
from tests.execution.conftest import Execution

pytestmark = pytest.mark.slow


def test_a_scheduler_round_prunes_one_batch_by_its_policy(execution: Execution, make_job):
    old = timezone.now() - timedelta(days=3)
    expired = [make_job(status=JobStatus.SUCCEEDED) for _ in range(5)]
    running = make_job(status=JobStatus.RUNNING, heartbeat_at=timezone.now() + timedelta(hours=1))
    young = make_job(status=JobStatus.SUCCEEDED)
    Job.objects.filter(pk__in=[job.pk for job in [*expired, running]]).update(finished_at=old)

    scheduler = execution.start(
        "scheduler",
        "jobs_scheduler",
        "--once",
        JOBS_RETAIN_SUCCEEDED_DAYS="2",
        JOBS_PRUNE_BATCH="3",
    )
    assert scheduler.popen.wait(60) == 0, execution.logs()

    # One round is one batch: three of the five, never the running job nor the young one.
    left = set(Job.objects.values_list("pk", flat=True))
    assert len(left & {job.pk for job in expired}) == 2
    assert {running.pk, young.pk} <= left
    (event,) = AuditEvent.objects.filter(command=AuditCommand.PRUNE)
    assert event.actor == "system:pruner"
    assert event.data["removed"]["succeeded"] == 3
    assert event.data["complete"] is False
