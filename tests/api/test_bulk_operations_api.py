"""POST/GET /api/bulk-operations and /cancel: 202 with the operation, 200 for a dry run,
account keys confined to their own account (404 for any other), cross-account for operators
only, read-only keys 403, Idempotency-Key, and the job's audit query over HTTP."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from jobs import services
from jobs.models import BulkOperation, Job
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

URL = "/api/bulk-operations"


@pytest.fixture(autouse=True)
def unpaced(settings):
    settings.JOBS_BULK_DEFAULT_RATE = 0
    settings.JOBS_BULK_BATCH_SIZE = 2


def body(account_id, **extra):
    return {"command": "retry", "filter": {"status": "failed"}, "account_id": account_id, **extra}


def test_an_account_key_runs_an_operation_on_its_own_account(api, keys, account, other_account):
    mine = [JobFactory(account=account, status=S.FAILED) for _ in range(3)]
    theirs = JobFactory(account=other_account, status=S.FAILED)
    dry = api.post(URL, body(account.pk, dry_run=True), key=keys.a)
    assert dry.status_code == 200 and dry.json() == {"matched": 3, "dry_run": True}
    assert not BulkOperation.objects.exists()

    started = api.post(URL, body(account.pk, note="back", pace=None), key=keys.a)
    assert started.status_code == 202, started.content
    data = started.json()
    assert data["status"] == "running" and data["account_id"] == account.pk
    assert data["progress"]["matched"] == 3 and data["progress"]["remaining"] == 3
    services.bulk_operation_run(data["id"])
    shown = api.get(f"{URL}/{data['id']}", key=keys.a).json()
    assert shown["status"] == "succeeded"
    assert shown["progress"] | {"rate": None} == {
        "matched": 3,
        "done": 3,
        "skipped": 0,
        "skipped_by_reason": {},
        "failed": 0,
        "remaining": 0,
        "rate": None,
        "eta_seconds": 0.0,
    }
    assert all(Job.objects.get(pk=j.pk).status == S.QUEUED for j in mine)
    assert Job.objects.get(pk=theirs.pk).status == S.FAILED
    listed = api.get(URL, key=keys.a).json()["results"]
    assert [op["id"] for op in listed] == [data["id"]]
    assert api.get(URL, key=keys.b).json()["results"] == []

    # The job's own audit query finds the operation's batch.
    events = api.get(f"/api/audit-events?job_id={mine[0].pk}", key=keys.a).json()["results"]
    assert [e["command"] for e in events] == ["retry"]
    assert events[0]["data"]["bulk_operation_id"] == data["id"]


def test_another_accounts_operation_or_account_is_a_404(api, keys, account, other_account):
    JobFactory(account=other_account, status=S.FAILED)
    response = api.post(URL, body(other_account.pk), key=keys.a)
    assert response.status_code == 404
    operation = services.bulk_operation_create(
        command="retry", filters={}, account_id=other_account.pk, actor=services_actor()
    )
    for path in (f"{URL}/{operation.pk}",):
        assert api.get(path, key=keys.a).status_code == 404
    cancel = api.post(f"{URL}/{operation.pk}/cancel", {}, key=keys.a)
    assert cancel.status_code == 404
    assert error_of(cancel)["message"] == error_of(api.get(f"{URL}/bop_nothing", key=keys.a))[
        "message"
    ].replace("bop_nothing", operation.pk)


def services_actor():
    from core.actors import Actor

    return Actor.system("test")


def test_only_operators_may_act_across_accounts(api, keys, account, other_account):
    JobFactory(account=account, status=S.FAILED)
    JobFactory(account=other_account, status=S.FAILED)
    refused = api.post(URL, body(None), key=keys.a)
    assert refused.status_code == 403
    assert "account_id null" in error_of(refused)["message"]
    started = api.post(URL, body(None, pace=None), key=keys.op)
    assert started.status_code == 202
    assert started.json()["account_id"] is None and started.json()["progress"]["matched"] == 2
    # An account key never sees an operation across accounts.
    assert api.get(f"{URL}/{started.json()['id']}", key=keys.a).status_code == 404


def test_read_only_keys_get_403(api, keys, account):
    assert api.post(URL, body(account.pk), key=keys.a_ro).status_code == 403
    assert api.post(URL, body(None), key=keys.op_ro).status_code == 403
    operation = services.bulk_operation_create(
        command="retry", filters={}, account_id=account.pk, actor=services_actor()
    )
    assert api.post(f"{URL}/{operation.pk}/cancel", {}, key=keys.a_ro).status_code == 403
    assert api.get(f"{URL}/{operation.pk}", key=keys.a_ro).status_code == 200


def test_cancel_answers_the_operation_then_409_with_its_status(api, keys, account):
    JobFactory(account=account, status=S.FAILED)
    started = api.post(URL, body(account.pk), key=keys.a).json()
    cancelled = api.post(f"{URL}/{started['id']}/cancel", {"note": "provider down"}, key=keys.a)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.post(f"{URL}/{started['id']}/cancel", {}, key=keys.a)
    assert again.status_code == 409
    assert error_of(again)["current_status"] == "cancelled"


def test_bad_bodies_name_the_field(api, keys, account):
    cases = [
        ({"command": "update"}, "command"),
        (body(account.pk, command="resolve", note="n"), "code"),
        (body(account.pk, command="resolve", code="fixed"), "note"),
        (body(account.pk, filter={"status": "nonsense"}), "status"),
        (body(account.pk, filter={"nope": 1}), "filter"),
        (body(account.pk, pace={"rate": 0}), "pace"),
        (body(account.pk, pace={"rate": 5, "window_seconds": 5}), "pace"),
        (body(account.pk, pace={"rate": "5"}), "pace"),
        (body(account.pk, command="delete", filter={}), "filter"),
        (body(account.pk, command="resolve", code="fixed", note="n", pace={"rate": 1}), "pace"),
        (body("acc_bad"), "account_id"),
        (body(account.pk, unknown=1), "unknown"),
    ]
    for sent, field in cases:
        response = api.post(URL, sent, key=keys.a)
        assert response.status_code == 400, (sent, response.content)
        error = error_of(response)
        assert field in error.get("fields", {}) or field in str(error), (sent, error)
    assert not BulkOperation.objects.exists()


def test_idempotency_key_replays_without_a_second_operation(api, keys, account):
    JobFactory(account=account, status=S.FAILED)
    headers = {"Idempotency-Key": "bulk-1"}
    first = api.post(URL, body(account.pk), key=keys.a, headers=headers)
    again = api.post(URL, body(account.pk), key=keys.a, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert BulkOperation.objects.count() == 1
    assert AuditEvent.objects.filter(command="bulk_create").count() == 1


def test_a_staff_user_needs_the_commands_permission(api, account, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    api.client.force_login(user)
    JobFactory(account=account, status=S.FAILED)
    refused = api.post(URL, body(account.pk))
    assert refused.status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="retry_job"))
    user = django_user_model.objects.get(pk=user.pk)
    api.client.force_login(user)
    assert api.post(URL, body(account.pk)).status_code == 202


def test_every_bulk_command_names_a_staff_permission():
    from jobs.api import BULK_PERMISSIONS
    from jobs.states import BULK_COMMANDS

    assert set(BULK_PERMISSIONS) == set(BULK_COMMANDS)


def test_a_staff_user_needs_the_cancel_permission_for_a_bulk_cancel(
    api, account, django_user_model
):
    """A bulk cancel (of running jobs) takes jobs.cancel_job, as POST /api/jobs/:id/cancel does:
    403 in the JSON shape without it (was a KeyError, a 500), 202 with it; cancelling that
    operation takes the same permission."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("canceller", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    api.client.force_login(user)
    running = JobFactory(account=account, status=S.RUNNING)
    cancel_body = {"command": "cancel", "filter": {"status": "running"}, "account_id": account.pk}
    refused = api.post(URL, cancel_body)
    assert refused.status_code == 403, refused.content
    assert error_of(refused)["code"] == "permission_denied"
    assert "jobs.cancel_job" in error_of(refused)["message"]
    assert not BulkOperation.objects.exists()

    operation = services.bulk_operation_create(
        command="cancel",
        filters={"status": "running"},
        account_id=account.pk,
        actor=services_actor(),
    )
    refused = api.post(f"{URL}/{operation.pk}/cancel", {})
    assert refused.status_code == 403, refused.content
    assert error_of(refused)["code"] == "permission_denied"

    user.user_permissions.add(Permission.objects.get(codename="cancel_job"))
    api.client.force_login(django_user_model.objects.get(pk=user.pk))
    assert api.post(f"{URL}/{operation.pk}/cancel", {}).json()["status"] == "cancelled"
    started = api.post(URL, {**cancel_body, "note": "provider down"})
    assert started.status_code == 202, started.content
    services.bulk_operation_run(started.json()["id"])
    assert api.get(f"{URL}/{started.json()['id']}").json()["progress"]["done"] == 1
    assert Job.objects.get(pk=running.pk).cancel_requested_by == "user:canceller"
