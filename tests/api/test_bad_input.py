"""Bad input is a 400 (or 415/405) in the one error shape, naming the problem, and writes
nothing: malformed JSON, wrong types, unknown filters, bad cursors and limits, immutable fields;
a malformed id in the path is the 404 of an unknown one."""

from __future__ import annotations

import json

import pytest

from core.models import AuditEvent
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(account):
    return JobFactory(account=account, status=S.FAILED)


def unchanged(job: Job) -> bool:
    before = job.updated_at
    job.refresh_from_db()
    return (
        job.status == S.FAILED
        and job.updated_at == before
        and not AuditEvent.objects.filter(job_id=job.pk).exists()
    )


@pytest.mark.parametrize("command", ["retry", "resolve", "trigger"])
def test_malformed_json_is_400(api, keys, job, command):
    response = api.post(f"/api/jobs/{job.pk}/{command}", raw='{"note": ', key=keys.a)
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed_json"
    assert unchanged(job)


def test_malformed_json_on_patch_and_search(api, keys, account, job):
    assert api.patch(f"/api/jobs/{job.pk}", raw="{", key=keys.a).status_code == 400
    search = api.post(f"/api/accounts/{account.pk}/jobs/search", raw="[1,", key=keys.a)
    assert search.status_code == 400 and error_of(search)["code"] == "malformed_json"
    assert unchanged(job)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_other_content_types_are_415(api, keys, job, content_type):
    response = api.post(
        f"/api/jobs/{job.pk}/retry", raw="note=x", content_type=content_type, key=keys.a
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert unchanged(job)


@pytest.mark.parametrize("body", [[], "retry", 3, None])
def test_a_body_that_is_not_an_object_is_400(api, keys, account, job, body):
    for path in (f"/api/jobs/{job.pk}/retry", f"/api/accounts/{account.pk}/jobs/search"):
        response = api.post(path, body, key=keys.a)
        assert response.status_code == 400, (path, response.content)
        assert error_of(response)["fields"]
    assert api.patch(f"/api/jobs/{job.pk}", body, key=keys.a).status_code == 400
    assert unchanged(job)


@pytest.mark.parametrize(
    ("command", "body", "field"),
    [
        ("trigger", {"force": "perhaps"}, "force"),
        ("trigger", {"force": [True]}, "force"),
        ("resolve", {"code": ["x"], "note": "n"}, "code"),
        ("resolve", {"code": "ignored", "note": {"a": 1}}, "note"),
        ("resolve", {"code": "Not A Code!", "note": "n"}, "code"),
        ("retry", {"note": 5}, "note"),
    ],
)
def test_wrong_types_are_400_naming_the_field(api, keys, job, command, body, field):
    response = api.post(f"/api/jobs/{job.pk}/{command}", body, key=keys.a)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert unchanged(job)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("colour=red", "colour"),
        ("status=exploded", "status"),
        ("attempt_count_min=lots", "attempt_count_min"),
        ("attempt_count_min=-1", "attempt_count_min"),
        ("created_after=yesterday", "created_after"),
        ("task_id=tsk_notanid", "task_id"),
        ("limit=", "limit"),
        ("status=", "status"),
        ("label=nocolon", "label"),
        ("task_id=a&task_id=b", "task_id"),
    ],
)
def test_bad_filters_are_400_naming_the_field(api, keys, account, query, field):
    response = api.get(f"/api/accounts/{account.pk}/jobs?{query}", key=keys.a)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"status": ["failed", 3]}, "status"),
        ({"status": {"a": 1}}, "status"),
        ({"attempt_count_min": 1.5}, "attempt_count_min"),
        ({"attempt_count_min": True}, "attempt_count_min"),
        ({"q": ["a", "b"]}, "q"),
    ],
)
def test_bad_search_bodies_are_400_and_delete_nothing(api, keys, account, job, body, field):
    for path in ("search", "search-delete"):
        response = api.post(f"/api/accounts/{account.pk}/jobs/{path}", body, key=keys.a)
        assert response.status_code == 400, (path, response.content)
        assert field in error_of(response)["fields"]
    assert Job.objects.filter(pk=job.pk).exists()


