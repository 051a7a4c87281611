"""The one input boundary (core.input): whatever a client sends to /api/ (JSON at any depth, query
strings, the headers the API reads, date-times, ids in the path) is checked before it is used.
A value the database could not store or a later read could not load is a 400 naming the field,
never a 500, and nothing is written (issue 13, findings 1, 3, 4 and 7)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote, unquote, urlencode

import pytest
from django.urls import reverse

from core.input import MAX_DEPTH, MAX_STRING, shown
from jobs.models import Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory, TaskFactory
from tests.state import snapshot

pytestmark = pytest.mark.django_db

NUL_AND_SURROGATES = ["\u0000", "a\u0000b", "tail\u0000", "\ud800", "x\udfff", "\udbffA", "\udc00"]


@pytest.fixture
def world(account):
    from jobs.models import ProviderEvent

    task = TaskFactory(account=account)
    event = ProviderEvent.objects.create(
        account=account, provider="imap", type="mailbox.changed", external_id="seen"
    )
    job = JobFactory(account=account, status=S.FAILED, task=task, provider_event=event)
    return {"acc": account.pk, "job": job.pk, "tsk": task.pk, "evt": event.pk}


def put(path: list, value):
    """A body with `value` at `path` (keys of nested objects; ints index a list)."""
    body = value
    for step in reversed(path):
        body = [0] * step + [body] if isinstance(step, int) else {step: body}
    return body


# (method, path template, the rest of a valid body, where the hostile value goes)
JSON_FIELDS = [
    ("PATCH", "/api/jobs/{job}", {}, ["payload", "a", "b"]),
    ("PATCH", "/api/jobs/{job}", {}, ["payload", "list", 1]),
    ("PATCH", "/api/jobs/{job}", {}, ["labels", "team"]),
    ("POST", "/api/jobs/{job}/retry", {}, ["note"]),
    ("POST", "/api/jobs/{job}/resolve", {"code": "ignored"}, ["note"]),
    ("POST", "/api/jobs/{job}/trigger", {}, ["note"]),
    *[
        ("POST", f"/api/accounts/{{acc}}/jobs/{endpoint}", {}, [name])
        for endpoint in ("search", "search-delete")
        for name in (
            "q",
            "status",
            "action",
            "last_error_code",
            "task_id",
            "provider_event_id",
            "label",
        )
    ],
    ("POST", "/api/accounts/{acc}/jobs/search", {}, ["action", 1]),
    ("POST", "/api/accounts/{acc}/jobs/search", {}, ["cursor"]),
    ("POST", "/api/accounts/{acc}/tasks", {"kind": "mailbox_sync"}, ["params", "folders", 0]),
    ("POST", "/api/accounts/{acc}/tasks", {}, ["kind"]),
    (
        "POST",
        "/api/accounts/{acc}/provider-events",
        {"provider": "imap", "type": "mailbox.changed", "external_id": "e-1"},
        ["payload", "folders", 0],
    ),
    (
        "POST",
        "/api/accounts/{acc}/provider-events",
        {"provider": "imap", "type": "mailbox.changed"},
        ["external_id"],
    ),
    ("POST", "/api/accounts", {"name": "x"}, ["imap", "security"]),
    ("POST", "/api/accounts", {"name": "x"}, ["imap", "host"]),
    ("POST", "/api/accounts", {}, ["name"]),
    ("POST", "/api/accounts/{acc}/pause", {}, ["reason"]),
]
JSON_ENDPOINTS = sorted({(method, template) for method, template, _, _ in JSON_FIELDS})


def field_name(path: list) -> str:
    return ".".join(str(step) for step in path)


def send(api, key, method, template, ids, body=None, raw=None):
    headers = {"Idempotency-Key": uuid.uuid4().hex} if method == "POST" else {}
    kwargs = {"key": key, "headers": headers}
    if raw is not None:
        kwargs["raw"] = raw
    else:
        kwargs["body"] = body
    return api.call(method, template.format(**ids), **kwargs)


@pytest.mark.parametrize("value", NUL_AND_SURROGATES, ids=repr)
@pytest.mark.parametrize(
    ("method", "template", "rest", "path"),
    JSON_FIELDS,
    ids=[f"{m} {t} {field_name(p)}" for m, t, _, p in JSON_FIELDS],
)
def test_nul_and_lone_surrogates_in_json_strings_are_400_naming_the_path(
    api, keys, world, method, template, rest, path, value
):
    before = snapshot()
    body = {**rest, **put(path, value)}
    response = send(api, keys.op, method, template, world, body)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert field_name(path) in error["fields"], error
    assert snapshot() == before


@pytest.mark.parametrize("value", ["\u0000", "k\ud800", "\udfffk"], ids=repr)
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"payload": {"VALUE": 1}}, "payload"),
        ({"payload": {"a": [{"VALUE": 1}]}}, "payload.a.0"),
        ({"labels": {"VALUE": "x"}}, "labels"),
        ({"VALUE": 1}, "non_field_errors"),
    ],
)
def test_nul_and_lone_surrogates_in_keys_are_400(api, keys, world, body, field, value):
    before = snapshot()
    raw = json.dumps(body).replace("VALUE", json.dumps(value)[1:-1])
    response = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, raw=raw)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert snapshot() == before


def test_the_issues_account_with_a_surrogate_is_a_plain_400(api, keys):
    before = snapshot()
    raw = '{"name": "x", "imap": {"security": "\\ud800"}}'
    response = api.post("/api/accounts", raw=raw, key=keys.op)
    assert response.status_code == 400
    assert "imap.security" in error_of(response)["fields"]
    assert snapshot() == before


def test_strings_over_the_limit_and_numbers_out_of_range_are_400(api, keys, world):
    before = snapshot()
    long = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, {"payload": {"a": "x" * 65_537}})
    assert long.status_code == 400 and "payload.a" in error_of(long)["fields"]
    assert MAX_STRING == 65_536
    for number in ("1e400", "-1e400"):
        raw = f'{{"payload": {{"a": [{number}]}}}}'
        response = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, raw=raw)
        assert response.status_code == 400, number
        assert "payload.a.0" in error_of(response)["fields"]
    for constant in ("NaN", "Infinity", "-Infinity"):
        raw = f'{{"payload": {{"a": {constant}}}}}'
        response = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, raw=raw)
        assert response.status_code == 400 and error_of(response)["code"] == "malformed_json"
    task = send(
        api,
        keys.a,
        "POST",
        "/api/accounts/{acc}/tasks",
        world,
        raw='{"kind": "noop_batch", "params": {"count": 1e999}}',
    )
    assert task.status_code == 400 and "params.count" in error_of(task)["fields"]
    assert snapshot() == before


def deep(levels: int, kind: str) -> str:
    return (
        ("[" * levels + "]" * levels)
        if kind == "array"
        else ('{"a":' * levels + "1" + "}" * levels)
    )


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 100, 10_000])
@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize(("method", "template"), JSON_ENDPOINTS)
def test_json_nested_too_deep_is_400_on_every_json_endpoint(
    api, keys, world, method, template, levels, kind
):
    before = snapshot()
    response = send(api, keys.op, method, template, world, raw=deep(levels, kind))
    assert response.status_code == 400, response.content[:300]
    assert error_of(response)["code"] == "too_deep"
    # Inside a field too, and with brackets in strings that do not count.
    inner = f'{{"payload": {deep(levels, kind)}, "note": "[[[[{{{{"}}'
    response = send(api, keys.op, method, template, world, raw=inner)
    assert response.status_code == 400 and error_of(response)["code"] == "too_deep"
    assert snapshot() == before


def test_json_nested_to_the_limit_is_taken(api, keys, world):
    # The body is one level: a payload nested MAX_DEPTH - 1 more reaches the limit exactly.
    payload = json.loads(deep(MAX_DEPTH - 1, "object"))
    text = json.dumps({"payload": payload}) + " " * 10
    assert text.count("{") == MAX_DEPTH
    response = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, raw=text)
    assert response.status_code == 200, response.content
    assert Job.objects.get(pk=world["job"]).payload == payload
    # Brackets inside strings are text, not nesting.
    brackets = {"payload": {"text": "[" * 5000 + "{" * 5000, "esc": '\\"[[[['}}
    response = send(api, keys.a, "PATCH", "/api/jobs/{job}", world, brackets)
    assert response.status_code == 200, response.content[:300]


@pytest.mark.parametrize(
    "body",
    [
        "[]" * 40 + '"' + '\\"' * 1_200_000,  # a string never closed, full of escaped quotes
        "[" + "[]," * 300_000 + "[]]",  # 300,000 flat arrays
        '{"a": "' + "[{" * 1_000_000 + '"}',  # brackets inside a string
    ],
    ids=["unclosed string", "flat arrays", "brackets in a string"],
)
def test_the_depth_check_is_linear_on_the_largest_bodies(api, keys, world, body):
    import time

    before = snapshot()
    started = time.perf_counter()
    response = send(api, keys.a, "POST", "/api/jobs/{job}/retry", world, raw=body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 400, response.content[:200]
    # A scan that retried at every quote took hours on the first body; the linear one, well under
    # a second (json.loads and the walk take about as long again).
    assert elapsed < 10, elapsed
    assert snapshot() == before


@pytest.mark.parametrize(("method", "template"), JSON_ENDPOINTS)
def test_a_body_over_the_limit_is_a_json_413(api, keys, world, settings, method, template):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = snapshot()
    body = {"note": "x" * 20_000}
    response = send(api, keys.op, method, template, world, body)
    assert response.status_code == 413, response.content[:300]
    assert error_of(response)["code"] == "request_too_large"
    assert snapshot() == before


def test_the_default_limit_is_a_413_too(api, keys, world):
    before = snapshot()
    body = json.dumps({"note": "x" * 3_000_000})
    response = send(api, keys.a, "POST", "/api/jobs/{job}/retry", world, raw=body)
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert snapshot() == before


# --- query strings -------------------------------------------------------------------------------

LIST_PATHS = [
    "/api/accounts/{acc}/jobs",
    "/api/accounts/{acc}/tasks",
    "/api/accounts/{acc}/provider-events",
    "/api/audit-events",
    "/api/accounts",
    "/api/jobs/{job}",
    "/api/tasks/{tsk}",
]
HOSTILE_QUERIES = [
    ("action=a%00b", "action"),
    ("label=team:%00", "label"),
    ("command=a%00b", "command"),
    ("q=%00", "q"),
    ("cursor=%00", "cursor"),
    ("limit=5%00", "limit"),
    ("status=%ED%A0%80", "status"),  # an encoded surrogate: not UTF-8
    ("action=%FF", "action"),
    ("action=%C3", "action"),  # a truncated sequence
    ("task_id=a\x00b", "task_id"),  # raw, not percent-encoded
    ("a%00b=1", "query_string"),
    ("%ED%A0%80=1", "query_string"),
    ("n" * 101 + "=1", "query_string"),
    ("q=" + "x" * 4097, "q"),
]


@pytest.mark.parametrize(
    ("query", "field"), HOSTILE_QUERIES, ids=[q[:30] for q, _ in HOSTILE_QUERIES]
)
@pytest.mark.parametrize("template", LIST_PATHS)
def test_hostile_query_strings_are_400_naming_the_parameter(
    api, keys, world, template, query, field
):
    before = snapshot()
    response = api.get(f"{template.format(**world)}?limit=5&{query}", key=keys.op)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert snapshot() == before


def test_hostile_query_strings_in_the_admin_are_a_400_page(client, django_user_model, world):
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    for path in ("/admin/jobs/job/", "/admin/core/auditevent/", "/admin/accounts/account/"):
        for query in ("q=a%00b", "action=a%00b", "status=%ED%A0%80"):
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query)
            assert not response["Content-Type"].startswith("application/json")


def test_nul_in_an_admin_path_or_form_is_a_400_page(client, django_user_model, world):
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    before = snapshot()
    job = world["job"]
    retry = reverse("admin:jobs_job_command", args=[job, "retry"])
    requests = [
        ("GET", "/admin/jobs/job/a%00b/change/", None),
        (
            "POST",
            "/admin/jobs/job/",
            {"action": "retry_jobs", "index": 0, "_selected_action": ["a\x00b", job]},
        ),
        ("POST", retry, {"note": "a\x00b"}),
        ("POST", f"/admin/jobs/job/{job}/change/", {"priority": "1", "payload": "{}\x00"}),
        ("POST", "/admin/accounts/account/add/", {"name": "x\x00"}),
    ]
    for method, path, data in requests:
        response = client.get(path) if method == "GET" else client.post(path, data)
        assert response.status_code == 400, (path, response.status_code)
    # The test client posts multipart forms; a urlencoded one is read the same way.
    urlencoded = "application/x-www-form-urlencoded"
    refused = client.post(retry, urlencode({"note": "a\x00b"}), content_type=urlencoded)
    assert refused.status_code == 400
    assert snapshot() == before
    taken = client.post(retry, urlencode({"note": "fine"}), content_type=urlencoded)
    assert taken.status_code == 302
    assert Job.objects.get(pk=job).status == S.QUEUED


def test_fine_unicode_in_query_strings_is_taken(api, keys, world):
    for text in ("é", "日本", "😀", "a+b", "%25"):
        response = api.get(f"/api/accounts/{world['acc']}/jobs?q={quote(text)}", key=keys.a)
        assert response.status_code == 200, (text, response.content)


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer jc_aaaaaaaaa\x00_secret",
        "Bearer jc_aaaaaaaaaa_se\x00cret",
        "Bearer jc_é_x",
        "Bearer \x7f",
    ],
    ids=repr,
)
def test_unprintable_api_keys_are_401(api, world, authorization):
    before = snapshot()
    for method, path in (("GET", "/api/jobs/{job}"), ("POST", "/api/jobs/{job}/retry")):
        response = api.call(
            method, path.format(**world), {}, headers={"Authorization": authorization}
        )
        assert response.status_code == 401, response.content
        assert error_of(response)["code"] == "authentication_failed"
    assert snapshot() == before


@pytest.mark.parametrize("idempotency_key", ["a\x00b", "é", "", "\t", "k" * 256], ids=repr)
def test_bad_idempotency_keys_are_400_naming_the_header(api, keys, world, idempotency_key):
    before = snapshot()
    response = api.post(
        f"/api/jobs/{world['job']}/retry",
        {},
        key=keys.a,
        headers={"Idempotency-Key": idempotency_key},
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in error_of(response)["fields"]
    assert snapshot() == before


# --- date-times ----------------------------------------------------------------------------------

# Valid ISO 8601 whose UTC instant lies outside the years 1 to 9999.
OUT_OF_RANGE = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00.000001+00:01",
    "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T13:59:59+14:00",
]
DATETIME_FILTERS = [
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
    "run_at_after",
    "run_at_before",
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_patch_run_at_out_of_range_is_400_and_writes_nothing(api, keys, world, value):
    before = snapshot()
    response = api.patch(f"/api/jobs/{world['job']}", {"run_at": value}, key=keys.a)
    assert response.status_code == 400, response.content
    assert "run_at" in error_of(response)["fields"]
    assert snapshot() == before
    # The job still reads, and so does its list (the committed 500 of finding 1).
    assert api.get(f"/api/jobs/{world['job']}", key=keys.a).status_code == 200
    assert api.get(f"/api/accounts/{world['acc']}/jobs", key=keys.a).status_code == 200


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("name", DATETIME_FILTERS)
def test_filter_datetimes_out_of_range_are_400_naming_them(api, keys, world, name, value):
    before = snapshot()
    acc = world["acc"]
    listed = api.get(f"/api/accounts/{acc}/jobs?{urlencode({name: value})}", key=keys.a)
    assert listed.status_code == 400 and name in error_of(listed)["fields"], listed.content
    for endpoint, extra in (("search", {}), ("search-delete", {"expected_count": 1})):
        body = {name: value, "status": "failed", **extra}
        response = api.post(f"/api/accounts/{acc}/jobs/{endpoint}", body, key=keys.a)
        assert response.status_code == 400, (endpoint, response.content)
        assert name in error_of(response)["fields"]
    assert snapshot() == before


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("name", ["created_after", "created_before"])
def test_audit_filter_datetimes_out_of_range_are_400(api, keys, world, name, value):
    response = api.get(f"/api/audit-events?{urlencode({name: value})}", key=keys.a)
    assert response.status_code == 400 and name in error_of(response)["fields"]


def test_naive_run_at_stays_refused(api, keys, world):
    before = snapshot()
    response = api.patch(f"/api/jobs/{world['job']}", {"run_at": "2030-01-01T00:00:00"}, key=keys.a)
    assert response.status_code == 400 and "run_at" in error_of(response)["fields"]
    assert snapshot() == before


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
def test_the_utc_extremes_are_taken_and_every_page_still_reads(
    api, keys, world, client, django_user_model, value
):
    response = api.patch(f"/api/jobs/{world['job']}", {"run_at": value}, key=keys.a)
    assert response.status_code == 200, response.content
    stored = Job.objects.get(pk=world["job"]).run_at
    assert stored.isoformat().startswith(value[:19])
    assert api.get(f"/api/jobs/{world['job']}", key=keys.a).status_code == 200
    acc = world["acc"]
    for query in ("", f"?run_at_after={quote(value)}", f"?run_at_before={quote(value)}"):
        assert api.get(f"/api/accounts/{acc}/jobs{query}", key=keys.a).status_code == 200
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    for page in (
        f"/admin/jobs/job/{world['job']}/change/",
        "/admin/jobs/job/",
        f"/admin/jobs/job/?account={acc}&status=failed",
    ):
        assert client.get(page).status_code == 200, page


def test_a_run_at_converted_to_utc_is_stored_in_utc(api, keys, world):
    response = api.patch(
        f"/api/jobs/{world['job']}", {"run_at": "2030-01-01T10:00:00+14:00"}, key=keys.a
    )
    assert response.status_code == 200
    assert response.json()["run_at"] == "2029-12-31T20:00:00Z"


def test_the_admin_job_form_refuses_a_run_at_out_of_range(
    client, django_user_model, world, settings
):
    # The admin's widgets give a naive date-time in the current time zone: at +14:00, the first
    # minutes of year 1 have no UTC instant.
    settings.TIME_ZONE = "Etc/GMT-14"  # UTC+14:00 at every date (POSIX signs are reversed)
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    before = snapshot()
    response = client.post(
        f"/admin/jobs/job/{world['job']}/change/",
        {
            "priority": "0",
            "run_at_0": "0001-01-01",
            "run_at_1": "00:00:00",
            "max_attempts": "3",
            "payload": "{}",
            "labels": "{}",
            "attempts-TOTAL_FORMS": "0",
            "attempts-INITIAL_FORMS": "0",
            "_continue": "1",
        },
    )
    assert response.status_code == 200  # the form again, with the error
    assert "outside the years 1 to 9999" in response.content.decode()
    assert snapshot() == before


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"a": "\\u0000"}', "$.a: contains a NUL character"),
        ('{"a": ["\\ud800"]}', "$.a.0: contains a lone surrogate"),
        ('{"\\u0000": 1}', "has a key that contains a NUL"),
        ("[" * 10_000 + "]" * 10_000, "nested deeper than 32 levels"),
        ('{"a": 1e400}', "$.a: is a number out of range"),
    ],
)
def test_the_admin_json_fields_take_the_same_rules(client, django_user_model, world, text, words):
    user = django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")
    client.force_login(user)
    job = Job.objects.get(pk=world["job"])
    before = snapshot()
    for field in ("payload", "labels"):
        data = {
            "priority": "0",
            "run_at_0": job.run_at.strftime("%Y-%m-%d"),
            "run_at_1": job.run_at.strftime("%H:%M:%S"),
            "max_attempts": "3",
            "payload": "{}",
            "labels": "{}",
            "attempts-TOTAL_FORMS": "0",
            "attempts-INITIAL_FORMS": "0",
            "_continue": "1",
        }
        data[field] = text
        response = client.post(f"/admin/jobs/job/{job.pk}/change/", data)
        assert response.status_code == 200, field
        assert words in response.content.decode(), field
    assert snapshot() == before


# --- ids in the path -----------------------------------------------------------------------------

MISSING = {
    "acc": "acc_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "job": "job_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "tsk": "tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "evt": "evt_01HZZZZZZZZZZZZZZZZZZZZZZZ",
}
MALFORMED = [
    "notanid",
    "job_doesnotexist000000000000",
    "job_01hzzzzzzzzzzzzzzzzzzzzzzz",
    "acc_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "job_01HZZZZZZZZZZZZZZZZZZZZZZZZ",
    "42",
    "a%00b",
    "%ED%A0%80",
    "x" * 3000,
]
PATH_ENDPOINTS = [
    ("GET", "/api/jobs/{job}", None),
    ("PATCH", "/api/jobs/{job}", {"priority": 1}),
    ("DELETE", "/api/jobs/{job}", None),
    ("POST", "/api/jobs/{job}/retry", {}),
    ("POST", "/api/jobs/{job}/resolve", {"code": "ignored", "note": "n"}),
    ("POST", "/api/jobs/{job}/trigger", {}),
    ("GET", "/api/tasks/{tsk}", None),
    ("GET", "/api/provider-events/{evt}", None),
    ("GET", "/api/accounts/{acc}", None),
    ("POST", "/api/accounts/{acc}/pause", {}),
    ("GET", "/api/accounts/{acc}/jobs", None),
    ("POST", "/api/accounts/{acc}/jobs/search", {}),
    ("POST", "/api/accounts/{acc}/jobs/search-delete", {"status": "failed", "expected_count": 1}),
    ("GET", "/api/accounts/{acc}/tasks", None),
    ("POST", "/api/accounts/{acc}/tasks", {"kind": "mailbox_sync"}),
    ("GET", "/api/accounts/{acc}/provider-events", None),
]


@pytest.mark.parametrize("bad", MALFORMED, ids=lambda bad: bad[:30])
@pytest.mark.parametrize(("method", "template", "body"), PATH_ENDPOINTS)
def test_a_malformed_id_in_the_path_is_the_404_of_an_unknown_id(
    api, keys, world, method, template, body, bad
):
    kind = template.split("{")[1].split("}")[0]
    try:
        as_received = unquote(bad, errors="strict")
    except UnicodeDecodeError:
        as_received = bad  # Django keeps a path that is not UTF-8 percent-encoded
    before = snapshot()
    # Pausing is for operators: an account key is refused it (403) whatever the id.
    for key in (keys.op,) if template.endswith("/pause") else (keys.a, keys.op):
        kwargs = {"key": key} if body is None else {"key": key, "body": body}
        response = api.call(method, template.format(**{kind: bad}), **kwargs)
        missing = api.call(method, template.format(**{kind: MISSING[kind]}), **kwargs)
        assert response.status_code == missing.status_code == 404, response.content[:200]
        error, missing_error = error_of(response), error_of(missing)
        assert set(error) == set(missing_error) and error["code"] == "not_found"
        # The same message apart from the id, which is quoted bounded and escaped.
        quoted = shown(as_received, 64)
        assert error["message"].replace(quoted, MISSING[kind]) == missing_error["message"]
        assert len(error["message"]) < 200
    assert snapshot() == before


def test_malformed_ids_in_filters_are_400_naming_them(api, keys, world):
    # In a filter a malformed id is bad input, as the schema's id pattern says (a path's is a
    # 404: it names an object).
    acc = world["acc"]
    for name in ("task_id", "provider_event_id"):
        response = api.get(f"/api/accounts/{acc}/jobs?{name}=notanid", key=keys.a)
        assert response.status_code == 400 and name in response.json()["error"]["fields"]
        own_id = world["tsk" if name == "task_id" else "evt"]
        right = api.get(f"/api/accounts/{acc}/jobs?{name}={own_id}", key=keys.a)
        assert [j["id"] for j in right.json()["results"]] == [world["job"]]
