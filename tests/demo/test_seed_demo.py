from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management import call_command

from core.models import AuditEvent
from jobs.models import Job, JobAttempt
from jobs.states import JobStatus


def test_demo_data_has_every_status_with_attempts_and_audit(db):
    call_command("seed_demo")
    statuses = set(Job.objects.values_list("status", flat=True))
    assert statuses == {status.value for status in JobStatus}
    failed = Job.objects.filter(status=JobStatus.FAILED)
    assert failed.exclude(last_error_code="").exists()
    assert JobAttempt.objects.filter(job__in=failed).exists()
    assert AuditEvent.objects.filter(command="resolve").exists()
    users = get_user_model().objects
    assert users.get(username="operator").is_superuser
    viewer = users.get(username="viewer")
    assert viewer.has_perm("jobs.view_job") and not viewer.has_perm("jobs.retry_job")
    # Loading again does not duplicate the data.
    count = Job.objects.count()
    call_command("seed_demo")
    assert Job.objects.count() == count


def test_the_start_up_output_explains_the_seeded_lost_runs(db, settings):
    from demo.management.commands.seed_demo import GONE_WORKER, seeded_lost_runs_note
    from jobs import services

    assert seeded_lost_runs_note() == ""  # nothing seeded, nothing to explain
    call_command("seed_demo")
    seeded = Job.objects.filter(worker=GONE_WORKER, status=JobStatus.RUNNING).count()
    assert seeded == 4  # one per demo account
    note = seeded_lost_runs_note()
    assert f"Seeded on purpose: {seeded} run(s)" in note
    assert f'"declared {seeded} lost run(s)"' in note and "rescheduled" in note
    # What the scheduler then logs is exactly what the note announced.
    Job.objects.filter(worker=GONE_WORKER).update(heartbeat_at=None)
    assert len(services.jobs_sweep_lost()) == seeded
