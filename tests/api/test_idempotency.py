"""Idempotency-Key: the same key and body replay the stored answer without acting again; the
same key with another body is a 422; keys belong to one principal and expire."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.models import AuditEvent, IdempotencyRecord
from jobs.models import Job, Task
from jobs.states import JobStatus as S
from tests.api.conftest import Api, error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def post(api, path, body, key, idem):
    return api.post(path, body, key=key, headers={"Idempotency-Key": idem})


def test_same_key_and_body_replays_without_acting(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    first = post(api, f"/api/jobs/{job.pk}/retry", {"note": "n"}, keys.a, "abc")
    assert first.status_code == 200
    Job.objects.filter(pk=job.pk).update(status=S.FAILED)  # would be retried again if acted
    again = post(api, f"/api/jobs/{job.pk}/retry", {"note": "n"}, keys.a, "abc")
    assert again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AuditEvent.objects.filter(job_id=job.pk, command="retry").count() == 1
    job.refresh_from_db()
    assert job.status == S.FAILED


def test_same_key_other_body_is_422(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    assert post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "k").status_code == 200
    other = post(api, f"/api/jobs/{job.pk}/retry", {"note": "other"}, keys.a, "k")
    assert other.status_code == 422
    assert error_of(other)["code"] == "idempotency_key_reused"
    elsewhere = post(api, f"/api/jobs/{job.pk}/trigger", {}, keys.a, "k")
    assert elsewhere.status_code == 422


def test_keys_are_per_principal(api, keys, account):
    body = {"kind": "noop_batch", "params": {"count": 1}}
    path = f"/api/accounts/{account.pk}/tasks"
    assert post(api, path, body, keys.a, "same").status_code == 201
    assert post(api, path, body, keys.op, "same").status_code == 201
    assert post(api, path, body, keys.a, "same").status_code == 201  # a replay
    assert Task.objects.filter(account=account).count() == 2


def test_failed_requests_are_not_stored(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    refused = post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "later")
    assert refused.status_code == 409
    assert not IdempotencyRecord.objects.exists()
    Job.objects.filter(pk=job.pk).update(status=S.FAILED)
    assert post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "later").status_code == 200


def test_expired_keys_act_again(api, keys, account, settings):
    job = JobFactory(account=account, status=S.FAILED)
    assert post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "old").status_code == 200
    IdempotencyRecord.objects.update(
        created_at=timezone.now() - timedelta(hours=settings.JOBS_IDEMPOTENCY_TTL_HOURS, minutes=1)
    )
    Job.objects.filter(pk=job.pk).update(status=S.FAILED)
    again = post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "old")
    assert again.status_code == 200 and "Idempotent-Replayed" not in again
    assert AuditEvent.objects.filter(job_id=job.pk, command="retry").count() == 2


def test_search_delete_replays_its_count(api, keys, account):
    for _ in range(2):
        JobFactory(account=account, status=S.FAILED)
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    body = {"status": "failed", "expected_count": 2}
    first = post(api, path, body, keys.a, "sd")
    JobFactory(account=account, status=S.FAILED)
    again = post(api, path, body, keys.a, "sd")
    assert first.json()["deleted"] == 2 and again.json() == first.json()
    assert Job.objects.filter(account=account).count() == 1


def test_bad_keys_are_400(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = post(api, f"/api/jobs/{job.pk}/retry", {}, keys.a, "x" * 256)
    assert response.status_code == 400 and "Idempotency-Key" in error_of(response)["fields"]
    job.refresh_from_db()
    assert job.status == S.FAILED


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_act_once(keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    results: list = []
    barrier = threading.Barrier(4)

    def send():
        try:
            barrier.wait(timeout=10)
            response = post(Api(), f"/api/jobs/{job.pk}/retry", {"note": "n"}, keys.a, "race")
            results.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4
    assert {status for status, _ in results} == {200}
    assert all(body == results[0][1] for _, body in results)
    assert AuditEvent.objects.filter(job_id=job.pk, command="retry").count() == 1
