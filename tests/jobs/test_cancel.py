"""Cancel of a running job: the request, the worker stopping the run (at an ownership check, at
its timeout, by a failure), the sweeper closing a lost run that had one, and a cancel that
loses the race to the run's end. The worker runs in this process here (fast heartbeats);
tests/execution/test_cancel_cluster.py does the same on real django-q2 clusters."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from core.actors import Actor
from core.errors import InvalidTransition, ValidationFailed
from core.models import AuditEvent
from jobs import services
from jobs.execution import worker
from jobs.execution.actions.registry import ActionContext, JobError, action
from jobs.models import AttemptOutcome, Job, JobAttempt
from jobs.states import CANCELLED_CODE, JobStatus
from tests.jobs.test_concurrency import race_held

pytestmark = pytest.mark.django_db(transaction=True)

OPERATOR = Actor.system("ops")
S = JobStatus


@action("test_cancel_cooperative", max_attempts=3, timeout=30)
def cooperative(ctx: ActionContext) -> dict:
    """Works in small steps for up to 15 s, checking ownership between them."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ctx.ensure_owned()
        time.sleep(0.02)
    return {"finished": True}


@action("test_cancel_stubborn", max_attempts=3, timeout=1)
def stubborn(ctx: ActionContext) -> dict:
    """Never checks ownership: only its 1 s timeout stops it."""
    time.sleep(15)
    return {"finished": True}


