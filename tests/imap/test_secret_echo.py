"""The mailbox password is never stored or logged in any encoding, even when the server repeats
what it received: real imap_sync_messages jobs, run through the worker entry point, against a
server that echoes LOGIN and AUTHENTICATE (tests/imap/echo_server.py) and against pymap."""

from __future__ import annotations

import base64
import html
import logging
import secrets
import traceback

import pytest
from django.test import Client
from django.urls import reverse

from accounts.apikeys import api_key_create
from core.actors import Actor
from core.models import AuditEvent
from demo.mailservers import HOST
from jobs.execution.mailsync import sync_account, sync_hook
from jobs.execution.mailsync.client import ImapSession
from jobs.models import Job, JobAttempt
from tests.imap.conftest import run_sync
from tests.imap.echo_server import ECHOING, MODES, EchoServer
from tests.imap.secrecy import PASSWORDS, TOKEN, encodings, leaked, strings


def stored_texts() -> dict[str, str]:
    return {
        f"{model.__name__} rows": "\n".join(strings(list(model.objects.values())))
        for model in (Job, JobAttempt, AuditEvent)
    }


def answered_texts(job: Job, client: Client, admin: Client) -> dict[str, str]:
    answers = {
        "API job": client.get(f"/api/jobs/{job.pk}"),
        "API account jobs": client.get(f"/api/accounts/{job.account_id}/jobs"),
        "API search": client.post(
            f"/api/accounts/{job.account_id}/jobs/search", {}, content_type="application/json"
        ),
        "API audit events": client.get("/api/audit-events"),
        "admin job page": admin.get(reverse("admin:jobs_job_change", args=[job.pk])),
        "admin account page": admin.get(
            reverse("admin:accounts_account_change", args=[job.account_id])
        ),
        "admin audit log": admin.get(reverse("admin:core_auditevent_changelist")),
    }
    texts = {}
    for where, response in answers.items():
        assert response.status_code == 200, where
        body = response.content.decode()
        texts[where] = body
        if where.startswith("API"):
            texts[f"{where} (decoded)"] = "\n".join(strings(response.json()))
        else:
            texts[f"{where} (unescaped)"] = html.unescape(body)
    assert job.pk in texts["API job"] and job.pk in texts["admin job page"]
    return texts


def logged_texts(caplog) -> dict[str, str]:
    return {
        "log": "\n".join(
            [
                caplog.text,
                *(r.getMessage() for r in caplog.records),
                *(repr(r.args) for r in caplog.records),
                *(r.exc_text or "" for r in caplog.records),
            ]
        )
    }


@pytest.fixture(scope="session")
def echo_servers():
    with EchoServer(auth_plain=True) as plain, EchoServer(auth_plain=False) as bare:
        yield {True: plain, False: bare}


@pytest.fixture
def api_client(db) -> Client:
    _, raw_key = api_key_create(account=None, actor=Actor.system("test"))
    return Client(headers={"Authorization": f"Bearer {raw_key}"})


@pytest.fixture
def staff_client(db, django_user_model, settings) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-1")
    client = Client()
    client.force_login(user)
    return client


UNAVAILABLE_MODES = {"untagged_bye", "unterminated", "drop"}
# Echoes imaplib never reports: an untagged NO, and a BYE or a literal-looking line read while it
# still waits for the continuation of AUTHENTICATE or of a literal (it reports the EOF after).
ECHO_NOT_REPORTED = {
    ("untagged_no", "ascii", True),
    ("untagged_no", "non_ascii", True),
    ("untagged_no", "non_ascii", False),
    ("untagged_bye", "non_ascii", True),
    ("unterminated", "non_ascii", False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "auth_plain"),
    [("ascii", True), ("non_ascii", True), ("non_ascii", False)],
    ids=["ascii-LOGIN", "non_ascii-AUTHENTICATE", "non_ascii-LOGIN_literal"],
)
def test_a_server_repeating_the_login_never_gets_the_password_stored(
    mode, kind, auth_plain, echo_servers, make_imap_account, api_client, staff_client, caplog
):
    caplog.set_level(logging.DEBUG)
    server = echo_servers[auth_plain]
    secret = PASSWORDS[kind]
    user = f"{mode}@echo.test"
    account = make_imap_account(port=server.port, user=user, password=secret)
    before = len(server.received)

    job = run_sync(account)

    # The password is nowhere, in no encoding.
    texts = {
        **stored_texts(),
        **answered_texts(job, api_client, staff_client),
        **logged_texts(caplog),
    }
    assert leaked(texts, encodings(secret, user)) == {}
    # The server did receive the password (in the form the client chose)...
    received = server.received[before:]
    assert len(received) == 1, job.last_error_detail
    sent = {
        "ascii": encodings(secret, user)["IMAP quoted"].encode(),
        "non_ascii": (
            encodings(secret, user)["base64 of AUTHENTICATE PLAIN"].encode()
            if auth_plain
            else b"\r\n" + secret.encode()
        ),
    }[kind]
    assert sent in received[0]
    # ...the job failed with the error the server's answer calls for...
    expected = "provider_unavailable" if mode in UNAVAILABLE_MODES else "provider_auth_failed"
    assert job.last_error_code == expected, job.last_error_detail
    assert f"127.0.0.1:{server.port}" in job.last_error_detail
    # ...and no line that repeats the command is stored, only said to have been repeated.
    assert "you sent" not in job.last_error_detail
    if mode in ECHOING and (mode, kind, auth_plain) not in ECHO_NOT_REPORTED:
        assert "repeated our" in job.last_error_detail, job.last_error_detail
    if mode == "tagged_no":
        assert job.last_error_detail.endswith(
            "[AUTHENTICATIONFAILED] (the server's answer is not stored: it repeated our "
            f"{'AUTHENTICATE' if kind == 'non_ascii' and auth_plain else 'LOGIN'} command "
            "or part of the password)"
        )
    if mode == "untagged_no":
        assert job.last_error_detail.endswith("[AUTHENTICATIONFAILED] Invalid login")


