"""Every status by every command: allowed ones change the state and write one audit event;
forbidden ones raise the 409 error and change nothing."""

from __future__ import annotations

import pytest
from django.forms.models import model_to_dict

from core.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from core.models import AuditEvent
from jobs import services
from jobs.models import Job
from jobs.states import ALLOWED_FROM, Command, JobStatus

CALLS = {
    Command.RETRY: lambda job, actor: services.job_retry(job_id=job.pk, actor=actor),
    Command.RESOLVE: lambda job, actor: services.job_resolve(
        job_id=job.pk, actor=actor, code="ignored", note="known provider outage"
    ),
    Command.TRIGGER: lambda job, actor: services.job_trigger(job_id=job.pk, actor=actor),
    Command.UPDATE: lambda job, actor: services.job_update(
        job_id=job.pk, actor=actor, changes={"priority": 7}
    ),
    Command.DELETE: lambda job, actor: services.job_delete(job_id=job.pk, actor=actor),
    Command.CANCEL: lambda job, actor: services.job_cancel(
        job_id=job.pk, actor=actor, note="provider is down"
    ),
}

EXPECTED_STATUS = {
    Command.RETRY: JobStatus.QUEUED,
    Command.RESOLVE: JobStatus.RESOLVED,
    Command.TRIGGER: JobStatus.QUEUED,
}

MATRIX = [(status, command) for status in JobStatus for command in Command]


def test_table_covers_every_command():
    assert set(ALLOWED_FROM) == set(Command)
    assert set(CALLS) == set(Command)


@pytest.mark.parametrize(("status", "command"), MATRIX, ids=[f"{s}-{c}" for s, c in MATRIX])
def test_command_from_status(make_job, actor, status, command, django_capture_on_commit_callbacks):
    job = make_job(status=status)
    before = model_to_dict(Job.objects.get(pk=job.pk))
    audit_before = AuditEvent.objects.count()

    if status in ALLOWED_FROM[command]:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            CALLS[command](job, actor)
        events = AuditEvent.objects.filter(job_id=job.pk, command=command.value)
        assert events.count() == 1
        assert AuditEvent.objects.count() == audit_before + 1
        event = events.get()
        assert event.from_status == status
        assert event.actor == actor.name
        if command == Command.DELETE:
            assert not Job.objects.filter(pk=job.pk).exists()
            return
        job.refresh_from_db()
        if command in EXPECTED_STATUS:
            assert job.status == EXPECTED_STATUS[command]
            assert event.to_status == job.status
        if command == Command.UPDATE:
            assert job.priority == 7
            assert job.status == status
        if command == Command.CANCEL:
            # Only requested: the worker running the job stops it (tests/jobs/test_cancel.py).
            assert job.status == status == event.to_status
            assert (job.cancel_requested_by, job.cancel_note) == (actor.name, "provider is down")
            assert job.cancel_requested_at is not None
        # Only commands that queue the job hand it to the broker, and only after commit.
        assert len(callbacks) == (
            1 if job.status == JobStatus.QUEUED and command != Command.UPDATE else 0
        )
    else:
        with pytest.raises(InvalidTransition) as excinfo:
            CALLS[command](job, actor)
        assert excinfo.value.status_code == 409
        assert excinfo.value.as_dict()["error"]["current_status"] == status
        assert model_to_dict(Job.objects.get(pk=job.pk)) == before
        assert AuditEvent.objects.count() == audit_before


def test_retry_grants_one_more_attempt_when_budget_spent(make_job, actor):
    job = make_job(status=JobStatus.FAILED, attempt_count=3, max_attempts=3)
    services.job_retry(job_id=job.pk, actor=actor, note="provider fixed")
    job.refresh_from_db()
    assert job.max_attempts == 4
    assert job.status == JobStatus.QUEUED
    assert AuditEvent.objects.get(job_id=job.pk, command="retry").reason == "provider fixed"