@action("test_cancel_swallows", max_attempts=3, timeout=30)
def swallows(ctx: ActionContext) -> dict:
    """Checks ownership inside `except Exception`, as careless handlers do: RunCancelled is
    a BaseException and still stops it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            ctx.ensure_owned()
        time.sleep(0.02)
    return {"finished": True}


def commands(job_id: str) -> list[tuple[str, str, str, str]]:
    return list(
        AuditEvent.objects.filter(job_id=job_id)
        .order_by("id")
        .values_list("command", "actor", "from_status", "to_status")
    )


def cancel_when_running(job_id: str, note: str = "provider is down") -> threading.Thread:
    """Cancel the job from another connection as soon as it runs (as an operator would)."""

    def run() -> None:
        try:
            deadline = time.monotonic() + 10
            while Job.objects.get(pk=job_id).status != S.RUNNING:
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.01)
            services.job_cancel(job_id=job_id, actor=OPERATOR, note=note)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.fixture
def fast_heartbeat(settings, monkeypatch):
    settings.JOBS_HEARTBEAT_SECONDS = 0.05
    monkeypatch.setattr(worker, "_heartbeat_thread", None)  # a heartbeat at the new interval


def assert_resolved_as_cancelled(job: Job, *, note: str = "provider is down") -> None:
    job.refresh_from_db()
    assert job.status == S.RESOLVED
    assert job.resolution["code"] == CANCELLED_CODE
    assert (job.resolution["note"], job.resolution["by"]) == (note, OPERATOR.name)
    assert job.finished_at is not None and job.heartbeat_at is None
    # A cancel is no failure of the job: its last error stays as it was.
    assert job.last_error_code == ""


def test_cooperative_handler_stops_at_its_next_ownership_check(account, actor, fast_heartbeat):
    job = services.job_create(account=account, action="test_cancel_cooperative", actor=actor)
    canceller = cancel_when_running(job.pk)
    started = time.monotonic()

    outcome = worker.run_job(job.pk)

    canceller.join(10)
    assert outcome == "cancelled"
    assert time.monotonic() - started < 10  # stopped, not run to the end (15 s)
    assert_resolved_as_cancelled(job)
    [attempt] = JobAttempt.objects.filter(job=job)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "cancelled")
    assert attempt.finished_at is not None
    assert commands(job.pk) == [
        ("create", actor.name, "", "queued"),
        ("claim", "system:worker", "queued", "running"),
        ("cancel", OPERATOR.name, "running", "running"),
        ("stop", "system:worker", "running", "resolved"),
    ]
    stop = AuditEvent.objects.get(job_id=job.pk, command="stop")
    assert stop.reason == "provider is down"
    assert stop.data["stopped"] == "ownership_check"
    assert stop.data["requested_by"] == OPERATOR.name


def test_handler_swallowing_exceptions_is_still_stopped(account, actor, fast_heartbeat):
    job = services.job_create(account=account, action="test_cancel_swallows", actor=actor)
    canceller = cancel_when_running(job.pk)
    assert worker.run_job(job.pk) == "cancelled"
    canceller.join(10)
    assert_resolved_as_cancelled(job)


def test_handler_ignoring_ownership_is_stopped_at_its_timeout(account, actor, fast_heartbeat):
    job = services.job_create(account=account, action="test_cancel_stubborn", actor=actor)
    canceller = cancel_when_running(job.pk)
    started = time.monotonic()

    outcome = worker.run_job(job.pk)

    canceller.join(10)
    assert outcome == "cancelled"
    assert 0.9 <= time.monotonic() - started < 10
    assert_resolved_as_cancelled(job)
    # Attempts remained and a timeout is retryable: the cancel wins, the job never runs again.
    assert job.attempt_count == 1
    [attempt] = JobAttempt.objects.filter(job=job)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "timeout")
    stop = AuditEvent.objects.get(job_id=job.pk, command="stop")
    assert stop.data["stopped"] == "timeout"


def claimed(make_job, **fields) -> tuple[Job, int]:
    job = make_job(status=S.QUEUED, **fields)
    run = services.job_claim(job_id=job.pk, worker="test-worker")
    assert run is not None
    return job, run.number


def test_heartbeat_tells_the_worker_of_the_cancel_and_keeps_the_run_alive(make_job):
    job, number = claimed(make_job)
    assert services.job_heartbeat(job_id=job.pk, attempt=number) is services.Beat.OWNED
    services.job_cancel(job_id=job.pk, actor=OPERATOR)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=None)
    assert services.job_heartbeat(job_id=job.pk, attempt=number) is services.Beat.CANCEL_REQUESTED
    # A cancelled run still beats until it stops: the sweeper must not take it for lost.
    assert Job.objects.get(pk=job.pk).heartbeat_at is not None
    assert services.job_heartbeat(job_id=job.pk, attempt=number + 1) is services.Beat.LOST


def test_a_failure_after_the_cancel_resolves_instead_of_retrying(make_job):
    job, number = claimed(make_job, max_attempts=5)
    services.job_cancel(job_id=job.pk, actor=OPERATOR, note="provider is down")
    services.job_fail(
        job_id=job.pk, attempt=number, code="provider_timeout", detail="slow", retryable=True
    )
    assert_resolved_as_cancelled(job)
    attempt = JobAttempt.objects.get(job=job, number=number)
    assert (attempt.outcome, attempt.error_code, attempt.error_detail) == (
        AttemptOutcome.CANCELLED,
        "provider_timeout",
        "slow",
    )
    assert AuditEvent.objects.get(job_id=job.pk, command="stop").data["stopped"] == "error"


def test_cancel_of_a_job_that_is_not_running_is_a_409(make_job):
    for status in set(S) - {S.RUNNING}:
        job = make_job(status=status)
        with pytest.raises(InvalidTransition) as excinfo:
            services.job_cancel(job_id=job.pk, actor=OPERATOR)
        assert excinfo.value.status_code == 409
        assert excinfo.value.as_dict()["error"]["current_status"] == status
        job.refresh_from_db()
        assert job.cancel_requested_at is None
        assert not AuditEvent.objects.filter(job_id=job.pk, command="cancel").exists()


def test_a_second_cancel_changes_nothing(make_job):
    job, _ = claimed(make_job)
    first = services.job_cancel(job_id=job.pk, actor=OPERATOR, note="first")
    again = services.job_cancel(job_id=job.pk, actor=Actor.system("other"), note="second")
    assert (again.cancel_requested_at, again.cancel_note) == (first.cancel_requested_at, "first")
    assert AuditEvent.objects.filter(job_id=job.pk, command="cancel").count() == 1


def test_the_note_is_checked(make_job):
    job, _ = claimed(make_job)
    with pytest.raises(ValidationFailed) as excinfo:
        services.job_cancel(job_id=job.pk, actor=OPERATOR, note="x" * 10_000)
    assert "note" in excinfo.value.fields
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_cancel_loses_the_race_to_success_with_the_current_status(make_job):
    """The run's success holds the row; the cancel waits on it, then finds the job finished."""
    job, number = claimed(make_job)

    def succeed(job_id):
        return services.job_succeed(job_id=job_id, attempt=number, result={"ok": True})

    def cancel(job_id):
        return services.job_cancel(job_id=job_id, actor=OPERATOR, note="too late")

    won, lost = race_held(succeed, cancel, job.pk)

    assert won is True
    assert isinstance(lost, InvalidTransition)
    assert lost.status_code == 409
    assert lost.as_dict()["error"]["current_status"] == S.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.cancel_requested_at) == (S.SUCCEEDED, None)
    assert [c for c, *_ in commands(job.pk)] == ["claim", "succeed"]


