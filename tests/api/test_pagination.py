"""Cursor pages by id, newest first: stable links both ways, bounded limits, never a COUNT."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.states import JobStatus as S
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def ids(page: dict) -> list[str]:
    return [row["id"] for row in page["results"]]


def test_walks_forward_and_back_through_all_jobs(api, keys, account):
    jobs = [JobFactory(account=account, status=S.FAILED).pk for _ in range(7)]
    newest_first = list(reversed(jobs))
    first = api.get(f"/api/accounts/{account.pk}/jobs?limit=3", key=keys.a).json()
    assert ids(first) == newest_first[:3] and first["previous"] is None
    second = api.get(first["next"], key=keys.a).json()
    assert ids(second) == newest_first[3:6]
    third = api.get(second["next"], key=keys.a).json()
    assert ids(third) == newest_first[6:] and third["next"] is None
    back = api.get(third["previous"], key=keys.a).json()
    assert ids(back) == newest_first[3:6]
    start = api.get(back["previous"], key=keys.a).json()
    assert ids(start) == newest_first[:3] and start["previous"] is None
    assert "limit=3" in first["next"]


def test_rows_added_meanwhile_do_not_shift_the_next_page(api, keys, account):
    jobs = [JobFactory(account=account, status=S.FAILED).pk for _ in range(4)]
    first = api.get(f"/api/accounts/{account.pk}/jobs?limit=2", key=keys.a).json()
    JobFactory(account=account, status=S.FAILED)  # newer: lands before page one
    second = api.get(first["next"], key=keys.a).json()
    assert ids(second) == [jobs[1], jobs[0]]


def test_filters_survive_in_the_next_link(api, keys, account):
    failed = [JobFactory(account=account, status=S.FAILED).pk for _ in range(3)]
    JobFactory(account=account, status=S.SUCCEEDED)
    first = api.get(f"/api/accounts/{account.pk}/jobs?status=failed&limit=2", key=keys.a).json()
    second = api.get(first["next"], key=keys.a).json()
    assert ids(second) == [failed[0]] and second["next"] is None


def test_default_limit_is_50_and_200_is_allowed(api, keys, account):
    for _ in range(55):
        JobFactory(account=account)
    assert len(api.get(f"/api/accounts/{account.pk}/jobs", key=keys.a).json()["results"]) == 50
    page = api.get(f"/api/accounts/{account.pk}/jobs?limit=200", key=keys.a).json()
    assert len(page["results"]) == 55 and page["next"] is None


def test_lists_never_count(api, keys, account):
    for _ in range(5):
        JobFactory(account=account, status=S.FAILED)
    paths = [
        f"/api/accounts/{account.pk}/jobs?limit=2&status=failed",
        f"/api/accounts/{account.pk}/tasks",
        f"/api/accounts/{account.pk}/provider-events",
        "/api/audit-events",
    ]
    for path in paths:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(path, key=keys.a).status_code == 200
        sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
        assert "COUNT(" not in sql, path


def test_audit_events_paginate_by_integer_id(api, keys, account):
    for _ in range(3):
        JobFactory(account=account, status=S.FAILED)
    for job in account.jobs.all():
        api.post(f"/api/jobs/{job.pk}/retry", {}, key=keys.a)
    first = api.get("/api/audit-events?command=retry&limit=2", key=keys.a).json()
    assert len(first["results"]) == 2
    second = api.get(first["next"], key=keys.a).json()
    assert len(second["results"]) == 1
    assert first["results"][1]["id"] > second["results"][0]["id"]
