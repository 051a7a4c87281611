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
