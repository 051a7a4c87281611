"""The nine job operations: each happy path and each of its errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

JOB_FIELDS = {
    "id", "account_id", "task_id", "provider_event_id", "action", "payload", "status",
    "priority", "run_at", "attempt_count", "max_attempts", "last_error_code",
    "last_error_detail", "last_error_at", "result", "resolution", "created_at", "updated_at",
    "started_at", "finished_at", "labels", "allowed_commands", "cancel_requested_at",
}  # fmt: skip


def audit_commands(job: Job) -> list[str]:
    return list(
        AuditEvent.objects.filter(job_id=job.pk).order_by("id").values_list("command", flat=True)
    )


# --- get ---------------------------------------------------------------------------------------


def test_get_job_has_the_product_shape(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = api.get(f"/api/jobs/{job.pk}", key=keys.a)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_FIELDS
    assert body["id"] == job.pk and body["account_id"] == account.pk
    assert body["status"] == "failed"
    assert body["last_error_code"] == "provider_timeout"
    assert body["allowed_commands"] == ["retry", "resolve", "trigger", "update", "delete"]


def test_get_missing_job_is_404(api, keys):
    response = api.get("/api/jobs/job_01HZZZZZZZZZZZZZZZZZZZZZZZ", key=keys.a)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- update ------------------------------------------------------------------------------------


def test_patch_changes_mutable_fields_and_is_audited(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    body = {"priority": 7, "labels": {"team": "mail"}, "max_attempts": 9}
    response = api.patch(f"/api/jobs/{job.pk}", body, key=keys.a)
    assert response.status_code == 200, response.content
    assert response.json()["priority"] == 7 and response.json()["labels"] == {"team": "mail"}
    job.refresh_from_db()
    assert (job.priority, job.labels, job.max_attempts) == (7, {"team": "mail"}, 9)
    assert audit_commands(job) == ["update"]


def test_patch_immutable_field_is_400_naming_it_and_writes_nothing(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = api.patch(f"/api/jobs/{job.pk}", {"status": "succeeded", "priority": 3}, key=keys.a)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "immutable_field"
    assert "status" in error["fields"] and "status" in error["message"]
    job.refresh_from_db()
    assert (job.status, job.priority) == (S.FAILED, 0)


def test_patch_running_job_is_409(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    response = api.patch(f"/api/jobs/{job.pk}", {"priority": 1}, key=keys.a)
    assert response.status_code == 409
    assert error_of(response)["current_status"] == "running"


def test_patch_wrong_type_is_400(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = api.patch(f"/api/jobs/{job.pk}", {"priority": "high"}, key=keys.a)
    assert response.status_code == 400
    assert "priority" in error_of(response)["fields"]


# --- delete ------------------------------------------------------------------------------------


def test_delete_removes_the_job_and_keeps_its_audit(api, keys, account):
    job = JobFactory(account=account, status=S.SUCCEEDED)
    response = api.delete(f"/api/jobs/{job.pk}", key=keys.a)
    assert response.status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()
    assert audit_commands(job) == ["delete"]
    assert api.get(f"/api/jobs/{job.pk}", key=keys.a).status_code == 404


def test_delete_running_job_is_409(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    response = api.delete(f"/api/jobs/{job.pk}", key=keys.a)
    assert response.status_code == 409
    assert error_of(response)["code"] == "invalid_transition"
    assert Job.objects.filter(pk=job.pk).exists()


# --- retry, resolve, trigger -------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.FAILED, S.STALLED])
def test_retry_queues_a_failed_or_stalled_job(api, keys, account, status):
    job = JobFactory(account=account, status=status)
    response = api.post(f"/api/jobs/{job.pk}/retry", {"note": "provider is back"}, key=keys.a)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued"
    job.refresh_from_db()
    assert job.status == S.QUEUED
    assert AuditEvent.objects.get(job_id=job.pk, command="retry").reason == "provider is back"


def test_retry_without_body_works(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    assert api.post(f"/api/jobs/{job.pk}/retry", key=keys.a).status_code == 200


@pytest.mark.parametrize("status", [S.SCHEDULED, S.QUEUED, S.RUNNING, S.SUCCEEDED, S.RESOLVED])
def test_retry_from_other_statuses_is_409(api, keys, account, status):
    job = JobFactory(account=account, status=status)
    response = api.post(f"/api/jobs/{job.pk}/retry", {}, key=keys.a)
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "invalid_transition" and error["current_status"] == status
    job.refresh_from_db()
    assert job.status == status


def test_retry_unknown_body_field_is_400(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = api.post(f"/api/jobs/{job.pk}/retry", {"nope": 1}, key=keys.a)
    assert response.status_code == 400
    assert "nope" in error_of(response)["fields"]
    job.refresh_from_db()
    assert job.status == S.FAILED


def test_resolve_closes_with_code_and_note(api, keys, account):
    job = JobFactory(account=account, status=S.STALLED)
    response = api.post(
        f"/api/jobs/{job.pk}/resolve", {"code": "ignored", "note": "mailbox gone"}, key=keys.a
    )
    assert response.status_code == 200, response.content
    resolution = response.json()["resolution"]
    assert resolution["code"] == "ignored" and resolution["note"] == "mailbox gone"
    assert resolution["by"].startswith("key:")
    job.refresh_from_db()
    assert job.status == S.RESOLVED


def test_resolve_without_note_is_400(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    response = api.post(f"/api/jobs/{job.pk}/resolve", {"code": "ignored"}, key=keys.a)
    assert response.status_code == 400
    assert "note" in error_of(response)["fields"]


def test_resolve_succeeded_job_is_409(api, keys, account):
    job = JobFactory(account=account, status=S.SUCCEEDED)
    response = api.post(f"/api/jobs/{job.pk}/resolve", {"code": "x", "note": "y"}, key=keys.a)
    assert response.status_code == 409


def test_trigger_queues_now(api, keys, account):
    job = JobFactory(account=account, status=S.SCHEDULED)
    response = api.post(f"/api/jobs/{job.pk}/trigger", {}, key=keys.a)
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == S.QUEUED and job.run_at <= timezone.now()


def test_trigger_running_job_is_409(api, keys, account):
    job = JobFactory(account=account, status=S.RUNNING)
    assert api.post(f"/api/jobs/{job.pk}/trigger", {}, key=keys.a).status_code == 409


def test_trigger_while_a_sibling_runs_is_409_unless_forced(api, keys, account):
    JobFactory(account=account, status=S.RUNNING, action="noop")
    job = JobFactory(account=account, status=S.FAILED, action="noop")
    response = api.post(f"/api/jobs/{job.pk}/trigger", {}, key=keys.a)
    assert response.status_code == 409
    assert error_of(response)["code"] == "sibling_running"
    forced = api.post(f"/api/jobs/{job.pk}/trigger", {"force": True}, key=keys.a)
    assert forced.status_code == 200
    job.refresh_from_db()
    assert job.status == S.QUEUED


# --- list and search ---------------------------------------------------------------------------


def test_list_is_newest_first_and_filters(api, keys, account):
    old = JobFactory(account=account, status=S.FAILED, action="noop")
    new = JobFactory(account=account, status=S.FAILED, action="sleep")
    JobFactory(account=account, status=S.SUCCEEDED)
    response = api.get(f"/api/accounts/{account.pk}/jobs?status=failed", key=keys.a)
    assert response.status_code == 200
    assert [j["id"] for j in response.json()["results"]] == [new.pk, old.pk]
    both = api.get(f"/api/accounts/{account.pk}/jobs?status=failed,succeeded", key=keys.a)
    assert len(both.json()["results"]) == 3
    repeated = api.get(
        f"/api/accounts/{account.pk}/jobs?status=failed&action=noop&action=fail", key=keys.a
    )
    assert [j["id"] for j in repeated.json()["results"]] == [old.pk]


def test_search_body_filters_like_the_list(api, keys, account):
    match = JobFactory(
        account=account, status=S.FAILED, action="noop", last_error_code="provider_timeout"
    )
    JobFactory(account=account, status=S.FAILED, action="noop", last_error_code="auth")
    JobFactory(account=account, status=S.STALLED, action="noop", last_error_detail="refused")
    body = {"status": ["failed"], "action": "noop", "last_error_code": ["provider_timeout"]}
    response = api.post(f"/api/accounts/{account.pk}/jobs/search", body, key=keys.a)
    assert response.status_code == 200, response.content
    assert [j["id"] for j in response.json()["results"]] == [match.pk]
    text = api.post(f"/api/accounts/{account.pk}/jobs/search", {"q": "timed out"}, key=keys.a)
    assert len(text.json()["results"]) == 2


def test_search_next_link_is_the_equivalent_list_page(api, keys, account):
    jobs = [JobFactory(account=account, status=S.FAILED) for _ in range(3)]
    first = api.post(
        f"/api/accounts/{account.pk}/jobs/search", {"status": "failed", "limit": 2}, key=keys.a
    ).json()
    assert [j["id"] for j in first["results"]] == [jobs[2].pk, jobs[1].pk]
    second = api.get(first["next"], key=keys.a).json()
    assert [j["id"] for j in second["results"]] == [jobs[0].pk]
    reposted = api.post(
        f"/api/accounts/{account.pk}/jobs/search",
        {"status": "failed", "limit": 2, "cursor": first["next_cursor"]},
        key=keys.a,
    ).json()
    assert reposted["results"] == second["results"]


# --- search-delete -----------------------------------------------------------------------------


def test_search_delete_dry_run_counts_only(api, keys, account):
    for _ in range(3):
        JobFactory(account=account, status=S.FAILED)
    JobFactory(account=account, status=S.SUCCEEDED)
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search-delete",
        {"status": "failed", "dry_run": True},
        key=keys.a,
    )
    assert response.status_code == 200
    assert response.json() == {"matched": 3, "deleted": 0, "skipped_running": 0, "dry_run": True}
    assert Job.objects.filter(account=account).count() == 4


def test_search_delete_deletes_exactly_what_the_search_returns(api, keys, account, other_account):
    doomed = [JobFactory(account=account, status=S.FAILED, action="noop") for _ in range(3)]
    running = JobFactory(account=account, status=S.RUNNING, action="noop")
    kept = JobFactory(account=account, status=S.FAILED, action="sleep")
    theirs = JobFactory(account=other_account, status=S.FAILED, action="noop")
    body = {"action": ["noop"]}
    searched = api.post(f"/api/accounts/{account.pk}/jobs/search", body, key=keys.a).json()
    assert {j["id"] for j in searched["results"]} == {*(j.pk for j in doomed), running.pk}
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search-delete",
        {**body, "expected_count": 4},
        key=keys.a,
    )
    assert response.status_code == 200, response.content
    assert response.json() == {"matched": 4, "deleted": 3, "skipped_running": 1, "dry_run": False}
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {running.pk, kept.pk, theirs.pk}
    events = AuditEvent.objects.filter(command="search_delete")
    assert events.count() == 1
    assert events.get().data["count"] == 3


def test_search_delete_with_an_empty_filter_is_refused(api, keys, account):
    JobFactory(account=account, status=S.FAILED)
    for body in ({}, {"dry_run": False}, {"status": []}):
        response = api.post(f"/api/accounts/{account.pk}/jobs/search-delete", body, key=keys.a)
        assert response.status_code == 400, body
        assert error_of(response)["code"] == "empty_filter"
    assert Job.objects.count() == 1


def test_search_delete_bad_dry_run_and_paging_fields_are_400(api, keys, account):
    JobFactory(account=account, status=S.FAILED)
    url = f"/api/accounts/{account.pk}/jobs/search-delete"
    bad = api.post(url, {"status": "failed", "dry_run": "yes"}, key=keys.a)
    assert bad.status_code == 400 and "dry_run" in error_of(bad)["fields"]
    paged = api.post(url, {"status": "failed", "limit": 5}, key=keys.a)
    assert paged.status_code == 400 and "limit" in error_of(paged)["fields"]
    assert Job.objects.count() == 1


def test_created_range_filters(api, keys, account):
    old = JobFactory(account=account, status=S.FAILED)
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    new = JobFactory(account=account, status=S.FAILED)
    since = (timezone.now() - timedelta(days=1)).isoformat()
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search", {"created_after": since}, key=keys.a
    )
    assert [j["id"] for j in response.json()["results"]] == [new.pk]
