"""The schedules API: `/api/accounts/:account_id/schedules` and its commands, strict input,
scoping (404 for another account's schedule, also under one's own account's path), read-only
keys refused writes."""

from __future__ import annotations

import pytest

from core.models import AuditEvent
from jobs.models import Schedule, Task
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

MISSING = "sch_01HZZZZZZZZZZZZZZZZZZZZZZZ"


def base(account) -> str:
    return f"/api/accounts/{account.pk}/schedules"


def create(api, account, key, **body):
    body = {"kind": "mailbox_sync", "interval_seconds": 300, **body}
    return api.post(base(account), body, key=key)


def test_create_get_list_update_delete(api, keys, account):
    created = create(api, account, keys.a, params={"folders": ["INBOX"]})
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["id"].startswith("sch_")
    assert data["account_id"] == account.pk
    assert data["interval_seconds"] == 300
    assert data["cron"] is None
    assert data["timezone"] == "UTC"
    assert data["paused"] is False
    assert data["last_outcome"] is None
    assert data["params"] == {"folders": ["INBOX"]}
    url = f"{base(account)}/{data['id']}"
    assert api.get(url, key=keys.a).json() == data
    listed = api.get(base(account), key=keys.a).json()
    assert [s["id"] for s in listed["results"]] == [data["id"]]
    updated = api.patch(url, {"cron": "0 9 * * mon-fri", "timezone": "Europe/Riga"}, key=keys.a)
    assert updated.status_code == 200, updated.content
    assert updated.json()["interval_seconds"] is None
    assert updated.json()["cron"] == "0 9 * * mon-fri"
    deleted = api.delete(url, key=keys.a)
    assert deleted.status_code == 204
    assert api.get(url, key=keys.a).status_code == 404
    commands = set(AuditEvent.objects.values_list("command", flat=True))
    assert {"schedule_create", "schedule_update", "schedule_delete"} <= commands


