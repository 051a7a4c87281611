"""Deliberate search-delete (issue 13, finding 9): an always-true filter (`attempt_count_min: 0`,
`created_after: 1970-...`) used to delete every job of the account silently. Now a delete must
carry `expected_count`, the `matched` of a dry run of the same filter: without it a 400, with
another count a 409 with the current one, and in both cases nothing is deleted."""

from __future__ import annotations

import pytest
from django.urls import reverse

from core.errors import Conflict, ValidationFailed
from core.models import AuditEvent
from jobs import services
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api import conftest as api_fixtures
from tests.api.conftest import error_of
from tests.factories import JobFactory
from tests.state import snapshot

pytestmark = pytest.mark.django_db

# The API client and keys of tests/api.
api = api_fixtures.api
keys = api_fixtures.keys

ALWAYS_TRUE = [
    {"attempt_count_min": 0},
    {"created_after": "1970-01-01T00:00:00Z"},
    {"updated_before": "9999-12-31T00:00:00Z"},
    {"status": ["scheduled", "queued", "running", "succeeded", "failed", "stalled", "resolved"]},
    {"attempt_count_max": 1_000_000},
]
SEARCH_DELETE = reverse("admin:jobs_job_search_delete")


@pytest.fixture
def jobs(account, other_account):
    mine = [JobFactory(account=account, status=status) for status in (S.FAILED, S.SUCCEEDED)]
    mine.append(JobFactory(account=account, status=S.RUNNING))
    theirs = JobFactory(account=other_account, status=S.FAILED)
    return {"mine": mine, "theirs": theirs}


@pytest.mark.parametrize("filters", ALWAYS_TRUE)
def test_an_always_true_filter_without_expected_count_deletes_nothing(
    api, keys, account, jobs, filters
):
    before = snapshot()
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    for body in (filters, {**filters, "dry_run": False}, {**filters, "expected_count": None}):
        response = api.post(path, body, key=keys.a)
        assert response.status_code == 400, response.content
        error = error_of(response)
        assert error["code"] == "expected_count_required"
        assert "expected_count" in error["fields"]
    assert snapshot() == before


@pytest.mark.parametrize("filters", ALWAYS_TRUE)
def test_a_count_other_than_what_the_filter_matches_is_409_and_deletes_nothing(
    api, keys, account, jobs, filters
):
    before = snapshot()
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    for expected in (0, 2, 4, 10**12):
        response = api.post(path, {**filters, "expected_count": expected}, key=keys.a)
        assert response.status_code == 409, response.content
        error = error_of(response)
        assert error["code"] == "count_changed" and error["matched"] == 3
    assert snapshot() == before
    assert not AuditEvent.objects.filter(command="search_delete").exists()


@pytest.mark.parametrize("expected", ["3", True, -1, 1.5, [3], {"n": 3}])
def test_an_expected_count_that_is_not_a_count_is_400(api, keys, account, jobs, expected):
    before = snapshot()
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search-delete",
        {"attempt_count_min": 0, "expected_count": expected},
        key=keys.a,
    )
    assert response.status_code == 400, response.content
    assert "expected_count" in error_of(response)["fields"]
    assert snapshot() == before


def test_the_dry_runs_count_confirms_the_delete(api, keys, account, jobs):
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    body = {"attempt_count_min": 0}
    dry = api.post(path, {**body, "dry_run": True}, key=keys.a).json()
    assert dry == {"matched": 3, "deleted": 0, "skipped_running": 1, "dry_run": True}
    done = api.post(path, {**body, "expected_count": dry["matched"]}, key=keys.a)
    assert done.status_code == 200, done.content
    assert done.json() == {"matched": 3, "deleted": 2, "skipped_running": 1, "dry_run": False}
    remaining = set(Job.objects.values_list("pk", flat=True))
    assert remaining == {jobs["mine"][2].pk, jobs["theirs"].pk}
    assert AuditEvent.objects.get(command="search_delete").data["count"] == 2


def test_a_job_created_after_the_dry_run_makes_the_count_stale(api, keys, account, jobs):
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    dry = api.post(path, {"status": "failed", "dry_run": True}, key=keys.a).json()
    JobFactory(account=account, status=S.FAILED)
    before = snapshot()
    stale = api.post(path, {"status": "failed", "expected_count": dry["matched"]}, key=keys.a)
    assert stale.status_code == 409 and error_of(stale)["matched"] == 2
    assert snapshot() == before
    fresh = api.post(path, {"status": "failed", "expected_count": 2}, key=keys.a)
    assert fresh.json()["deleted"] == 2


def test_the_service_takes_the_same_rule(account, actor, jobs):
    before = snapshot()
    with pytest.raises(ValidationFailed) as missing:
        services.jobs_search_delete(
            account_id=account.pk, filters={"attempt_count_min": 0}, actor=actor
        )
    assert missing.value.code == "expected_count_required"
    with pytest.raises(Conflict) as wrong:
        services.jobs_search_delete(
            account_id=account.pk, filters={"attempt_count_min": 0}, actor=actor, expected_count=1
        )
    assert wrong.value.extra == {"matched": 3}
    assert snapshot() == before
    # A dry run needs no count, and the empty filter is refused first, as before.
    dry = services.jobs_search_delete(
        account_id=account.pk, filters={"attempt_count_min": 0}, actor=actor, dry_run=True
    )
    assert dry["matched"] == 3
    with pytest.raises(ValidationFailed) as empty:
        services.jobs_search_delete(account_id=account.pk, filters={}, actor=actor)
    assert empty.value.code == "empty_filter"


# --- the admin's delete by search ----------------------------------------------------------------


@pytest.fixture
def operator_client(client, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    return client


def test_the_admin_page_confirms_the_count_it_showed(operator_client, account, jobs):
    query = f"account={account.pk}&attempt_count_min=0"
    html = operator_client.get(f"{SEARCH_DELETE}?{query}").content.decode()
    assert 'id="matched">3<' in html and 'name="expected_count" value="3"' in html
    done = operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "3"})
    assert done.status_code == 302
    assert set(Job.objects.values_list("pk", flat=True)) == {
        jobs["mine"][2].pk,
        jobs["theirs"].pk,
    }


def test_the_admin_page_shows_a_changed_count_and_deletes_nothing(operator_client, account, jobs):
    query = f"account={account.pk}&attempt_count_min=0"
    operator_client.get(f"{SEARCH_DELETE}?{query}")
    JobFactory(account=account, status=S.FAILED)  # arrives while the operator reads the page
    before = snapshot()
    page = operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "3"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="count-changed"' in html and "matches 4 jobs now" in html
    assert 'name="expected_count" value="4"' in html  # confirm again, with the new count
    assert snapshot() == before
    operator_client.post(f"{SEARCH_DELETE}?{query}", {"expected_count": "4"})
    assert Job.objects.filter(account=account).count() == 1  # the running one


@pytest.mark.parametrize("posted", [{}, {"expected_count": ""}, {"expected_count": "three"}])
def test_the_admin_page_without_a_count_deletes_nothing(operator_client, account, jobs, posted):
    query = f"account={account.pk}&attempt_count_min=0"
    before = snapshot()
    page = operator_client.post(f"{SEARCH_DELETE}?{query}", posted)
    assert page.status_code == 200
    assert 'id="refusal"' in page.content.decode()
    assert snapshot() == before
