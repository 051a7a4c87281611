"""The OpenAPI schema states the rules the server enforces (issue 13, finding 8): at each edge of a
rule, the schema's verdict on a value and the server's agree. The values are picked at the
edges (schemathesis, in test_schemathesis.py, draws thousands more)."""

from __future__ import annotations

import json
from urllib.parse import quote

import jsonschema_rs
import pytest
from drf_spectacular.generators import SchemaGenerator

from jobs.states import JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


@pytest.fixture(scope="module")
def schema():
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


def _operation(schema, path, method):
    return schema["paths"][path][method]


def _parameter(schema, path, method, name):
    (found,) = [p for p in _operation(schema, path, method)["parameters"] if p["name"] == name]
    return found["schema"]


def _body(schema, path, method):
    node = _operation(schema, path, method)["requestBody"]["content"]["application/json"]
    return {**node["schema"], "components": schema["components"]}


def _valid(node, value) -> bool:
    return jsonschema_rs.validator_for(node).is_valid(value)


def test_the_schema_states_the_rules_it_missed(schema):
    jobs = "/api/accounts/{account_id}/jobs"
    limit = _parameter(schema, jobs, "get", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 200)
    search = schema["components"]["schemas"]["JobSearchInputRequest"]
    assert (search["properties"]["limit"]["minimum"], search["properties"]["limit"]["maximum"]) == (
        1,
        200,
    )
    assert search["additionalProperties"] is False
    key = _parameter(schema, "/api/jobs/{job_id}/retry", "post", "Idempotency-Key")
    assert key["pattern"].startswith("^[\\u0021-\\u007e]")
    for path, name, prefix in [
        ("/api/jobs/{job_id}", "job_id", "job"),
        ("/api/tasks/{task_id}", "task_id", "tsk"),
        (jobs, "account_id", "acc"),
        (jobs, "task_id", "tsk"),
        (jobs, "provider_event_id", "evt"),
        ("/api/audit-events", "account_id", "acc"),
    ]:
        method = "get"
        assert _parameter(schema, path, method, name)["pattern"].startswith(f"^{prefix}_"), name
    for name in ("status", "action", "last_error_code", "label"):
        items = _parameter(schema, jobs, "get", name)["items"]
        assert not _valid(items, "") and not _valid(items, "   "), name


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "1"),
        ("limit", "200"),
        ("limit", "0"),
        ("limit", "201"),
        ("limit", "ten"),
        ("cursor", f"n.job_{ULID}"),
        ("cursor", f"x.job_{ULID}"),
        ("cursor", "bjpqb2Jf"),
        ("task_id", f"tsk_{ULID}"),
        ("task_id", "tsk_nope"),
        ("provider_event_id", f"job_{ULID}"),
        ("status", "failed"),
        ("status", "exploded"),
        ("action", "noop"),
        ("label", "team:mail"),
        ("label", "te am:mail"),
        ("created_after", "2024-02-29T00:00:00Z"),
        ("created_after", "2023-02-29T00:00:00Z"),
        ("created_after", "2024-01-01T00:00:00+14:00"),
        ("attempt_count_min", "0"),
        ("attempt_count_min", "-1"),
    ],
)
def test_the_list_and_its_schema_agree(api, keys, account, schema, name, value):
    node = _parameter(schema, "/api/accounts/{account_id}/jobs", "get", name)
    typed: object = (
        int(value) if node.get("type") == "integer" and value.lstrip("-").isdigit() else value
    )
    expected = _valid(node, [typed] if node.get("type") == "array" else typed)
    response = api.get(f"/api/accounts/{account.pk}/jobs?{name}={quote(value)}", key=keys.a)
    assert (response.status_code == 200) == expected, (name, value, response.content[:200])


