"""Every answer under /api/ is JSON, whoever produced the error: DRF, Django (CSRF, 400, 404,
405, 413, a Host it refuses, 500) or the routing; only a staff session asking for HTML gets the
browsable API (issue 13, finding 5). Error messages never echo unbounded client input."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.api.conftest import error_of
from tests.factories import JobFactory
from tests.state import snapshot

pytestmark = pytest.mark.django_db

BIG = "x" * 3_000_000


@pytest.fixture
def job(account):
    from jobs.states import JobStatus

    return JobFactory(account=account, status=JobStatus.FAILED)


@pytest.fixture
def staff(db, django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("root", "r@example.test", "pw-1-for-tests")


def hostile_requests(job, keys):
    """(name, client kind, method, path, body, content type, headers)."""
    job_path = f"/api/jobs/{job.pk}"
    acc = job.account_id
    key = {"Authorization": f"Bearer {keys.a}"}
    html = {"Accept": "text/html"}
    return [
        ("unknown path", "key", "GET", "/api/nothing/here", "", None, key),
        ("unknown path, POST", "key", "POST", "/api/nothing", "{}", None, key),
        ("unknown path, POST, session", "csrf", "POST", "/api/nothing", "{}", None, {}),
        ("unknown path, no key", "plain", "DELETE", "/api/x/y/z", "", None, {}),
        ("/api itself", "plain", "GET", "/api", "", None, {}),
        ("trailing slash", "key", "GET", f"{job_path}/", "", None, key),
        ("405", "key", "PUT", job_path, '{"priority": 1}', None, key),
        ("405 on a command", "key", "GET", f"{job_path}/retry", "", None, key),
        ("413", "key", "POST", f"{job_path}/retry", json.dumps({"note": BIG}), None, key),
        ("415", "key", "POST", f"{job_path}/retry", "note=x", "text/plain", key),
        ("415, huge type", "key", "POST", f"{job_path}/retry", "x", "a/" + "b" * 10_000, key),
        ("malformed JSON", "key", "POST", f"{job_path}/retry", '{"note": ', None, key),
        ("deep JSON", "key", "POST", f"{job_path}/retry", "[" * 10_000, None, key),
        ("NUL", "key", "POST", f"{job_path}/retry", '{"note": "\\u0000"}', None, key),
        ("NUL in query", "key", "GET", f"/api/accounts/{acc}/jobs?q=%00", "", None, key),
        ("not UTF-8", "key", "POST", f"{job_path}/retry", b'{"note": "\xff"}', None, key),
        ("format=api, key", "key", "GET", f"{job_path}x?format=api", "", None, key),
        (
            "format=api on a list",
            "key",
            "GET",
            f"/api/accounts/{acc}/jobs?format=api",
            "",
            None,
            key,
        ),
        ("Accept html, key", "key", "GET", "/api/jobs/notanid", "", None, {**key, **html}),
        ("Accept html, 401", "plain", "GET", job_path, "", None, html),
        ("format=api, 401", "plain", "GET", f"{job_path}?format=api", "", None, {}),
        (
            "bad key, html",
            "plain",
            "GET",
            job_path,
            "",
            None,
            {"Authorization": "Bearer x", **html},
        ),
        ("session, no staff", "user", "GET", job_path, "", None, html),
        ("session write without CSRF", "csrf", "POST", f"{job_path}/retry", "{}", None, {}),
        ("Host refused", "plain", "GET", job_path, "", None, {"Host": "evil.example"}),
        ("malformed id", "key", "GET", "/api/jobs/notanid", "", None, key),
        ("unknown id", "key", "GET", "/api/jobs/job_doesnotexist000000000000", "", None, key),
        ("read-only key writes", "ro", "PATCH", job_path, '{"priority": 1}', None, {}),
        (
            "too many fields",
            "key",
            "GET",
            f"/api/accounts/{acc}/jobs?" + "&".join(f"q{i}=1" for i in range(1_100)),
            "",
            None,
            key,
        ),
        (
            "bad Idempotency-Key",
            "key",
            "POST",
            f"{job_path}/retry",
            "{}",
            None,
            {**key, "Idempotency-Key": "\x00"},
        ),
        (
            "10,000 unknown fields",
            "key",
            "POST",
            f"{job_path}/retry",
            json.dumps({f"field{i}": 1 for i in range(10_000)}),
            None,
            key,
        ),
        (
            "echoed choice",
            "op",
            "POST",
            "/api/accounts",
            json.dumps({"name": "x", "imap": {"security": "s" * 60_000}}),
            None,
            {},
        ),
        (
            "echoed label key",
            "key",
            "PATCH",
            job_path,
            json.dumps({"labels": {"k" * 900: "v"}}),
            None,
            key,
        ),
    ]


def client_for(kind, keys, staff, django_user_model):
    if kind == "csrf":
        client = Client(enforce_csrf_checks=True)
        client.force_login(staff)
        return client, {}
    if kind == "user":
        client = Client()
        client.force_login(django_user_model.objects.create_user("someone", password="pw-1-x"))
        return client, {}
    extra = {"ro": keys.a_ro, "op": keys.op}.get(kind)
    return Client(), ({"Authorization": f"Bearer {extra}"} if extra else {})


def test_every_hostile_request_under_api_gets_the_json_error_shape(
    keys, job, staff, django_user_model
):
    before = snapshot()
    answered = []
    for name, kind, method, path, body, content_type, headers in hostile_requests(job, keys):
        client, auth = client_for(kind, keys, staff, django_user_model)
        client.raise_request_exception = False
        response = client.generic(
            method,
            path,
            data=body,
            content_type=content_type or "application/json",
            headers={**auth, **headers},
        )
        assert 400 <= response.status_code < 500, (
            name,
            response.status_code,
            response.content[:300],
        )
        assert response["Content-Type"] == "application/json", (name, response["Content-Type"])
        error = error_of(response)
        assert isinstance(error["code"], str) and isinstance(error["message"], str), name
        # Never unbounded: a message that quotes input quotes a bounded, escaped part of it.
        assert len(response.content) < 8_000, (name, len(response.content))
        answered.append((name, response.status_code, error["code"]))
    assert snapshot() == before
    codes = {name: (status, code) for name, status, code in answered}
    assert codes["413"] == (413, "request_too_large")
    assert codes["unknown path, POST, session"] == (404, "not_found")
    assert codes["Host refused"] == (400, "bad_request")
    assert codes["too many fields"] == (400, "bad_request")
    assert codes["Accept html, key"] == (406, "not_acceptable")
    assert codes["malformed id"] == (404, "not_found")
    assert codes["session write without CSRF"][0] == 403
    assert len(answered) == len(hostile_requests(job, keys))


def test_an_api_key_asking_for_the_browsable_api_gets_json(api, keys, job):
    for query, headers in (("?format=api", {}), ("", {"Accept": "text/html, */*;q=0.1"})):
        response = api.get(f"/api/jobs/{job.pk}{query}", key=keys.a, headers=headers)
        assert response.status_code == 200, response.content[:200]
        assert response["Content-Type"] == "application/json"
        assert response.json()["id"] == job.pk


def test_a_staff_session_asking_for_html_gets_the_browsable_api(client, staff, job):
    client.force_login(staff)
    for query, headers in (("?format=api", {}), ("", {"Accept": "text/html"})):
        page = client.get(f"/api/jobs/{job.pk}{query}", headers=headers)
        assert page.status_code == 200
        assert page["Content-Type"].startswith("text/html")
    # And JSON when it asks for JSON.
    data = client.get(f"/api/jobs/{job.pk}", headers={"Accept": "application/json"})
    assert data["Content-Type"] == "application/json"


def test_server_errors_under_api_are_json_and_elsewhere_pages(keys, job, monkeypatch):
    from jobs import selectors

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "job_get", broken)
    client = Client(raise_request_exception=False)
    response = client.get(f"/api/jobs/{job.pk}", headers={"Authorization": f"Bearer {keys.a}"})
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert error_of(response)["code"] == "internal_error"
    assert "a bug" not in response.content.decode()


def test_django_handlers_keep_their_pages_outside_the_api(rf):
    from django.core.exceptions import BadRequest

    from core.api import exceptions

    for handler, args in (
        (exceptions.api_bad_request, (BadRequest("x"),)),
        (exceptions.api_permission_denied, (None,)),
        (exceptions.api_page_not_found, (None,)),
        (exceptions.api_server_error, ()),
    ):
        page = handler(rf.get("/admin/"), *args)
        assert not page["Content-Type"].startswith("application/json"), handler
        answer = handler(rf.get("/api/jobs"), *args)
        assert answer["Content-Type"] == "application/json", handler
        assert set(json.loads(answer.content)) == {"error"}
    page = exceptions.csrf_failure(rf.post("/admin/login/"), reason="no token")
    assert page.status_code == 403 and page["Content-Type"].startswith("text/html")
    answer = exceptions.csrf_failure(rf.post("/api/jobs/x/retry"), reason="no token")
    assert (
        answer.status_code == 403 and json.loads(answer.content)["error"]["code"] == "csrf_failed"
    )


def test_the_admin_still_refuses_a_post_without_csrf_token(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post("/admin/logout/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_error_bodies_are_bounded_and_render_whatever_they_quote():
    from core.api.exceptions import MAX_FIELDS, MAX_MESSAGE, bounded

    body = bounded(
        {
            "error": {
                "code": "invalid",
                "message": "m\ud800" * 10_000,
                "fields": {f"f\x00{i}": ["v\udfff" * 1000] * 100 for i in range(1000)},
            }
        }
    )
    text = json.dumps(body, ensure_ascii=False).encode("utf-8")  # no lone surrogate left
    assert len(body["error"]["message"]) <= MAX_MESSAGE + 1
    assert len(body["error"]["fields"]) == MAX_FIELDS
    assert len(text) < 400_000
    assert "\\u0000" in next(iter(body["error"]["fields"]))
