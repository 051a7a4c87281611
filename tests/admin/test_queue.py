"""The queue view: columns, filters through the shared FilterSet, search, paging without a
COUNT, and a query count that does not grow with the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from jobs.states import JobStatus
from tests.factories import AccountFactory, JobFactory, TaskFactory

S = JobStatus
URL = reverse("admin:jobs_job_changelist")


def ids_on_page(response) -> list[str]:
    return [job.pk for job in response.context["cl"].result_list]


def test_columns_and_coloured_status(operator_client, make_job, account):
    job = make_job(status=S.FAILED, attempt_count=2, max_attempts=5)
    html = operator_client.get(URL).content.decode()
    assert job.pk in html
    assert account.name in html
    assert '<span class="job-status job-status-failed">Failed</span>' in html
    assert "2/5" in html
    assert "provider_timeout" in html


def test_newest_first(operator_client, make_job):
    first, second, third = make_job(), make_job(), make_job()
    assert ids_on_page(operator_client.get(URL)) == [third.pk, second.pk, first.pk]


def test_filters_account_and_status(operator_client, account, other_account, make_job):
    failed = make_job(status=S.FAILED)
    make_job(status=S.SUCCEEDED)
    make_job(status=S.FAILED, account=other_account)
    response = operator_client.get(URL, {"account": account.pk, "status": "failed"})
    assert ids_on_page(response) == [failed.pk]


def test_multi_status_and_action_and_error_code(operator_client, make_job):
    stalled = make_job(status=S.STALLED, action="sleep")
    failed = make_job(status=S.FAILED, action="sleep", last_error_code="provider_auth_failed")
    make_job(status=S.FAILED, action="noop")
    response = operator_client.get(URL, {"status": "failed,stalled", "action": "sleep"})
    assert set(ids_on_page(response)) == {stalled.pk, failed.pk}
    response = operator_client.get(URL, {"last_error_code": "provider_auth_failed"})
    assert ids_on_page(response) == [failed.pk]


def test_stalled_now_filter(operator_client, make_job):
    stale = make_job(status=S.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10))
    make_job(status=S.RUNNING)  # fresh heartbeat
    make_job(status=S.FAILED)
    assert ids_on_page(operator_client.get(URL, {"stalled": "1"})) == [stale.pk]


def test_task_and_time_range_filters(operator_client, make_job, account):
    task = TaskFactory(account=account)
    in_task = make_job(task=task)
    old = make_job(created_at=timezone.now() - timedelta(days=10))
    assert ids_on_page(operator_client.get(URL, {"task_id": task.pk})) == [in_task.pk]
    since = (timezone.now() - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert old.pk not in ids_on_page(operator_client.get(URL, {"created_after": since}))
    assert ids_on_page(operator_client.get(URL, {"created_before": since})) == [old.pk]


def test_sidebar_offers_the_filters(operator_client, make_job, account):
    make_job(status=S.FAILED, last_error_code="provider_timeout")
    html = operator_client.get(URL, {"account": account.pk}).content.decode()
    for title in ("status", "account", "action", "error code", "created", "updated"):
        assert f"By {title}" in html
    assert "Stalled now" in html
    assert "?account=" in html and "last_error_code=provider_timeout" in html


def test_search_by_job_id_task_id_account_id_and_error_detail(operator_client, make_job, account):
    task = TaskFactory(account=account)
    by_detail = make_job(status=S.FAILED, last_error_detail="Mailbox quota exceeded")
    in_task = make_job(task=task)
    other = make_job(account=AccountFactory())
    assert ids_on_page(operator_client.get(URL, {"q": "quota"})) == [by_detail.pk]
    assert ids_on_page(operator_client.get(URL, {"q": in_task.pk})) == [in_task.pk]
    assert ids_on_page(operator_client.get(URL, {"q": task.pk})) == [in_task.pk]
    assert other.pk not in ids_on_page(operator_client.get(URL, {"q": account.pk}))


def test_bad_filter_value_is_reported_not_a_crash(operator_client):
    response = operator_client.get(URL, {"status": "exploded"}, follow=True)
    assert response.status_code == 200
    assert "Filter ignored" in response.content.decode()


def test_pages_without_counting(operator_client, make_job, settings):
    jobs = [make_job() for _ in range(55)]
    with CaptureQueriesContext(connection) as queries:
        response = operator_client.get(URL)
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries)
    # The only COUNT is the capped one (a LIMITed subquery), never the whole table.
    for query in queries.captured_queries:
        if "COUNT(" in query["sql"].upper():
            assert "LIMIT" in query["sql"].upper()
    assert "COUNT(" in sql
    cl = response.context["cl"]
    assert len(cl.result_list) == 50 and cl.has_next_page
    assert str(cl.count_hint) == "55"
    page2 = operator_client.get(URL, {"p": 2}).context["cl"]
    assert [j.pk for j in page2.result_list] == [j.pk for j in jobs[:5]][::-1]
    assert not page2.has_next_page
    assert "Older" in response.content.decode()


def test_count_is_capped(operator_client, make_job, monkeypatch):
    from jobs.admin.options import JobAdmin

    monkeypatch.setattr(JobAdmin, "count_cap", 3)
    for _ in range(5):
        make_job()
    cl = operator_client.get(URL, {"status": "queued"}).context["cl"]
    assert str(cl.count_hint) == "3+"


@pytest.mark.parametrize("client_fixture", ["operator_client", "readonly_client"])
def test_query_count_bounded_and_independent_of_page_size(
    request, client_fixture, account, django_assert_max_num_queries
):
    client = request.getfixturevalue(client_fixture)
    JobFactory(account=account, status=S.FAILED)
    params = {"account": account.pk, "status": "failed,stalled"}
    with CaptureQueriesContext(connection) as small:
        client.get(URL, params)
    for _ in range(60):
        JobFactory(account=AccountFactory(), status=S.FAILED)
        JobFactory(account=account, status=S.STALLED)
    with django_assert_max_num_queries(10), CaptureQueriesContext(connection) as large:
        response = client.get(URL, params)
    assert len(response.context["cl"].result_list) == 50
    assert len(large.captured_queries) == len(small.captured_queries)
    with django_assert_max_num_queries(10):
        client.get(URL)