def test_pause_resume_and_run_now(api, keys, account):
    schedule_id = create(api, account, keys.a).json()["id"]
    url = f"{base(account)}/{schedule_id}"
    paused = api.post(f"{url}/pause", {"reason": "migration"}, key=keys.a)
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    assert paused.json()["paused_reason"] == "migration"
    again = api.post(f"{url}/pause", {}, key=keys.a)
    assert again.status_code == 409
    assert error_of(again)["current_status"] == "paused"
    ran = api.post(f"{url}/run-now", {}, key=keys.a)
    assert ran.status_code == 200, ran.content
    body = ran.json()
    assert body["last_outcome"] == "created"
    task = Task.objects.get(pk=body["last_task_id"])
    assert body["last_task_status"] == task.status == "pending"
    coalesced = api.post(f"{url}/run-now", {}, key=keys.a).json()
    assert coalesced["last_outcome"] == "coalesced"
    assert coalesced["last_job_id"].startswith("job_")
    assert coalesced["last_task_id"] is None
    resumed = api.post(f"{url}/resume", {}, key=keys.a)
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert api.post(f"{url}/resume", {}, key=keys.a).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "mailbox_sync"}, "interval_seconds"),
        ({"kind": "mailbox_sync", "interval_seconds": 59}, "interval_seconds"),
        ({"kind": "mailbox_sync", "interval_seconds": "300"}, "interval_seconds"),
        ({"kind": "mailbox_sync", "interval_seconds": 300, "cron": "* * * * *"}, "cron"),
        ({"kind": "mailbox_sync", "cron": "*/5 * * *"}, "cron"),
        ({"kind": "mailbox_sync", "cron": "61 * * * *"}, "cron"),
        ({"kind": "mailbox_sync", "cron": "0 0 30 2 *"}, "cron"),
        ({"kind": "mailbox_sync", "cron": "@hourly"}, "cron"),
        ({"kind": "mailbox_sync", "cron": "* * * * *", "timezone": "Nowhere/Void"}, "timezone"),
        (
            {"kind": "mailbox_sync", "interval_seconds": 60, "next_run_at": "tomorrow"},
            "next_run_at",
        ),
        ({"kind": "no_such_kind", "interval_seconds": 300}, "kind"),
        ({"kind": "noop_batch", "interval_seconds": 300, "params": {"count": 0}}, "params"),
        ({"kind": "mailbox_sync", "interval_seconds": 300, "extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, keys, account, body, field):
    response = api.post(base(account), body, key=keys.a)
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"], error_of(response)
    assert not Schedule.objects.exists()


def test_one_schedule_per_kind_is_a_409(api, keys, account):
    assert create(api, account, keys.a).status_code == 201
    second = create(api, account, keys.a, interval_seconds=600)
    assert second.status_code == 409
    assert error_of(second)["code"] == "schedule_exists"


def test_kind_and_params_cannot_change(api, keys, account):
    schedule_id = create(api, account, keys.a).json()["id"]
    response = api.patch(f"{base(account)}/{schedule_id}", {"params": {}}, key=keys.a)
    assert response.status_code == 400
    assert error_of(response)["code"] == "immutable_field"
    assert "params" in error_of(response)["fields"]


def test_another_accounts_schedule_is_404_like_a_missing_one(api, keys, account, other_account):
    foreign = create(api, other_account, keys.b).json()["id"]
    own_schedule = create(api, account, keys.a).json()["id"]
    before = list(Schedule.objects.values_list("pk", "next_run_at", "paused_at", "updated_at"))
    for method, suffix, body in [
        ("GET", "", None),
        ("PATCH", "", {"interval_seconds": 900}),
        ("DELETE", "", None),
        ("POST", "/pause", {}),
        ("POST", "/resume", {}),
        ("POST", "/run-now", {}),
    ]:
        kwargs = {"key": keys.a} | ({"body": body} if body is not None else {})
        # Under the other account's path, and under one's own with the other's schedule id.
        for path in (f"{base(other_account)}/{foreign}", f"{base(account)}/{foreign}"):
            response = api.call(method, path + suffix, **kwargs)
            assert response.status_code == 404, (method, path, response.content)
            assert other_account.pk not in response.content.decode() or path.startswith(
                base(other_account)
            )
        missing = api.call(method, f"{base(account)}/{MISSING}{suffix}", **kwargs)
        assert missing.status_code == 404
        # An operator names the account of the path: another account's schedule is not there.
        under_wrong = api.call(
            method, f"{base(account)}/{foreign}{suffix}", **kwargs | {"key": keys.op}
        )
        assert under_wrong.status_code == 404
    assert (
        list(Schedule.objects.values_list("pk", "next_run_at", "paused_at", "updated_at")) == before
    )
    assert api.get(base(other_account), key=keys.a).status_code == 404
    assert (
        api.post(
            base(other_account), {"kind": "mailbox_sync", "interval_seconds": 60}, key=keys.a
        ).status_code
        == 404
    )
    listed = api.get(base(account), key=keys.a).json()["results"]
    assert [s["id"] for s in listed] == [own_schedule]


def test_read_only_keys_read_but_do_not_write(api, keys, account):
    schedule_id = create(api, account, keys.a).json()["id"]
    url = f"{base(account)}/{schedule_id}"
    for key in (keys.a_ro, keys.op_ro):
        assert api.get(url, key=key).status_code == 200
        assert api.get(base(account), key=key).status_code == 200
        for method, path, body in [
            ("POST", base(account), {"kind": "noop_batch", "interval_seconds": 60}),
            ("PATCH", url, {"interval_seconds": 900}),
            ("DELETE", url, None),
            ("POST", f"{url}/pause", {}),
            ("POST", f"{url}/run-now", {}),
        ]:
            kwargs = {"key": key} | ({"body": body} if body is not None else {})
            response = api.call(method, path, **kwargs)
            assert response.status_code == 403, (method, path, response.content)
            assert error_of(response)["code"] == "read_only_key"
    assert Schedule.objects.count() == 1
    assert not Task.objects.exists()


def test_no_key_is_401(api, account):
    assert api.get(base(account)).status_code == 401
    assert (
        api.post(base(account), {"kind": "mailbox_sync", "interval_seconds": 60}).status_code == 401
    )


@pytest.mark.parametrize(
    "cron", ["*/5 * * * *\n", " */5 * * * *", "*/5  * * * *", "*/5 * * * * *", "0 0 30 4 *"]
)
def test_patch_refuses_what_the_schema_refuses(api, keys, account, cron):
    """PATCH reads its body with jobs.rules alone: the same cron rule as the schema's pattern
    (a final newline, extra spaces, a sixth field, a refused late day)."""
    schedule_id = create(api, account, keys.a).json()["id"]
    response = api.patch(f"{base(account)}/{schedule_id}", {"cron": cron}, key=keys.a)
    assert response.status_code == 400, response.content
    assert "cron" in error_of(response)["fields"]
