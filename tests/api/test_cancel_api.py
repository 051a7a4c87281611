"""POST /api/jobs/:job_id/cancel: 202 with the job still running and the request recorded; 409
with the current status when the job is not running; scoping, read-only keys, staff
permissions and Idempotency-Key as for every command. (Foreign jobs and read-only keys are
also in tests/api/test_scoping.py's matrix; the worker's side is tests/jobs/test_cancel.py.)"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def cancel(api, job, key, body=None, **kwargs):
    return api.post(f"/api/jobs/{job.pk}/cancel", {} if body is None else body, key=key, **kwargs)


def test_cancel_of_a_running_job_is_accepted_and_recorded(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    response = cancel(api, job, keys.a, {"note": "provider is down"})
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["id"] == job.pk
    assert body["status"] == "running"  # until the worker stops the run
    assert body["cancel_requested_at"] is not None
    assert body["resolution"] is None
    job.refresh_from_db()
    assert job.cancel_note == "provider is down"
    assert job.cancel_requested_by == f"key:{keys.a.split('_')[1]}"
    event = AuditEvent.objects.get(job_id=job.pk, command="cancel")
    assert (event.actor_type, event.reason) == ("api_key", "provider is down")
    # The same request again changes nothing and answers the same.
    again = cancel(api, job, keys.a, {"note": "again"})
    assert again.status_code == 202
    assert again.json()["cancel_requested_at"] == body["cancel_requested_at"]
    assert AuditEvent.objects.filter(job_id=job.pk, command="cancel").count() == 1


def test_the_body_may_be_empty_and_the_note_is_checked(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    for bad, field in (({"note": 3}, "note"), ({"force": True}, "force"), ([], None)):
        response = cancel(api, job, keys.a, bad)
        assert response.status_code == 400, (bad, response.content)
        if field:
            assert field in error_of(response)["fields"], response.content
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None
    assert cancel(api, job, keys.op).status_code == 202  # an operator key, no note


@pytest.mark.parametrize("status", sorted(set(S) - {S.RUNNING}))
def test_cancel_of_a_job_that_is_not_running_is_a_409_with_its_status(api, keys, account, status):
    job = JobFactory(account=account, status=status)
    response = cancel(api, job, keys.a, {"note": "too late"})
    assert response.status_code == 409
    error = error_of(response)
    assert error["current_status"] == status
    assert not AuditEvent.objects.filter(job_id=job.pk).exists()


def test_foreign_and_read_only(api, keys, account, other_account):
    job = JobFactory(account=account, status=S.RUNNING)
    assert cancel(api, job, keys.b).status_code == 404
    assert cancel(api, job, keys.a_ro).status_code == 403
    assert cancel(api, job, keys.op_ro).status_code == 403
    assert Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_idempotency_key_replays_the_answer(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    headers = {"Idempotency-Key": "cancel-1"}
    first = cancel(api, job, keys.a, {"note": "n"}, headers=headers)
    Job.objects.filter(pk=job.pk).update(status=S.RESOLVED)  # as the worker would, meanwhile
    again = cancel(api, job, keys.a, {"note": "n"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    other = cancel(api, job, keys.a, {"note": "other"}, headers=headers)
    assert other.status_code == 422


def test_staff_session_needs_the_cancel_permission(account):
    job = JobFactory(account=account, status=S.RUNNING)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(viewer)
    url = f"/api/jobs/{job.pk}/cancel"
    refused = client.post(url, "{}", content_type="application/json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "permission_denied"
    viewer.user_permissions.add(Permission.objects.get(codename="cancel_job"))
    client.force_login(User.objects.get(pk=viewer.pk))
    allowed = client.post(url, '{"note": "stop"}', content_type="application/json")
    assert allowed.status_code == 202
    assert Job.objects.get(pk=job.pk).cancel_requested_by == "user:viewer"


def test_a_running_job_offers_cancel(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    assert api.get(f"/api/jobs/{job.pk}", key=keys.a).json()["allowed_commands"] == ["cancel"]