def test_success_the_worker_reports_after_the_request_stands(make_job):
    """The request is recorded first, but the handler finished before any ownership check saw
    it: the job's work is done, so it ends succeeded; the request stays, audited."""
    job, number = claimed(make_job)

    def cancel(job_id):
        return services.job_cancel(job_id=job_id, actor=OPERATOR, note="stop")

    def succeed(job_id):
        return services.job_succeed(job_id=job_id, attempt=number, result={"ok": True})

    requested, succeeded = race_held(cancel, succeed, job.pk)

    assert succeeded is True
    job.refresh_from_db()
    assert (job.status, job.result, job.resolution) == (S.SUCCEEDED, {"ok": True}, None)
    assert job.cancel_requested_at == requested.cancel_requested_at
    assert JobAttempt.objects.get(job=job).outcome == AttemptOutcome.SUCCEEDED
    assert [c for c, *_ in commands(job.pk)] == ["claim", "cancel", "succeed"]
    # Triggered again, it runs afresh: the old request does not stop the new run.
    services.job_trigger(job_id=job.pk, actor=OPERATOR)
    job.refresh_from_db()
    assert (job.status, job.cancel_requested_at, job.cancel_note) == (S.QUEUED, None, "")


def test_sweeper_resolves_a_lost_run_that_had_a_cancel_requested(make_job):
    job, number = claimed(make_job, max_attempts=5)
    services.job_cancel(job_id=job.pk, actor=OPERATOR, note="provider is down")

    swept = services.jobs_sweep_lost(now=timezone.now() + timedelta(hours=1))

    assert swept == [job.pk]
    assert_resolved_as_cancelled(job)
    assert job.attempt_count == number  # not rescheduled, though attempts remain
    attempt = JobAttempt.objects.get(job=job, number=number)
    assert (attempt.outcome, attempt.error_code) == (AttemptOutcome.CANCELLED, "worker_lost")
    assert commands(job.pk)[-1] == ("stop_lost", "system:sweeper", "running", "resolved")
    # The worker that lost the run records nothing over the sweeper's verdict.
    assert services.job_stop(job_id=job.pk, attempt=number) is None


def test_retry_after_a_cancel_runs_the_job_afresh(make_job):
    job, number = claimed(make_job, max_attempts=5)
    services.job_cancel(job_id=job.pk, actor=OPERATOR)
    services.job_stop(job_id=job.pk, attempt=number)
    services.job_trigger(job_id=job.pk, actor=OPERATOR)
    run = services.job_claim(job_id=job.pk, worker="test-worker")
    assert services.job_heartbeat(job_id=job.pk, attempt=run.number) is services.Beat.OWNED
    assert services.job_succeed(job_id=job.pk, attempt=run.number, result=None)


def test_a_handler_error_is_not_mistaken_for_a_cancel(account, actor, fast_heartbeat):
    """JobError with the code `cancelled` from a handler nobody cancelled is a plain failure."""

    @action("test_cancel_fake", max_attempts=1, timeout=30)
    def fake(ctx: ActionContext) -> None:
        raise JobError("cancelled", "the provider cancelled the export", retryable=False)

    job = services.job_create(account=account, action="test_cancel_fake", actor=actor)
    assert worker.run_job(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.status, job.last_error_code) == (S.FAILED, "cancelled")
