"""The IMAP password is write-only everywhere an account is written: no API answer (a 400 that
quotes a bad value included), no audit event, no admin page or error report shows it, in any
encoding."""

from __future__ import annotations

import html
import json
import logging

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.debug import SafeExceptionReporterFilter

from accounts.apikeys import api_key_create
from accounts.models import Account
from accounts.services import account_update
from core.actors import Actor
from core.models import AuditEvent
from tests.imap.secrecy import PASSWORDS, encodings, leaked, strings

USER = "box@example.test"


def imap(secret: str, **changes) -> dict:
    return {
        "host": "imap.example.test",
        "port": 993,
        "security": "tls",
        "username": USER,
        "password": secret,
        **changes,
    }


@pytest.fixture
def api(db) -> Client:
    _, raw_key = api_key_create(account=None, actor=Actor.system("test"))
    return Client(headers={"Authorization": f"Bearer {raw_key}"})


@pytest.fixture
def root(db, django_user_model, settings) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "r@x.test", "pw-1"))
    return client


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_api_answers_never_quote_the_password(api, kind, caplog):
    caplog.set_level(logging.DEBUG)
    secret = PASSWORDS[kind]
    bad = [
        imap(secret + "x" * 1000),  # too long
        imap(secret + "\x00"),
        imap(secret, security=secret),  # pasted into the wrong field: the 400 quotes it
        imap(secret, port=secret),
        imap(secret, folders=[secret + "\x00"]),
        {**imap(secret), secret: "x"},  # an unknown field named like it
    ]
    answers = [
        api.post("/api/accounts", {"name": "Box", "imap": body}, content_type="application/json")
        for body in bad
    ]
    created = api.post(
        "/api/accounts", {"name": "Box", "imap": imap(secret)}, content_type="application/json"
    )

    assert [a.status_code for a in answers] == [400] * len(bad)
    assert answers[2].json()["error"]["fields"] == {
        "imap.security": ['"***" is not a valid choice.']
    }
    assert created.status_code == 201, created.content
    assert created.json()["imap"]["password_set"] is True
    account_id = created.json()["id"]
    answers += [created, api.get(f"/api/accounts/{account_id}"), api.get("/api/accounts")]
    texts = {}
    for i, answer in enumerate(answers):
        texts[f"answer {i}"] = answer.content.decode()
        texts[f"answer {i} (decoded)"] = "\n".join(strings(answer.json()))
    texts["audit"] = "\n".join(strings(list(AuditEvent.objects.values())))
    texts["log"] = caplog.text
    assert leaked(texts, encodings(secret, USER)) == {}


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_account_updates_audit_which_fields_changed_never_the_password(db, kind):
    secret = PASSWORDS[kind]
    account = Account.objects.create(name="Box")

    account_update(account_id=account.pk, actor=Actor.system("test"), imap=imap(secret))

    event = AuditEvent.objects.get(command="update_account")
    assert "imap_password" in event.data["changed"]
    text = "\n".join([event.reason, json.dumps(event.data, ensure_ascii=False)])
    assert leaked({"audit": text}, encodings(secret, USER)) == {}


@pytest.mark.parametrize("kind", sorted(PASSWORDS))
def test_the_admin_form_shown_again_on_an_error_never_shows_the_password(root, db, kind):
    secret = PASSWORDS[kind]
    account = Account.objects.create(name="Box")
    page = reverse("admin:accounts_account_change", args=[account.pk])
    form = {
        "name": "Box",
        "email": "",
        "imap_host": "imap.example.test",
        "imap_port": "993",
        "imap_security": "tls",
        "imap_username": USER,
        "imap_password": secret,
        "imap_folders_text": "INBOX",
    }
    answers = [
        root.post(page, {**form, "imap_port": "not a port"}),
        root.post(page, {**form, "imap_password": secret + "x" * 1000}),
        root.post(page, {**form, "imap_security": secret}),  # quoted in "Select a valid choice"
    ]

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "Select a valid choice. *** is not one of" in answers[2].content.decode()
    texts = {}
    for i, answer in enumerate(answers):
        body = answer.content.decode()
        assert "errornote" in body  # shown again, with its errors
        texts[f"page {i}"] = body
        texts[f"page {i} (unescaped)"] = html.unescape(body)
    assert leaked(texts, encodings(secret, USER)) == {}
    account.refresh_from_db()
    assert account.imap_password_encrypted == ""


def test_the_admin_hides_the_typed_password_from_error_reports(db, django_user_model, settings):
    """Django's error reports (the DEBUG page, mail to ADMINS) list POST data: not this field."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    account = Account.objects.create(name="Box")
    request = RequestFactory().post(
        f"/admin/accounts/account/{account.pk}/change/",
        {"name": "", "imap_password": PASSWORDS["ascii"]},
    )
    request.user = django_user_model.objects.create_superuser("root", "r@x.test", "pw-1")
    request._dont_enforce_csrf_checks = True
    admin.site._registry[Account].changeform_view(request, str(account.pk))

    shown = SafeExceptionReporterFilter().get_post_parameters(request)
    assert shown["imap_password"] == SafeExceptionReporterFilter.cleansed_substitute
    assert shown["name"] == ""
