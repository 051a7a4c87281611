"""The payload filter through the API: the list's query string, the search body and
search-delete take it alike."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

INBOX = {"folder": "INBOX"}


@pytest.fixture
def jobs(account, other_account):
    return {
        "inbox": JobFactory(account=account, status=S.FAILED, payload={"folder": "INBOX", "u": 1}),
        "sent": JobFactory(account=account, status=S.FAILED, payload={"folder": "Sent"}),
        "theirs": JobFactory(account=other_account, status=S.FAILED, payload=INBOX),
    }


def test_list_search_and_search_delete_take_the_payload_filter(api, keys, account, jobs):
    url = f"/api/accounts/{account.pk}/jobs"
    listed = api.get(f"{url}?payload={quote(json.dumps(INBOX))}", key=keys.a)
    assert listed.status_code == 200, listed.content
    assert [j["id"] for j in listed.json()["results"]] == [jobs["inbox"].pk]
    searched = api.post(f"{url}/search", {"payload": INBOX}, key=keys.a)
    assert [j["id"] for j in searched.json()["results"]] == [jobs["inbox"].pk]
    # The next link carries the filter as the list reads it.
    page = api.post(f"{url}/search", {"payload": {"folder": ["x"]}, "limit": 1}, key=keys.a)
    assert page.status_code == 200 and page.json()["results"] == []

    dry = api.post(f"{url}/search-delete", {"payload": INBOX, "dry_run": True}, key=keys.a)
    assert dry.json()["matched"] == 1
    done = api.post(f"{url}/search-delete", {"payload": INBOX, "expected_count": 1}, key=keys.a)
    assert done.status_code == 200, done.content
    assert done.json()["deleted"] == 1
    # Another account's job with the same payload is untouched.
    assert set(Job.objects.values_list("pk", flat=True)) == {jobs["sent"].pk, jobs["theirs"].pk}


def test_the_next_page_keeps_the_payload_filter(api, keys, account):
    made = [JobFactory(account=account, payload=INBOX) for _ in range(3)]
    JobFactory(account=account, payload={"folder": "Sent"})
    first = api.post(
        f"/api/accounts/{account.pk}/jobs/search", {"payload": INBOX, "limit": 2}, key=keys.a
    ).json()
    second = api.get(first["next"], key=keys.a).json()
    found = [j["id"] for j in first["results"] + second["results"]]
    assert found == [job.pk for job in reversed(made)]


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("payload=%5B1%5D", ["INBOX"]),
        ("payload=INBOX", "INBOX"),
        ("payload=" + quote('{"a": ' * 40 + "1" + "}" * 40), 7),
    ],
)
def test_a_payload_filter_that_is_not_an_object_is_400_naming_it(api, keys, account, query, body):
    url = f"/api/accounts/{account.pk}/jobs"
    for response in (
        api.get(f"{url}?{query}", key=keys.a),
        api.post(f"{url}/search", {"payload": body}, key=keys.a),
        api.post(f"{url}/search-delete", {"payload": body, "dry_run": True}, key=keys.a),
    ):
        assert response.status_code == 400, response.content
        assert "payload" in error_of(response)["fields"]


def test_search_delete_with_an_empty_payload_filter_is_refused(api, keys, account, jobs):
    response = api.post(
        f"/api/accounts/{account.pk}/jobs/search-delete", {"payload": {}}, key=keys.a
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "empty_filter"
    assert Job.objects.count() == 3
