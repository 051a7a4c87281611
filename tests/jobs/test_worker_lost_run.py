"""A run the sweeper takes away stops at its next ownership check instead of overlapping with
the job's next run, and records nothing over the sweeper's verdict."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from core.models import AuditEvent
from jobs import services
from jobs.execution import worker
from jobs.execution.actions.registry import ActionContext, action
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import JobStatus

pytestmark = pytest.mark.django_db(transaction=True)


@action("test_wait_until_lost", max_attempts=3, timeout=30)
def wait_until_lost(ctx: ActionContext) -> dict:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ctx.ensure_owned()
        time.sleep(0.02)
    return {"finished": True}


def test_lost_run_stops_and_keeps_the_sweepers_verdict(account, actor, settings, monkeypatch):
    settings.JOBS_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(worker, "_heartbeat_thread", None)  # a heartbeat at the new interval
    job = services.job_create(account=account, action="test_wait_until_lost", actor=actor)

    def sweep_when_running():
        try:
            deadline = time.monotonic() + 10
            while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.01)
            # As if the worker had stopped heart-beating long ago.
            assert services.jobs_sweep_lost(now=timezone.now() + timedelta(hours=1)) == [job.pk]
        finally:
            connections.close_all()

    sweeper = threading.Thread(target=sweep_when_running)
    sweeper.start()
    started = time.monotonic()
    outcome = worker.run_job(job.pk)
    sweeper.join(10)

    assert outcome == "lost"
    assert time.monotonic() - started < 10  # stopped, not run to the end
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED  # rescheduled by the sweeper, not overwritten
    assert job.last_error_code == "worker_lost"
    [attempt] = JobAttempt.objects.filter(job=job)
    assert attempt.outcome == AttemptOutcome.WORKER_LOST
    assert not AuditEvent.objects.filter(job_id=job.pk, command__in=["succeed", "fail"]).exists()


def test_run_cut_off_from_the_database_is_given_up_before_the_grace_ends(
    account, actor, settings, monkeypatch
):
    """A worker whose heartbeats cannot reach the database cannot learn that the sweeper
    declared its run lost; it gives the run up itself before the grace is over, so a handler
    checking ownership stops before the job's next run may start (tests/execution/
    test_faults.py::test_worker_cut_off_from_postgres_longer_than_the_grace, with real
    processes)."""
    settings.JOBS_HEARTBEAT_SECONDS = 0.05
    settings.JOBS_STALL_GRACE_SECONDS = 1.0
    monkeypatch.setattr(worker, "_heartbeat_thread", None)  # a heartbeat at the new interval

    def cut_off(**run):
        raise OperationalError("connection to server was lost")

    monkeypatch.setattr(services, "job_heartbeat", cut_off)
    job = services.job_create(account=account, action="test_wait_until_lost", actor=actor)
    started = time.monotonic()

    outcome = worker.run_job(job.pk)

    given_up_after = time.monotonic() - started
    assert outcome == "lost"
    assert 0.5 <= given_up_after < 1.0, given_up_after  # within the grace, less one interval
    job.refresh_from_db()
    # Nothing recorded: the sweeper, which can reach the database, declares the run lost.
    assert (job.status, job.attempt_count) == (JobStatus.RUNNING, 1)
    [attempt] = JobAttempt.objects.filter(job=job)
    assert attempt.outcome == AttemptOutcome.RUNNING
