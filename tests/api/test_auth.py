"""API keys: shown once, stored hashed, compared in constant time, revocable, last-used time;
the management command; staff sessions."""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from accounts import apikeys
from accounts.models import ApiKey
from core.actors import Actor
from jobs.states import JobStatus as S
from tests.api.conftest import error_of
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db
CLI = Actor.system("test")


def test_key_is_stored_as_a_hash_with_a_visible_prefix(account):
    key, raw = apikeys.api_key_create(account=account, actor=CLI, name="ci")
    scheme, prefix, secret = raw.split("_", 2)
    assert scheme == "jc" and prefix == key.prefix
    assert key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in key.secret_hash and raw not in str(ApiKey.objects.values().get())
    assert apikeys.authenticate(raw) == key


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"),  # wrong secret
        lambda raw: "jc_zzzzzzzzzz_" + raw.split("_", 2)[2],  # unknown prefix
        lambda raw: raw.replace("jc_", "xx_", 1),
        lambda raw: raw.split("_", 2)[0] + "_" + raw.split("_", 2)[1],  # no secret
        lambda raw: "",
    ],
)
def test_wrong_keys_do_not_authenticate(account, mangle):
    _, raw = apikeys.api_key_create(account=account, actor=CLI)
    assert apikeys.authenticate(mangle(raw)) is None


def test_revoked_key_is_401(api, account):
    key, raw = apikeys.api_key_create(account=account, actor=CLI)
    assert api.get(f"/api/accounts/{account.pk}", key=raw).status_code == 200
    apikeys.api_key_revoke(prefix=key.prefix, actor=CLI)
    response = api.get(f"/api/accounts/{account.pk}", key=raw)
    assert response.status_code == 401
    assert error_of(response)["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_last_used_is_written_at_most_once_a_minute(api, account):
    key, raw = apikeys.api_key_create(account=account, actor=CLI)
    assert key.last_used_at is None
    api.get(f"/api/accounts/{account.pk}", key=raw)
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    api.get(f"/api/accounts/{account.pk}", key=raw)
    key.refresh_from_db()
    assert key.last_used_at == first
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=2))
    api.get(f"/api/accounts/{account.pk}", key=raw)
    key.refresh_from_db()
    assert key.last_used_at > first - timedelta(seconds=1)


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"])
def test_malformed_authorization_is_401(account, header):
    response = Client().get(
        f"/api/accounts/{account.pk}", headers={"Authorization": header.encode().decode("latin-1")}
    )
    assert response.status_code == 401
    assert error_of(response)


def test_create_api_key_command_prints_a_working_key(api, account):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "--account", account.pk, "--read-only", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(prefix=raw.split("_")[1])
    assert key.account == account and key.read_only
    assert "shown once" in err.getvalue()
    assert api.get(f"/api/accounts/{account.pk}", key=raw).status_code == 200
    job = JobFactory(account=account, status=S.FAILED)
    assert api.post(f"/api/jobs/{job.pk}/retry", {}, key=raw).status_code == 403


def test_create_operator_key_command(api, account):
    out = io.StringIO()
    call_command(
        "create_api_key", "--operator", "--name", "oncall", stdout=out, stderr=io.StringIO()
    )
    key = ApiKey.objects.get(name="oncall")
    assert key.is_operator and not key.read_only
    assert api.get("/api/accounts", key=out.getvalue().strip()).status_code == 200


def test_create_api_key_command_errors(db):
    with pytest.raises(CommandError, match="not found"):
        call_command("create_api_key", "--account", "acc_nope", stdout=io.StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", stdout=io.StringIO(), stderr=io.StringIO())


def test_staff_session_works_and_follows_permissions(account):
    job = JobFactory(account=account, status=S.FAILED)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client(enforce_csrf_checks=False)
    client.force_login(viewer)
    assert client.get(f"/api/jobs/{job.pk}").status_code == 200
    refused = client.post(f"/api/jobs/{job.pk}/retry", "{}", content_type="application/json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "permission_denied"
    viewer.user_permissions.add(Permission.objects.get(codename="retry_job"))
    client.force_login(User.objects.get(pk=viewer.pk))
    allowed = client.post(f"/api/jobs/{job.pk}/retry", "{}", content_type="application/json")
    assert allowed.status_code == 200
    assert allowed.json()["status"] == "queued"


def test_non_staff_session_is_403(account):
    user = User.objects.create_user("someone", password="pw")
    client = Client()
    client.force_login(user)
    response = client.get(f"/api/accounts/{account.pk}")
    assert response.status_code == 403
    assert error_of(response)


def test_api_key_actions_are_audited_with_the_key_prefix(api, keys, account):
    job = JobFactory(account=account, status=S.FAILED)
    api.post(f"/api/jobs/{job.pk}/retry", {}, key=keys.a)
    event = api.get(f"/api/audit-events?job_id={job.pk}", key=keys.a).json()["results"][0]
    assert event["actor"] == f"key:{keys.a.split('_')[1]}" and event["actor_type"] == "api_key"
    assert timezone.now() - timedelta(minutes=1) < timezone.datetime.fromisoformat(
        event["created_at"]
    )
