"""Search that scales: the payload filter (JSON containment) and text search (`q`) give the same
rows as an unindexed scan on both databases, and PostgreSQL answers a rare term from its
indexes (jobs.sql.SEARCH_INDEXES, migration 0010)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from django.db import connection, transaction
from django.http import QueryDict

from core.errors import ValidationFailed
from core.jsonb import contains
from jobs import sql
from jobs.checks import search_indexes
from jobs.filters import filter_jobs, has_filters, normalize_filter_params
from jobs.models import Job
from jobs.states import JobStatus
from tests.conftest import is_postgres

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the GIN and trigram indexes are PostgreSQL's"
)

DOCS = [
    {"folder": "INBOX"},
    {"folder": "INBOX", "uid": 5},
    {"folder": "Sent"},
    {"folder": ["INBOX", "Sent"]},
    {"folders": ["INBOX", "Archive"], "full": True},
    {"n": 1},
    {"n": 1.0},
    {"n": 2},
    {"n": True},
    {"n": None},
    {"n": "1"},
    {"a": {"b": {"c": [1, 2, {"d": "x"}]}}},
    {"a": {"b": {"c": []}}},
    {"a": {"b": 1}},
    {},
    {"tags": [["x", "y"], "z"]},
    {"unicode": "Café ☕"},
    {"k.with.dots": 1, 'quote"key': 2, "back\\slash": 3},
    {"empty": ""},
    {"list": [1, 1, 2]},
]
TEMPLATES = [
    {"folder": "INBOX"},
    {"folder": ["INBOX"]},
    {"folder": "Sent"},
    {"folders": ["Archive"]},
    {"folders": ["INBOX", "Archive", "INBOX"]},
    {"folders": "INBOX"},  # a scalar is not contained by an array below the top level
    {"n": 1},
    {"n": 1.0},
    {"n": True},
    {"n": None},
    {"n": "1"},
    {"a": {"b": {}}},
    {"a": {"b": {"c": [{"d": "x"}]}}},
    {"a": {"b": {"c": []}}},
    {"a": {"b": {"c": [2, 1]}}},
    {"tags": [["y"]]},
    {"tags": ["y"]},
    {"unicode": "Café ☕"},
    {"unicode": "café ☕"},
    {"k.with.dots": 1},
    {'quote"key': 2, "back\\slash": 3},
    {"empty": ""},
    {"list": [2, 2]},
    {"missing": 1},
    {"folder": "INBOX", "uid": 5},
]


def ids(params) -> set[str]:
    queryset = filter_jobs(Job.objects.all(), normalize_filter_params(params))
    return set(queryset.values_list("pk", flat=True))


@contextmanager
def no_index_scans():
    """PostgreSQL reads the table itself: the unindexed scan to compare with."""
    with transaction.atomic(), connection.cursor() as cursor:
        if is_postgres():
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute("SET LOCAL enable_indexonlyscan = off")
        yield


@pytest.fixture
def payload_jobs(make_job):
    return [make_job(status=JobStatus.SUCCEEDED, payload=doc) for doc in DOCS]


@postgres_only
def test_the_reference_is_what_postgresql_means(db):
    """core.jsonb.contains (SQLite's function) gives PostgreSQL's answer for every pair."""
    with connection.cursor() as cursor:
        for doc in [*DOCS, ["INBOX", 1], "INBOX", 1]:
            for template in [*TEMPLATES, "INBOX", 1, ["INBOX"], {}]:
                cursor.execute(
                    "SELECT %s::jsonb @> %s::jsonb", [json.dumps(doc), json.dumps(template)]
                )
                assert cursor.fetchone()[0] is contains(doc, template), (doc, template)


@pytest.mark.parametrize("template", TEMPLATES, ids=json.dumps)
def test_payload_filter_equals_an_unindexed_scan(payload_jobs, template):
    expected = {job.pk for job in payload_jobs if contains(job.payload, template)}
    found = ids({"payload": template})
    assert found == expected
    with no_index_scans():
        assert ids({"payload": template}) == expected
    # The query string takes the JSON text and means the same.
    query = QueryDict(mutable=True)
    query["payload"] = json.dumps(template)
    assert ids(query) == expected


def test_payload_filter_combines_with_the_others(make_job):
    inbox_failed = make_job(status=JobStatus.FAILED, payload={"folder": "INBOX"})
    make_job(status=JobStatus.SUCCEEDED, payload={"folder": "INBOX"})
    make_job(status=JobStatus.FAILED, payload={"folder": "Sent"})
    assert ids({"payload": {"folder": "INBOX"}, "status": "failed"}) == {inbox_failed.pk}


def test_an_empty_object_narrows_nothing(make_job):
    make_job(payload={"folder": "INBOX"})
    assert ids({"payload": {}}) == set(Job.objects.values_list("pk", flat=True))
    assert not has_filters(normalize_filter_params({"payload": {}}))
    assert not has_filters(normalize_filter_params(QueryDict("payload=%7B+%7D")))
    assert has_filters(normalize_filter_params({"payload": {"folder": "INBOX"}}))


@pytest.mark.parametrize(
    "value",
    [
        "[1, 2]",
        '"INBOX"',
        "not json",
        "{'single': 'quotes'}",
        '{"a": NaN}',
        '{"a": "\\u0000"}',
        '{"a": ' * 40 + "1" + "}" * 40,
        "[" * 100_000,
        json.dumps({"a": "x" * 5000}),
        ["a", "b"],
        7,
        True,
    ],
    ids=lambda v: repr(v)[:30],
)
def test_a_bad_payload_filter_is_a_400_naming_it(db, value):
    with pytest.raises(ValidationFailed) as caught:
        ids({"payload": value})
    assert "payload" in caught.value.fields, caught.value.fields


@pytest.fixture
def detail_jobs(make_job):
    details = [
        "IMAP connection timed out",
        "imap CONNECTION TIMED OUT after 30 s",
        "LOGIN failed: invalid credentials",
        "Server unavailable, try again later",
        "KeyError: 'uidvalidity'",
        "100% of 50_000 messages: disk full",
        "",
    ]
    return [
        make_job(status=JobStatus.FAILED, last_error_detail=detail)
        for detail in details
        for _ in range(2)
    ]


@pytest.mark.parametrize(
    "term", ["timed out", "TIMED", "uidval", "100%", "50_000", "_", "%", "disk full", "zzz", "t"]
)
def test_text_search_equals_an_unindexed_scan(detail_jobs, term):
    expected = {job.pk for job in detail_jobs if term.lower() in job.last_error_detail.lower()}
    assert ids({"q": term}) == expected
    with no_index_scans():
        assert ids({"q": term}) == expected


# --- PostgreSQL: the indexes, and the plans that use them -------------------------------------


@pytest.fixture
def many_jobs(account):
    """20,000 jobs written by SQL, most with common details and payloads, a few rare ones."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Job._meta.db_table}
                (id, account_id, action, payload, labels, status, priority, run_at,
                 attempt_count, max_attempts, last_error_code, last_error_detail, worker,
                 cancel_requested_by, cancel_note, wait_reason, ignore_limit,
                 created_at, updated_at)
            SELECT 'job_' || lpad(i::text, 26, '0'), %(account)s, 'imap_sync_messages',
                CASE WHEN i %% 5000 = 7 THEN '{{"folder": "Quarantine-7"}}'::jsonb
                     ELSE jsonb_build_object('folder', 'INBOX', 'uid', i %% 97) END,
                '{{}}'::jsonb, 'failed', 0, now(), 1, 3, 'provider_timeout',
                CASE WHEN i %% 5000 = 3 THEN 'mailbox quota exceeded on shard zebra-' || i
                     WHEN i %% 3 = 0 THEN ''
                     ELSE 'IMAP connection timed out after ' || (i %% 60) || ' s' END,
                '', '', '', '', FALSE, now(), now()
            FROM generate_series(1, 20000) AS i
            """,
            {"account": account.pk},
        )
        # As autovacuum leaves a live table: GIN indexes take new entries into a pending list
        # (fastupdate) that every search reads whole until vacuum merges it, so just after a
        # bulk insert the planner rightly prefers a scan. VACUUM cannot run in the test's
        # transaction; this merge can.
        for index in sql.SEARCH_INDEXES:
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index.name])
        cursor.execute(f"ANALYZE {Job._meta.db_table}")


def plan(queryset) -> str:
    return queryset.explain()


@postgres_only
def test_the_migration_built_both_indexes(db):
    with connection.cursor() as cursor:
        assert sql.missing_search_indexes(cursor) == []
    assert search_indexes(None, databases=["default"]) == []


@postgres_only
def test_a_rare_payload_is_found_through_its_gin_index(many_jobs, account):
    params = normalize_filter_params({"payload": {"folder": "Quarantine-7"}})
    queryset = filter_jobs(Job.objects.all(), params)
    assert "job_payload_gin" in plan(queryset)
    assert queryset.count() == 4
    # As the API's list runs it: the account's jobs, newest first, one page.
    page = filter_jobs(Job.objects.filter(account_id=account.pk), params).order_by("-id")[:50]
    assert "job_payload_gin" in plan(page)


@postgres_only
def test_a_rare_term_is_found_through_the_trigram_index(many_jobs, account):
    params = normalize_filter_params({"q": "zebra"})
    queryset = filter_jobs(Job.objects.all(), params)
    assert "job_error_detail_trgm" in plan(queryset)
    assert queryset.count() == 4
    page = filter_jobs(Job.objects.filter(account_id=account.pk), params).order_by("-id")[:50]
    assert "job_error_detail_trgm" in plan(page)


@postgres_only
def test_a_missing_index_is_a_warning_with_what_to_do(db):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX job_error_detail_trgm")
        (warning,) = search_indexes(None, databases=["default"])
        assert warning.id == "jobs.W001"
        assert "job_error_detail_trgm" in warning.msg
        assert "jobs_search_indexes" in warning.hint
        transaction.set_rollback(True)


@postgres_only
def test_where_pg_trgm_cannot_be_created_it_says_what_to_do(db):
    """A user without the right to create the extension: no error, a message saying what to
    do (inside the test's transaction, rolled back: the extension and its index come back)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DROP EXTENSION pg_trgm CASCADE")
            cursor.execute("CREATE ROLE jobs_test_no_create")
            cursor.execute("SET ROLE jobs_test_no_create")
        schema, problem = sql.create_trigram_extension(connection)
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
        assert schema is None
        assert "CREATE EXTENSION pg_trgm;" in problem
        assert "manage.py jobs_search_indexes" in problem
        assert "permission denied" in problem
        transaction.set_rollback(True)
    with connection.cursor() as cursor:
        assert sql.missing_search_indexes(cursor) == []
