from __future__ import annotations

import pytest
from django.http import QueryDict

from core.errors import ValidationFailed
from jobs.filters import filter_jobs, normalize_filter_params
from jobs.models import Job
from jobs.states import JobStatus


def ids(params):
    return set(
        filter_jobs(Job.objects.all(), normalize_filter_params(params)).values_list("pk", flat=True)
    )


def test_query_string_and_body_filter_alike(make_job):
    a = make_job(status=JobStatus.FAILED, last_error_code="e1")
    b = make_job(status=JobStatus.STALLED, last_error_code="e2")
    make_job(status=JobStatus.SUCCEEDED)
    body = {"status": ["failed", "stalled"]}
    assert ids(body) == {a.pk, b.pk}
    assert ids(QueryDict("status=failed,stalled")) == {a.pk, b.pk}
    assert ids(QueryDict("status=failed&status=stalled")) == {a.pk, b.pk}
    assert ids({"status": "failed"}) == {a.pk}
    assert ids({"last_error_code": ["e2"]}) == {b.pk}


def test_text_labels_and_ranges(make_job):
    a = make_job(
        status=JobStatus.FAILED,
        last_error_detail="IMAP connection timed out",
        labels={"tier": "gold"},
    )
    b = make_job(status=JobStatus.FAILED, last_error_detail="auth", attempt_count=4)
    assert ids({"q": "TIMED out"}) == {a.pk}
    assert ids({"q": a.pk}) == {a.pk}
    assert ids({"label": "tier:gold"}) == {a.pk}
    assert ids({"attempt_count_min": 2}) == {b.pk}
    assert ids({"attempt_count_max": 1}) == {a.pk}


def test_an_empty_range_matches_nothing(make_job):
    # Not an error: the OpenAPI schema cannot state a rule between two values, so the server
    # has none either (a schema-valid request is accepted).
    make_job(status=JobStatus.FAILED, attempt_count=2)
    assert ids({"attempt_count_min": 3, "attempt_count_max": 1}) == set()
    bounds = {"created_after": "2026-01-02T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"}
    assert ids(bounds) == set()
    assert ids({**bounds, "created_after": "2026-01-01T00:00:00Z"}) == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "nope"}, "status"),
        ({"stats": "failed"}, "stats"),
        ({"attempt_count_min": "two"}, "attempt_count_min"),
        ({"attempt_count_min": -1}, "attempt_count_min"),
        ({"attempt_count_min": 2.5}, "attempt_count_min"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"task_id": "tsk_notanid"}, "task_id"),
        ({"provider_event_id": "job_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "provider_event_id"),
        ({"task_id": ["a", "b"]}, "task_id"),
        ({"q": {"x": 1}}, "q"),
        ({"label": "nocolon"}, "label"),
        ({"status": True}, "status"),
    ],
)
def test_bad_filters_name_the_field(db, params, field):
    with pytest.raises(ValidationFailed) as excinfo:
        ids(params)
    assert field in excinfo.value.fields
