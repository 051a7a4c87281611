"""Accounts, tasks, provider events and the audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Account
from core.models import AuditEvent
from jobs import services
from jobs.models import Job, ProviderEvent, Task
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

# --- accounts ----------------------------------------------------------------------------------


def test_operator_creates_an_account_and_the_password_is_write_only(api, keys):
    body = {
        "name": "Support mailbox",
        "email": "support@example.test",
        "imap": {
            "host": "imap.example.test",
            "port": 993,
            "security": "tls",
            "username": "support",
            "password": "s3cret-pw",
            "folders": ["INBOX", "Archive"],
        },
    }
    response = api.post("/api/accounts", body, key=keys.op)
    assert response.status_code == 201, response.content
    data = response.json()
    assert "s3cret-pw" not in response.content.decode()
    assert data["imap"]["password_set"] is True and "password" not in data["imap"]
    assert data["imap"]["folders"] == ["INBOX", "Archive"]
    account = Account.objects.get(pk=data["id"])
    assert account.imap_password_encrypted and "s3cret-pw" not in account.imap_password_encrypted
    shown = api.get(f"/api/accounts/{account.pk}", key=keys.op)
    assert "s3cret-pw" not in shown.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "email": "not-an-email"}, "email"),
        ({"name": "x", "imap": {"port": 70000}}, "imap.port"),
        ({"name": "x", "imap": {"security": "ssl3"}}, "imap.security"),
        ({"name": "x", "imap": {"colour": "red"}}, "imap.colour"),
        ({"name": "x", "plan": "gold"}, "plan"),
    ],
)
def test_account_create_bad_input(api, keys, body, field):
    before = Account.objects.count()
    response = api.post("/api/accounts", body, key=keys.op)
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert Account.objects.count() == before


def test_pause_and_resume(api, keys, account):
    paused = api.post(
        f"/api/accounts/{account.pk}/pause", {"reason": "provider outage"}, key=keys.op
    )
    assert paused.status_code == 200
    assert paused.json()["paused"] is True and paused.json()["paused_reason"] == "provider outage"
    again = api.post(f"/api/accounts/{account.pk}/pause", {}, key=keys.op)
    assert again.status_code == 409 and error_of(again)["code"] == "already_paused"
    resumed = api.post(f"/api/accounts/{account.pk}/resume", {}, key=keys.op)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert api.post(f"/api/accounts/{account.pk}/resume", {}, key=keys.op).status_code == 409
    commands = AuditEvent.objects.filter(account_id=account.pk).values_list("command", flat=True)
    assert {"pause", "resume"} <= set(commands)


def test_account_key_sees_its_own_account_only(api, keys, account, other_account):
    assert api.get(f"/api/accounts/{account.pk}", key=keys.a).json()["id"] == account.pk
    assert api.get(f"/api/accounts/{other_account.pk}", key=keys.a).status_code == 404
    assert api.post(f"/api/accounts/{account.pk}/pause", {}, key=keys.a).status_code == 403
    account.refresh_from_db()
    assert not account.is_paused


# --- tasks -------------------------------------------------------------------------------------


def test_task_create_list_and_show_with_derived_status(api, keys, account):
    response = api.post(
        f"/api/accounts/{account.pk}/tasks",
        {"kind": "noop_batch", "params": {"count": 3}},
        key=keys.a,
    )
    assert response.status_code == 201, response.content
    task = response.json()
    assert task["status"] == "pending" and task["job_counts"] == {"queued": 3}
    for job_id in Job.objects.filter(task_id=task["id"]).values_list("pk", flat=True):
        run = services.job_claim(job_id=job_id, worker="w")
        services.job_succeed(job_id=job_id, attempt=run.number, result=None)
    shown = api.get(f"/api/tasks/{task['id']}", key=keys.a).json()
    assert shown["job_counts"] == {"succeeded": 3} and shown["status"] == "succeeded"
    listed = api.get(f"/api/accounts/{account.pk}/tasks", key=keys.a).json()
    assert [t["id"] for t in listed["results"]] == [task["id"]]
    assert listed["results"][0]["job_counts"] == {"succeeded": 3}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "no_such_kind"}, "kind"),
        ({}, "kind"),
        ({"kind": "noop_batch", "params": {"count": 0}}, "params"),
        ({"kind": "noop_batch", "params": []}, "params"),
        ({"kind": 5}, "kind"),
    ],
)
def test_task_create_bad_input(api, keys, account, body, field):
    response = api.post(f"/api/accounts/{account.pk}/tasks", body, key=keys.a)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert not Task.objects.exists() and not Job.objects.exists()


def test_missing_task_is_404(api, keys):
    assert api.get("/api/tasks/tsk_01HZZZZZZZZZZZZZZZZZZZZZZZ", key=keys.a).status_code == 404


# --- provider events ---------------------------------------------------------------------------


def test_provider_event_new_is_201_with_jobs_and_duplicate_is_200_with_original(api, keys, account):
    body = {"provider": "imap", "type": "mailbox.changed", "external_id": "ev-1", "payload": {}}
    first = api.post(f"/api/accounts/{account.pk}/provider-events", body, key=keys.a)
    assert first.status_code == 201, first.content
    event = first.json()
    assert len(event["jobs"]) == 1 and event["jobs"][0]["action"] == "imap_sync_messages"
    assert event["job_id"] == event["jobs"][0]["id"]
    duplicate = api.post(
        f"/api/accounts/{account.pk}/provider-events", {**body, "payload": {"x": 1}}, key=keys.a
    )
    assert duplicate.status_code == 200
    assert duplicate.json()["id"] == event["id"] and duplicate.json()["payload"] == {}
    assert ProviderEvent.objects.count() == 1 and Job.objects.count() == 1
    shown = api.get(f"/api/provider-events/{event['id']}", key=keys.a).json()
    assert shown["id"] == event["id"]
    listed = api.get(f"/api/accounts/{account.pk}/provider-events", key=keys.a).json()
    assert [e["id"] for e in listed["results"]] == [event["id"]]


def test_a_second_event_joins_the_pending_sync(api, keys, account):
    path = f"/api/accounts/{account.pk}/provider-events"
    base = {"provider": "imap", "type": "message.created"}
    api.post(path, {**base, "external_id": "a"}, key=keys.a)
    second = api.post(path, {**base, "external_id": "b"}, key=keys.a).json()
    assert second["coalesced"] is True and second["jobs"] == []
    assert Job.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "imap", "type": "mailbox.exploded", "external_id": "x"}, "type"),
        ({"provider": "imap", "type": "mailbox.changed"}, "external_id"),
        (
            {"provider": "imap", "type": "mailbox.changed", "external_id": "x", "payload": 3},
            "payload",
        ),
    ],
)
def test_provider_event_bad_input(api, keys, account, body, field):
    response = api.post(f"/api/accounts/{account.pk}/provider-events", body, key=keys.a)
    assert response.status_code == 400
    assert field in error_of(response)["fields"]
    assert not ProviderEvent.objects.exists()


# --- audit log ---------------------------------------------------------------------------------


def test_audit_log_filters(api, keys, account):
    one = JobFactory(account=account, status=S.FAILED)
    two = JobFactory(account=account, status=S.FAILED)
    api.post(f"/api/jobs/{one.pk}/retry", {}, key=keys.a)
    api.post(f"/api/jobs/{two.pk}/resolve", {"code": "ignored", "note": "n"}, key=keys.op)

    def commands(query):
        response = api.get(f"/api/audit-events?{query}", key=keys.op)
        assert response.status_code == 200, response.content
        return [(e["command"], e["job_id"]) for e in response.json()["results"]]

    assert commands(f"job_id={one.pk}") == [("retry", one.pk)]
    assert commands(f"account_id={account.pk}&command=retry,resolve") == [
        ("resolve", two.pk),
        ("retry", one.pk),
    ]
    assert commands(f"actor=key:{keys.op.split('_')[1]}") == [("resolve", two.pk)]
    future = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert commands(f"created_after={future}") == []
    assert commands(f"created_before={future}&command=resolve") == [("resolve", two.pk)]
    bad = api.get("/api/audit-events?created_after=never", key=keys.op)
    assert bad.status_code == 400 and "created_after" in error_of(bad)["fields"]
