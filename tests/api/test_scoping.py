"""The scoping matrix: keys of account A, account B, an operator key, read-only keys and no key,
against every endpoint and the objects of both accounts. Outside its scope a caller gets 404
with the same body as a missing id; read-only keys get 403 on writes; no key gets 401; and in
none of these cases does anything change."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from accounts.models import Account
from core.models import AuditEvent, IdempotencyRecord
from jobs.models import Job, ProviderEvent, Schedule, Task
from jobs.services import _rows
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory, TaskFactory

pytestmark = pytest.mark.django_db

MISSING = {
    "acc": "acc_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "job": "job_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "tsk": "tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "evt": "evt_01HZZZZZZZZZZZZZZZZZZZZZZZ",
    "sch": "sch_01HZZZZZZZZZZZZZZZZZZZZZZZ",
}

# (method, path template, body, write?, operator only?)
ENDPOINTS = [
    ("GET", "/api/accounts/{acc}", None, False, False),
    ("POST", "/api/accounts/{acc}/pause", {"reason": "x"}, True, True),
    ("POST", "/api/accounts/{acc}/resume", {}, True, True),
    ("GET", "/api/accounts/{acc}/jobs", None, False, False),
    ("POST", "/api/accounts/{acc}/jobs/search", {"status": "failed"}, False, False),  # a read
    (
        "POST",
        "/api/accounts/{acc}/jobs/search-delete",
        {"status": "failed", "expected_count": 1},  # the world's one failed job per account
        True,
        False,
    ),
    ("GET", "/api/accounts/{acc}/tasks", None, False, False),
    ("POST", "/api/accounts/{acc}/tasks", {"kind": "noop_batch", "params": {}}, True, False),
    ("GET", "/api/accounts/{acc}/provider-events", None, False, False),
    (
        "POST",
        "/api/accounts/{acc}/provider-events",
        {"provider": "imap", "type": "mailbox.changed", "external_id": "new-1"},
        True,
        False,
    ),
    ("GET", "/api/jobs/{job}", None, False, False),
    ("PATCH", "/api/jobs/{job}", {"priority": 5}, True, False),
    ("DELETE", "/api/jobs/{job}", None, True, False),
    ("POST", "/api/jobs/{job}/retry", {}, True, False),
    ("POST", "/api/jobs/{job}/resolve", {"code": "ignored", "note": "n"}, True, False),
    ("POST", "/api/jobs/{job}/trigger", {}, True, False),
    ("POST", "/api/jobs/{job}/cancel", {"note": "stop"}, True, False),
    ("GET", "/api/tasks/{tsk}", None, False, False),
    ("GET", "/api/provider-events/{evt}", None, False, False),
    ("GET", "/api/accounts/{acc}/schedules", None, False, False),
    (
        "POST",
        "/api/accounts/{acc}/schedules",
        {"kind": "noop_batch", "interval_seconds": 600},
        True,
        False,
    ),
    ("GET", "/api/accounts/{acc}/schedules/{sch}", None, False, False),
    ("PATCH", "/api/accounts/{acc}/schedules/{sch}", {"interval_seconds": 900}, True, False),
    ("DELETE", "/api/accounts/{acc}/schedules/{sch}", None, True, False),
    ("POST", "/api/accounts/{acc}/schedules/{sch}/pause", {}, True, False),
    ("POST", "/api/accounts/{acc}/schedules/{sch}/resume", {}, True, False),
    ("POST", "/api/accounts/{acc}/schedules/{sch}/run-now", {}, True, False),
]
IDS = [f"{method} {path}" for method, path, *_ in ENDPOINTS]


@pytest.fixture
def world(account, other_account):
    """A failed job, a task, a provider event and a (paused) schedule in each account."""
    objects = {}
    for name, acc in (("a", account), ("b", other_account)):
        task = TaskFactory(account=acc)
        event = ProviderEvent.objects.create(
            account=acc, provider="imap", type="mailbox.changed", external_id=f"seen-{name}"
        )
        job = JobFactory(account=acc, status=S.FAILED, task=task, provider_event=event)
        schedule = Schedule.objects.create(
            account=acc, kind="mailbox_sync", interval_seconds=300, next_run_at=timezone.now()
        )
        # Paused, so that resume succeeds for its owner (and pause is a 409 after that).
        Schedule.objects.filter(pk=schedule.pk).update(paused_at=timezone.now())
        objects[name] = {
            "acc": acc.pk,
            "job": job.pk,
            "tsk": task.pk,
            "evt": event.pk,
            "sch": schedule.pk,
        }
    return objects


def snapshot() -> tuple:
    """Everything a request could have changed."""
    return (
        sorted(Job.objects.values_list("pk", "status", "priority", "updated_at")),
        sorted(Account.objects.values_list("pk", "paused_at")),
        sorted(Schedule.objects.values_list("pk", "paused_at", "next_run_at", "updated_at")),
        Task.objects.count(),
        ProviderEvent.objects.count(),
        AuditEvent.objects.count(),
        IdempotencyRecord.objects.count(),
    )


def call(api, method, template, body, ids, key):
    path = template.format(**ids)
    # An Idempotency-Key on every call shows that refused requests leave no record behind.
    kwargs = {"key": key, "headers": {"Idempotency-Key": uuid.uuid4().hex}}
    if body is not None:
        kwargs["body"] = body
    return api.call(method, path, **kwargs)


@pytest.mark.parametrize(
    ("method", "template", "body", "write", "operator_only"), ENDPOINTS, ids=IDS
)
def test_another_accounts_objects_are_404_like_missing_ones(
    api, keys, world, method, template, body, write, operator_only
):
    for key, foreign in ((keys.a, world["b"]), (keys.b, world["a"]), (keys.a_ro, world["b"])):
        before = snapshot()
        response = call(api, method, template, body, foreign, key)
        if operator_only or (write and key == keys.a_ro):
            # Refused for what the key is, whichever object is named: reveals nothing.
            assert response.status_code == 403, (key, response.content)
        else:
            assert response.status_code == 404, (key, response.content)
            missing = call(api, method, template, body, MISSING, key)
            assert missing.status_code == 404
            # The same body as a missing id, apart from the id itself.
            foreign_error, missing_error = error_of(response), error_of(missing)
            assert foreign_error["code"] == missing_error["code"] == "not_found"
            message = foreign_error["message"]
            for kind, value in foreign.items():
                message = message.replace(value, MISSING[kind])
            assert message == missing_error["message"]
            assert set(foreign_error) == set(missing_error)
        assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "template", "body", "write", "operator_only"), ENDPOINTS, ids=IDS
)
def test_read_only_key_reads_its_own_and_is_refused_writes(
    api, keys, world, method, template, body, write, operator_only
):
    before = snapshot()
    response = call(api, method, template, body, world["a"], keys.a_ro)
    if write:
        assert response.status_code == 403, response.content
        assert error_of(response)["code"] in {"read_only_key", "operator_only"}
        assert snapshot() == before
    elif operator_only:
        assert response.status_code == 403
    else:
        assert response.status_code == 200, response.content
    op_ro = call(api, method, template, body, world["b"], keys.op_ro)
    assert op_ro.status_code == (403 if write else 200), op_ro.content
    if write:
        assert error_of(op_ro)["code"] == "read_only_key"


@pytest.mark.parametrize(
    ("method", "template", "body", "write", "operator_only"), ENDPOINTS, ids=IDS
)
def test_no_key_or_a_bad_key_is_401(api, keys, world, method, template, body, write, operator_only):
    before = snapshot()
    for key in (None, "jc_aaaaaaaaaa_wrong", "not-a-key"):
        response = call(api, method, template, body, world["a"], key)
        assert response.status_code == 401, (key, response.content)
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert error_of(response)["code"] in {"not_authenticated", "authentication_failed"}
    assert snapshot() == before


@pytest.mark.parametrize(
    ("method", "template", "body", "write", "operator_only"), ENDPOINTS, ids=IDS
)
def test_owner_and_operator_keys_succeed(
    api, keys, world, method, template, body, write, operator_only
):
    ok = {200, 201, 202, 204}
    if template.endswith("/cancel"):  # only a running job can be cancelled
        jobs = Job.objects.filter(pk__in=[world["a"]["job"], world["b"]["job"]])
        jobs.update(status=S.RUNNING)
        # Counted in their tasks, as a claim would have (jobs.services._rows).
        _rows.refresh_task_statuses(jobs.values_list("task_id", flat=True))
    if template.endswith("/pause") and "{sch}" in template:
        # The world's schedules start paused: resume them, so that pausing them succeeds.
        for ids in (world["a"], world["b"]):
            Schedule.objects.filter(pk=ids["sch"]).update(paused_at=None)
    if not operator_only:
        own = call(api, method, template, body, world["a"], keys.a)
        assert own.status_code in ok, own.content
    if template.endswith("/resume") and "{sch}" not in template:
        call(api, "POST", "/api/accounts/{acc}/pause", {}, world["b"], keys.op)
    response = call(api, method, template, body, world["b"], keys.op)
    assert response.status_code in ok, response.content


def test_lists_never_show_another_accounts_rows(api, keys, world):
    b = world["b"]
    audit = api.get("/api/audit-events", key=keys.a).json()["results"]
    assert audit and all(event["account_id"] == world["a"]["acc"] for event in audit)
    filtered = api.get(f"/api/audit-events?account_id={b['acc']}", key=keys.a).json()
    assert filtered["results"] == []
    by_job = api.get(f"/api/audit-events?job_id={b['job']}", key=keys.a).json()
    assert by_job["results"] == []
    operator = api.get(f"/api/audit-events?account_id={b['acc']}", key=keys.op).json()
    assert operator["results"] and all(e["account_id"] == b["acc"] for e in operator["results"])
    # A search by another account's job id inside one's own account finds nothing.
    found = api.post(
        f"/api/accounts/{world['a']['acc']}/jobs/search", {"q": b["job"]}, key=keys.a
    ).json()
    assert found["results"] == []


def test_account_list_and_create_are_for_operators(api, keys, world):
    before = snapshot()
    for key in (keys.a, keys.b):
        assert api.get("/api/accounts", key=key).status_code == 403
        response = api.post("/api/accounts", {"name": "x"}, key=key)
        assert response.status_code == 403
        assert error_of(response)["code"] == "operator_only"
    assert api.post("/api/accounts", {"name": "x"}, key=keys.op_ro).status_code == 403
    assert api.get("/api/accounts").status_code == 401
    assert snapshot() == before
    listed = api.get("/api/accounts", key=keys.op).json()["results"]
    assert {world["a"]["acc"], world["b"]["acc"]} <= {a["id"] for a in listed}
    assert api.get("/api/accounts", key=keys.op_ro).status_code == 200
