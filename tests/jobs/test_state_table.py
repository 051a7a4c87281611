"""jobs.states is the one table of statuses and transitions: the services, the raw SQL and the
partial indexes must say what it says."""

from __future__ import annotations

import pytest
from django.db.models import Q
from django.utils import timezone

from core.actors import Actor
from core.audit import AuditCommand
from core.models import AuditEvent
from jobs import services, sql
from jobs.models import Job
from jobs.states import (
    NEEDS_OPERATOR_Q,
    QUEUED_Q,
    RUNNING_Q,
    SYSTEM_TRANSITIONS,
    TARGET_OF,
    Command,
    JobStatus,
)
from tests.poison import corrupt, unreadable_timestamps


def test_every_operator_command_is_an_audit_command():
    assert {command.audit_command for command in Command} <= set(AuditCommand)
    assert {command.value for command in Command} == set(TARGET_OF)


def test_partial_indexes_are_built_on_the_tables_conditions():
    conditions = {index.name: index.condition for index in Job._meta.indexes if index.condition}
    assert conditions["job_status_heartbeat"] == RUNNING_Q
    assert conditions["job_status_enqueued"] == QUEUED_Q
    assert conditions["job_triage"] == NEEDS_OPERATOR_Q
    assert conditions["job_failing_error_at"] == NEEDS_OPERATOR_Q
    status_conditions = {
        name for name, condition in conditions.items() if "status" in str(condition)
    }
    assert status_conditions == {
        "job_status_heartbeat",
        "job_status_enqueued",
        "job_triage",
        "job_failing_error_at",
    }


def _literal(status: str) -> str:
    return f"'{status}'"


@pytest.mark.parametrize(
    ("statement", "command"),
    [
        (sql.CLAIM_SQL_POSTGRESQL, AuditCommand.CLAIM),
        (sql.CLAIM_UPDATE, AuditCommand.CLAIM),
        (sql.SUCCEED_SQL_POSTGRESQL, AuditCommand.SUCCEED),
        (sql.SUCCEED_UPDATE, AuditCommand.SUCCEED),
    ],
)
def test_worker_statements_move_the_statuses_the_table_declares(statement, command):
    transition = SYSTEM_TRANSITIONS[command]
    (source,) = transition.sources
    (target,) = transition.targets
    assert f"SET status = {_literal(target)}" in statement
    assert _literal(source) in statement.split("WHERE", 1)[1]
    if "INSERT INTO" in statement and "jobs_auditevent" in statement.replace('"', ""):
        assert _literal(command) in statement
        assert _literal(transition.actor.name) in statement


def test_the_loose_scan_reads_the_triage_indexs_statuses():
    for status in (JobStatus.FAILED, JobStatus.STALLED):
        assert _literal(status) in sql.FAILING_ERROR_CODES
    assert _literal(JobStatus.SUCCEEDED) not in sql.FAILING_ERROR_CODES


def test_system_services_audit_only_the_transitions_the_table_declares(
    make_job, django_capture_on_commit_callbacks
):
    """Drive every system transition for real and check each audit event it wrote against
    SYSTEM_TRANSITIONS: command, actor, from and to."""
    long_ago = timezone.now() - timezone.timedelta(days=1)
    due = make_job(status=JobStatus.SCHEDULED, run_at=long_ago, in_status__keep_run_at=True)
    lost_with_attempts = make_job(status=JobStatus.RUNNING, heartbeat_at=long_ago, max_attempts=3)
    lost_for_good = make_job(
        status=JobStatus.RUNNING, heartbeat_at=long_ago, attempt_count=3, max_attempts=3
    )
    # A lost run an operator had cancelled is resolved as cancelled, not stalled.
    lost_cancelled = make_job(
        status=JobStatus.RUNNING,
        heartbeat_at=long_ago,
        max_attempts=3,
        cancel_requested_at=long_ago,
        cancel_requested_by="user:ops",
    )
    # A lost run whose row the sweeper cannot read is quarantined instead.
    unreadable = make_job(status=JobStatus.RUNNING, heartbeat_at=long_ago)
    corrupt(unreadable.pk, run_at=unreadable_timestamps()[0])
    with django_capture_on_commit_callbacks(execute=False):
        assert services.jobs_dispatch_due() == [due.pk]
        assert set(services.jobs_sweep_lost()) == {
            lost_with_attempts.pk,
            lost_for_good.pk,
            lost_cancelled.pk,
        }
    worker = "test-worker"
    run = services.job_claim(job_id=due.pk, worker=worker)
    assert run is not None
    assert services.job_succeed(job_id=due.pk, attempt=run.number, result=None)
    retried = make_job(status=JobStatus.QUEUED, max_attempts=3)
    run = services.job_claim(job_id=retried.pk, worker=worker)
    services.job_fail(
        job_id=retried.pk, attempt=run.number, code="provider_timeout", detail="x", retryable=True
    )
    final = make_job(status=JobStatus.QUEUED, max_attempts=1)
    run = services.job_claim(job_id=final.pk, worker=worker)
    services.job_fail(
        job_id=final.pk,
        attempt=run.number,
        code="provider_auth_failed",
        detail="x",
        retryable=False,
    )
    # A run its worker stops after a cancel (at an ownership check, and at its timeout).
    for timed_out in (False, True):
        cancelled = make_job(status=JobStatus.QUEUED, max_attempts=3)
        run = services.job_claim(job_id=cancelled.pk, worker=worker)
        services.job_cancel(job_id=cancelled.pk, actor=Actor.system("ops"), note="stop it")
        if timed_out:
            services.job_fail(
                job_id=cancelled.pk,
                attempt=run.number,
                code="timeout",
                detail="x",
                retryable=True,
                timed_out=True,
            )
        else:
            services.job_stop(job_id=cancelled.pk, attempt=run.number)
        assert Job.objects.get(pk=cancelled.pk).status == JobStatus.RESOLVED
    # A concurrency limit (imap_sync_messages: one per account) holds a job, and a release
    # queues it once the slot is free.
    syncing = make_job(status=JobStatus.RUNNING, action="imap_sync_messages")
    waiting = make_job(status=JobStatus.QUEUED, action="imap_sync_messages")
    assert services.job_claim(job_id=waiting.pk, worker=worker) is None
    Job.objects.filter(pk=syncing.pk).update(status=JobStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=False):
        assert services.jobs_release_waiting(
            account_id=waiting.account_id, action="imap_sync_messages"
        ) == [waiting.pk]

    events = AuditEvent.objects.filter(Q(command__in=list(SYSTEM_TRANSITIONS)))
    seen = set()
    for event in events:
        transition = SYSTEM_TRANSITIONS[AuditCommand(event.command)]
        assert event.from_status in transition.sources, event
        assert event.to_status in transition.targets, event
        assert event.actor == transition.actor.name, event
        seen.add((event.command, event.to_status))
    assert Job.objects.get(pk=unreadable.pk).status == JobStatus.FAILED
    # Every declared (command, target) was driven at least once.
    assert seen == {
        (transition.command.value, target.value)
        for transition in SYSTEM_TRANSITIONS.values()
        for target in transition.targets
    }