def test_errors_leaving_the_sync_carry_no_password_in_their_chain(echo_servers, make_imap_account):
    """What the worker would render (str, args, the traceback with __cause__ and __context__,
    even a context the traceback hides) holds no form of the password."""
    secret = PASSWORDS["ascii"]
    for mode in ("garbage", "tagged_bad", "unterminated"):
        user = f"{mode}@echo.test"
        account = make_imap_account(port=echo_servers[True].port, user=user, password=secret)
        with pytest.raises(Exception) as caught:
            sync_account(account.pk)
        chain, exc = [], caught.value
        while exc is not None and len(chain) < 10:
            chain.append(exc)
            exc = exc.__cause__ or exc.__context__
        texts = {
            f"{mode} #{i} {type(e).__name__}": "\n".join(
                [str(e), repr(e.args), *traceback.format_exception(e)]
            )
            for i, e in enumerate(chain)
        }
        assert leaked(texts, encodings(secret, user)) == {}, mode


def test_an_unexpected_error_quoting_the_password_is_redacted(
    mail_server, make_imap_account, staff_client, api_client, caplog
):
    """An exception that is not a JobError (the worker records its text and its traceback)
    raised while the session holds the password, with a message and a cause that quote it."""
    caplog.set_level(logging.DEBUG)
    secret = PASSWORDS["ascii"]
    user = f"unexpected-{secrets.token_hex(4)}@example.test"
    mail_server.add_user(user, secret)
    account = make_imap_account(port=mail_server.port, user=user, password=secret)

    def hook(stage: str, folder: str, uids: list[int]) -> None:
        try:
            raise KeyError(secret)
        except KeyError as exc:
            raise ValueError(f"cannot store {secret.encode()!r} ({secret})") from exc

    mail_server.append(user, b"Subject: one\r\n\r\nbody\r\n")
    with sync_hook(hook):
        job = run_sync(account)

    assert job.last_error_code == "internal_error"
    attempt = JobAttempt.objects.get(job=job)
    # Still useful to whoever debugs it: the types, the chain and where it happened.
    assert "ValueError" in job.last_error_detail and "***" in job.last_error_detail
    assert "KeyError" in attempt.traceback and "ValueError" in attempt.traceback
    assert "direct cause" in attempt.traceback and "in hook" in attempt.traceback
    texts = {
        **stored_texts(),
        **answered_texts(job, api_client, staff_client),
        **logged_texts(caplog),
    }
    assert leaked(texts, encodings(secret, user)) == {}


@pytest.mark.parametrize(
    "secret", [PASSWORDS["ascii"], PASSWORDS["non_ascii"]], ids=["ascii", "non_ascii"]
)
def test_passwords_of_any_characters_log_in(mail_server, make_imap_account, secret):
    """Quoted for LOGIN when printable ASCII, else AUTHENTICATE PLAIN (UTF-8, RFC 4616): the
    server gets exactly the password."""
    user = f"any-{secrets.token_hex(4)}@example.test"
    mail_server.add_user(user, secret)
    mail_server.append(user, b"Subject: one\r\n\r\nbody\r\n")
    account = make_imap_account(port=mail_server.port, user=user, password=secret)

    job = run_sync(account)

    assert job.last_error_code == "", job.last_error_detail
    assert job.result["new_messages"] == 1


@pytest.mark.parametrize("auth_plain", [True, False], ids=["AUTHENTICATE", "LOGIN_literal"])
def test_a_line_break_in_the_password_cannot_start_a_command(
    echo_servers, make_imap_account, auth_plain
):
    """(pymap refuses such passwords, SASLprep: the echo server shows what arrives.) A password
    with CR, LF or a tab is one argument of one command, never the end of it."""
    server = echo_servers[auth_plain]
    secret = f"tab\tand\r\nA1 LOGOUT\r\n{TOKEN}"
    account = make_imap_account(port=server.port, user="tagged_no@echo.test", password=secret)
    before = len(server.received)

    job = run_sync(account)

    assert job.last_error_code == "provider_auth_failed", job.last_error_detail
    [received] = server.received[before:]
    if auth_plain:
        response = received.split(b"\r\n")[1]
        assert base64.b64decode(response) == b"\0tagged_no@echo.test\0" + secret.encode()
    else:
        assert received.endswith(f" {{{len(secret)}}}\r\n{secret}".encode())


def test_a_non_ascii_password_goes_as_a_literal_without_auth_plain(mail_server, imap_settings):
    """A server that offers no AUTH=PLAIN gets a non-ASCII password as a LOGIN literal."""
    secret = PASSWORDS["non_ascii"]
    user = f"literal-{secrets.token_hex(4)}@example.test"
    mail_server.add_user(user, secret)
    session = ImapSession(host=HOST, port=mail_server.port, security="none", timeout=5)
    with session:
        session.connect()
        # pymap offers AUTH=PLAIN; hide it as a server that does not would.
        conn = session._conn
        conn.capabilities = tuple(c for c in conn.capabilities if c != "AUTH=PLAIN")
        session.login(user, secret)
        assert session.examine("INBOX").exists == 0