@pytest.mark.parametrize(
    "key",
    ["k", "k" * 255, "k" * 256, "a b", " a", "a ", "é", "a\tb", "~!"],
)
def test_the_idempotency_key_and_its_schema_agree(api, keys, account, schema, key):
    node = _parameter(schema, "/api/jobs/{job_id}/retry", "post", "Idempotency-Key")
    job = JobFactory(account=account, status=JobStatus.FAILED)
    response = api.post(
        f"/api/jobs/{job.pk}/retry", {}, key=keys.a, headers={"Idempotency-Key": key}
    )
    assert (response.status_code == 200) == _valid(node, key), (key, response.content[:200])


@pytest.mark.parametrize(
    "body",
    [
        {"priority": -1000},
        {"priority": 1001},
        {"priority": 5.0},
        {"priority": "5"},
        {"max_attempts": 100},
        {"max_attempts": 0},
        {"labels": {"team": "mail"}},
        {"labels": {"te am": "mail"}},
        {"labels": {f"k{n}": "v" for n in range(21)}},
        {"labels": {"team": 3}},
        {"payload": {"a": [1, {"b": None}]}},
        {"payload": []},
        {"run_at": "2030-01-01T00:00:00Z"},
        {"run_at": "2030-01-01T00:00:00"},
        {},
        {"status": "failed"},
    ],
)
def test_a_patch_and_its_schema_agree(api, keys, account, schema, body):
    node = _body(schema, "/api/jobs/{job_id}", "patch")
    job = JobFactory(account=account, status=JobStatus.FAILED)
    response = api.patch(f"/api/jobs/{job.pk}", body, key=keys.a)
    assert (response.status_code == 200) == _valid(node, body), (body, response.content[:200])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("resolve", {"code": "fixed.upstream", "note": "done"}),
        ("resolve", {"code": "Fixed", "note": "done"}),
        ("resolve", {"code": "fixed", "note": "   "}),
        ("resolve", {"code": "fixed", "note": "x" * 2000}),
        ("resolve", {"code": "fixed", "note": "x" * 2001}),
        ("trigger", {"force": True}),
        ("trigger", {"force": "true"}),
        ("retry", {"note": "again", "extra": 1}),
    ],
)
def test_a_command_and_its_schema_agree(api, keys, account, schema, path, body):
    node = _body(schema, f"/api/jobs/{{job_id}}/{path}", "post")
    job = JobFactory(account=account, status=JobStatus.FAILED)
    response = api.post(f"/api/jobs/{job.pk}/{path}", body, key=keys.a)
    assert (response.status_code == 200) == _valid(node, body), (body, response.content[:200])


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "noop_batch", "params": {"count": 2}},
        {"kind": "noop_batch", "params": {"count": 2.0}},
        {"kind": "noop_batch", "params": {"count": "2"}},
        {"kind": "noop_batch", "params": {"count": 10_001}},
        {"kind": "mailbox_sync", "params": {"folders": ["INBOX"]}},
        {"kind": "mailbox_sync", "params": {"folders": [""]}},
        {"kind": "nope"},
    ],
)
def test_a_task_and_its_schema_agree(api, keys, account, schema, body):
    node = _body(schema, "/api/accounts/{account_id}/tasks", "post")
    response = api.post(f"/api/accounts/{account.pk}/tasks", body, key=keys.a)
    assert (response.status_code == 201) == _valid(node, body), (body, response.content[:200])


@pytest.mark.parametrize(
    "body",
    [
        {"status": ["failed"], "dry_run": True},
        {"status": [], "dry_run": True},
        {"q": "  ", "dry_run": True},
        {"q": "timeout", "dry_run": True},
        {"dry_run": True},
        {"attempt_count_min": 0, "dry_run": True},
        {"action": 3, "dry_run": True},
    ],
)
def test_search_delete_and_its_schema_agree(api, keys, account, schema, body):
    node = _body(schema, "/api/accounts/{account_id}/jobs/search-delete", "post")
    path = f"/api/accounts/{account.pk}/jobs/search-delete"
    response = api.post(path, body, key=keys.a)
    assert (response.status_code == 200) == _valid(node, body), (body, response.content[:200])