@pytest.mark.parametrize("limit", ["0", "201", "100000", "-5", "ten", "1.5"])
def test_limits_outside_1_to_200_are_400(api, keys, account, limit):
    response = api.get(f"/api/accounts/{account.pk}/jobs?limit={limit}", key=keys.a)
    assert response.status_code == 400
    assert "limit" in error_of(response)["fields"]


def test_huge_limit_in_a_search_body_is_400(api, keys, account):
    response = api.post(f"/api/accounts/{account.pk}/jobs/search", {"limit": 10**9}, key=keys.a)
    assert response.status_code == 400 and "limit" in error_of(response)["fields"]


@pytest.mark.parametrize(
    "cursor",
    ["garbage!", "bjpqb2JfMQ", "eDpqb2JfMDFIWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpa", "%00", "a" * 300],
)
def test_invalid_cursors_are_400(api, keys, account, cursor):
    # "bjpqb2JfMQ" is n:job_1 (not an id); the other base64 has a direction that does not exist.
    response = api.get(f"/api/accounts/{account.pk}/jobs?cursor={cursor}", key=keys.a)
    assert response.status_code == 400, response.content
    assert "cursor" in error_of(response)["fields"]
    audit = api.get(f"/api/audit-events?cursor={cursor}", key=keys.a)
    assert audit.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/42",
        "/api/jobs/acc_01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "/api/jobs/job_short",
        "/api/accounts/nope/jobs",
        "/api/tasks/job_01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "/api/provider-events/evt_lowercase0000000000000000",
    ],
)
def test_malformed_ids_in_the_path_are_404_like_unknown_ones(api, keys, path):
    # A malformed id names no object, as an unknown one does (tests/api/test_input_boundary.py
    # compares the bodies).
    response = api.get(path, key=keys.a)
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_malformed_id_in_a_command_writes_nothing(api, keys, job):
    response = api.post("/api/jobs/not-a-job/retry", {}, key=keys.a)
    assert response.status_code == 404
    assert unchanged(job)


@pytest.mark.parametrize("field", ["status", "id", "account_id", "attempt_count", "action"])
def test_immutable_fields_in_patch_are_400_naming_them(api, keys, job, field):
    response = api.patch(f"/api/jobs/{job.pk}", {field: "x", "priority": 2}, key=keys.a)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "immutable_field" and field in error["fields"]
    assert unchanged(job)


def test_empty_patch_is_400(api, keys, job):
    assert api.patch(f"/api/jobs/{job.pk}", {}, key=keys.a).status_code == 400


def test_unknown_api_paths_and_methods_are_json(api, keys, job):
    missing = api.get("/api/nothing/here", key=keys.a)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    slash = api.get(f"/api/jobs/{job.pk}/", key=keys.a)
    assert slash.status_code == 404 and error_of(slash)
    method = api.call("PUT", f"/api/jobs/{job.pk}", {"priority": 1}, key=keys.a)
    assert method.status_code == 405 and error_of(method)["code"] == "method_not_allowed"
    assert unchanged(job)


def test_unknown_query_parameters_of_other_lists_are_400(api, keys, account):
    for path in (f"/api/accounts/{account.pk}/tasks", "/api/audit-events"):
        response = api.get(f"{path}?colour=red", key=keys.a)
        assert response.status_code == 400 and "colour" in error_of(response)["fields"]


def test_not_acceptable_is_406(api, keys, job):
    response = api.get(f"/api/jobs/{job.pk}", key=keys.a, headers={"Accept": "application/xml"})
    assert response.status_code == 406
    assert error_of(response)["code"] == "not_acceptable"


def test_server_errors_under_api_are_json(rf):
    from core.api.exceptions import api_server_error

    response = api_server_error(rf.get("/api/jobs/x"))
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["error"]["code"] == "internal_error"
    page = api_server_error(rf.get("/admin/"))
    assert page.status_code == 500 and not page["Content-Type"].startswith("application/json")


def test_django_validation_errors_by_field_are_400(rf):
    # error_dict holds lists of errors per field, not errors: read through message_dict.
    from django.core.exceptions import ValidationError

    from core.api.exceptions import api_exception_handler

    exc = ValidationError({"priority": ["Too high.", "Not a number."], "note": "Too long."})
    response = api_exception_handler(exc, {})
    assert response is not None and response.status_code == 400
    assert response.data["error"]["fields"] == {
        "priority": ["Too high.", "Not a number."],
        "note": ["Too long."],
    }
