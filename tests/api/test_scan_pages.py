"""Pages of a text search read in windows (core.api.pagination.Scan): the same rows in the same
order as the plain query, page after page, whether the text is in most jobs, in a few, in one
or in none; and a rare match below every window is found through the condition's own query."""

from __future__ import annotations

import random
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.api import pagination
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.factories import AccountFactory, JobFactory

pytestmark = pytest.mark.django_db

DETAILS = [
    "IMAP connection to imap1.example timed out after 30 s",
    "read timed out waiting for FETCH",
    "connection refused by imap2.example:993",
    "LOGIN failed: invalid credentials",
    "",
]


def walk(api, key, url: str, body: dict) -> list[str]:
    """Every page of a search, following next_cursor."""
    seen: list[str] = []
    cursor = None
    while True:
        page = api.post(url, {**body, **({"cursor": cursor} if cursor else {})}, key=key).json()
        seen += [row["id"] for row in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


@pytest.fixture
def small_windows(monkeypatch):
    # A first window of 4 rows and at most 13 read, so a few dozen jobs cross several windows
    # and reach the last query.
    monkeypatch.setattr(pagination, "SCAN_FIRST", 4)
    monkeypatch.setattr(pagination, "SCAN_MAX", 13)


@pytest.mark.parametrize("limit", [1, 3, 7, 50])
def test_every_page_equals_the_plain_query(api, keys, account, small_windows, limit):
    rng = random.Random(limit)
    for _ in range(60):
        detail = rng.choice(DETAILS)
        JobFactory(
            account=account,
            status=S.FAILED if detail else S.SUCCEEDED,
            last_error_detail=detail,
        )
    rare = JobFactory(account=account, status=S.FAILED, last_error_detail="quarantined zephyr")
    # The rare match is the oldest of the account: below every window.
    Job.objects.filter(pk=rare.pk).update(created_at="2020-01-01T00:00:00Z")
    JobFactory(account=AccountFactory(), status=S.FAILED, last_error_detail="timed out")
    url = f"/api/accounts/{account.pk}/jobs/search"
    mine = Job.objects.filter(account=account).order_by("-pk")
    for text, body in [
        ("TIMED out", {}),
        ("refused", {}),
        ("zephyr", {}),
        ("nowhere", {}),
        ("timed out", {"status": ["failed"]}),
        (rare.pk, {}),
    ]:
        expected = [
            job.pk
            for job in mine
            if text.upper() in job.last_error_detail.upper() or job.pk == text
            if not body or job.status in body["status"]
        ]
        got = walk(api, keys.a, url, {"q": text, "limit": limit, **body})
        assert got == expected, text


def test_a_rare_match_below_the_windows_is_found_by_its_own_query(
    api, keys, account, small_windows
):
    old = JobFactory(account=account, status=S.FAILED, last_error_detail="zephyr gateway")
    for _ in range(30):
        JobFactory(account=account, status=S.SUCCEEDED)
    page = api.post(f"/api/accounts/{account.pk}/jobs/search", {"q": "zephyr"}, key=keys.a).json()
    assert [row["id"] for row in page["results"]] == [old.pk]
    assert page["next_cursor"] is None


def windows_read(api, key, account, text: str, limit: int) -> list[int]:
    """The rows each window of one page's scan asked for (its LIMIT), in order."""
    url = f"/api/accounts/{account.pk}/jobs/search"
    with CaptureQueriesContext(connection) as queries:
        assert api.post(url, {"q": text, "limit": limit}, key=key).status_code == 200
    return [
        int(re.search(r"LIMIT (\d+)", q["sql"]).group(1))
        for q in queries.captured_queries
        if "scan_hit" in q["sql"]
    ]


def test_the_first_window_sizes_the_next_one(api, keys, account, monkeypatch):
    monkeypatch.setattr(pagination, "SCAN_FIRST", 20)
    monkeypatch.setattr(pagination, "SCAN_MAX", 200)
    # One job in four has the text, the rest is noise: 5 of the first 20 rows match, so the
    # 6 rows a page of 11 (limit 10, and one to know there is more) still needs are about 24
    # more rows (and a fifth more: 28), not the rest of SCAN_MAX.
    for n in range(120):
        detail = "read timed out" if n % 4 == 0 else "connection refused"
        JobFactory(account=account, status=S.FAILED, last_error_detail=detail)
    assert windows_read(api, keys.a, account, "timed out", 10) == [20, 28]


def test_a_text_the_first_window_lacks_goes_to_its_own_query(api, keys, account, monkeypatch):
    monkeypatch.setattr(pagination, "SCAN_FIRST", 20)
    monkeypatch.setattr(pagination, "SCAN_MAX", 200)
    JobFactory(account=account, status=S.FAILED, last_error_detail="zephyr gateway")
    for _ in range(40):
        JobFactory(account=account, status=S.FAILED, last_error_detail="connection refused")
    # None in 20 rows: a page of 51 cannot be filled within 200 rows, so no second window.
    assert windows_read(api, keys.a, account, "zephyr", 50) == [20]
    # A page of 2 may be: the scan goes on as if one in 20 matched (40 rows, and a fifth more).
    assert windows_read(api, keys.a, account, "zephyr", 1) == [20, 48]