def test_retry_keeps_budget_when_attempts_remain(make_job, actor):
    job = make_job(status=JobStatus.STALLED, attempt_count=1, max_attempts=3)
    services.job_retry(job_id=job.pk, actor=actor)
    job.refresh_from_db()
    assert job.max_attempts == 3


def test_trigger_refused_while_sibling_runs_unless_forced(make_job, actor):
    make_job(status=JobStatus.RUNNING, action="noop")
    job = make_job(status=JobStatus.SCHEDULED, action="noop")
    with pytest.raises(Conflict) as excinfo:
        services.job_trigger(job_id=job.pk, actor=actor)
    assert excinfo.value.status_code == 409
    assert excinfo.value.code == "sibling_running"
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED
    services.job_trigger(job_id=job.pk, actor=actor, force=True)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


def test_trigger_ignores_run_at_and_pause(make_job, account, actor):
    account.paused_at = account.created_at
    account.save()
    job = make_job(status=JobStatus.SCHEDULED)
    services.job_trigger(job_id=job.pk, actor=actor)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.run_at <= job.updated_at


def test_resolve_records_resolution(make_job, actor):
    job = make_job(status=JobStatus.FAILED)
    services.job_resolve(job_id=job.pk, actor=actor, code="fixed", note="patched upstream")
    job.refresh_from_db()
    assert job.resolution["code"] == "fixed"
    assert job.resolution["note"] == "patched upstream"
    assert job.resolution["by"] == actor.name
    assert job.finished_at is not None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"code": "", "note": "x"}, "code"),
        ({"code": "Not A Code!", "note": "x"}, "code"),
        ({"code": "ignored", "note": "  "}, "note"),
    ],
)
def test_resolve_rejects_bad_input(make_job, actor, kwargs, field):
    job = make_job(status=JobStatus.FAILED)
    with pytest.raises(ValidationFailed) as excinfo:
        services.job_resolve(job_id=job.pk, actor=actor, **kwargs)
    assert field in excinfo.value.fields
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": "succeeded"}, "status"),
        ({"attempt_count": 0}, "attempt_count"),
        ({"priority": "high"}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"payload": [1, 2]}, "payload"),
        ({"labels": {"bad key": "x"}}, "labels"),
        ({}, "non_field_errors"),
    ],
)
def test_update_rejects_bad_input_and_changes_nothing(make_job, actor, changes, field):
    job = make_job(status=JobStatus.FAILED)
    before = model_to_dict(job)
    with pytest.raises(ValidationFailed) as excinfo:
        services.job_update(job_id=job.pk, actor=actor, changes=changes)
    assert excinfo.value.status_code == 400
    assert field in excinfo.value.fields
    assert model_to_dict(Job.objects.get(pk=job.pk)) == before
    assert not AuditEvent.objects.filter(job_id=job.pk).exists()


def test_update_moving_a_queued_job_into_the_future_schedules_it(make_job, actor):
    job = make_job(status=JobStatus.QUEUED)
    services.job_update(
        job_id=job.pk, actor=actor, changes={"run_at": "2099-01-01T00:00:00Z", "labels": {"a": "b"}}
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SCHEDULED
    assert job.labels == {"a": "b"}
    event = AuditEvent.objects.get(job_id=job.pk, command="update")
    assert event.data["changes"]["labels"] == {"from": {}, "to": {"a": "b"}}


def test_unknown_job_is_not_found(db, actor):
    with pytest.raises(NotFound):
        services.job_retry(job_id="job_01ARZ3NDEKTSV4RRFFQ69G5FAV", actor=actor)


def test_delete_keeps_audit_trail(make_job, actor):
    job = make_job(status=JobStatus.SUCCEEDED)
    services.job_delete(job_id=job.pk, actor=actor)
    events = AuditEvent.objects.filter(job_id=job.pk)
    assert [e.command for e in events] == ["delete"]
    assert events.get().data["action"] == job.action
