"""The mailbox password never appears in a job, an attempt, an audit event, a log line or an API
response, whatever the sync's outcome."""

from __future__ import annotations

import json
import logging

from django.core.serializers.json import DjangoJSONEncoder
from django.test import Client

from accounts.apikeys import api_key_create
from accounts.models import Account
from core.actors import Actor
from core.models import AuditEvent
from demo.mailservers import closed_port
from jobs import services
from jobs.execution.worker import run_job
from jobs.models import Job, JobAttempt, ProviderEvent, Task
from jobs.states import JobStatus
from tests.imap.conftest import run_sync


def dump(model) -> str:
    return json.dumps(list(model.objects.values()), cls=DjangoJSONEncoder)


def test_password_never_leaks(make_imap_account, mailbox, silent_server, caplog):
    caplog.set_level(logging.DEBUG)
    secret = mailbox.password
    mailbox.deliver(1, 3)
    server = mailbox.server
    healthy = make_imap_account(port=server.port, user=mailbox.user, password=secret)
    # Each failure path quotes the server or the socket error: none may quote the password.
    wrong = make_imap_account(port=server.port, user=mailbox.user, password=secret + "-typo")
    refused = make_imap_account(port=closed_port(), user=mailbox.user, password=secret)
    silent = make_imap_account(port=silent_server.port, user=mailbox.user, password=secret)
    tls = make_imap_account(port=server.port, user=mailbox.user, password=secret, security="tls")

    outcomes = [run_sync(account) for account in (healthy, wrong, refused, silent, tls)]
    event, _ = services.provider_event_ingest(
        account=healthy,
        provider="imap",
        type="mailbox.changed",
        external_id="ev-1",
        payload={},
        actor=Actor.system("push"),
    )
    run_job(event.job_id)
    task = services.task_create(
        account=healthy, kind="mailbox_resync", params={}, actor=Actor.system("test")
    )
    run_job(task.jobs.get().pk)

    assert [job.last_error_code for job in outcomes] == [
        "",
        "provider_auth_failed",
        "provider_unavailable",
        "provider_timeout",
        "provider_tls_error",
    ]
    assert outcomes[0].status == JobStatus.SUCCEEDED
    stored = {
        "jobs": dump(Job),
        "attempts": dump(JobAttempt),
        "audit": dump(AuditEvent),
        "events": dump(ProviderEvent),
        "tasks": dump(Task),
    }
    assert all(stored.values())
    for where, text in stored.items():
        assert secret not in text, f"password found in {where}"
    # The encrypted form is no leak, but it is not the password either.
    assert secret not in dump(Account)
    logged = "\n".join(
        [
            caplog.text,
            *(repr(r.args) for r in caplog.records),
            *(r.getMessage() for r in caplog.records),
        ]
    )
    assert "IMAP sync of" in logged  # the sync does log
    assert secret not in logged


def test_password_never_in_api_responses(make_imap_account, mailbox):
    secret = mailbox.password
    account = make_imap_account(port=closed_port(), user=mailbox.user, password=secret)
    job = run_sync(account)
    _, raw_key = api_key_create(account=None, actor=Actor.system("test"))
    client = Client(headers={"Authorization": f"Bearer {raw_key}"})

    created = client.post(
        "/api/accounts",
        {
            "name": "Via the API",
            "imap": {
                "host": "127.0.0.1",
                "port": 143,
                "security": "none",
                "username": "api@example.test",
                "password": secret,
            },
        },
        content_type="application/json",
    )
    responses = [
        created,
        client.get(f"/api/accounts/{account.pk}"),
        client.get("/api/accounts"),
        client.get(f"/api/jobs/{job.pk}"),
        client.get(f"/api/accounts/{account.pk}/jobs"),
        client.post(f"/api/accounts/{account.pk}/jobs/search", {}, content_type="application/json"),
        client.get("/api/audit-events"),
    ]

    assert created.status_code == 201, created.content
    assert [r.status_code for r in responses[1:]] == [200] * (len(responses) - 1)
    assert job.last_error_code == "provider_unavailable"
    assert job.pk.encode() in responses[3].content
    for response in responses:
        assert secret.encode() not in response.content, response.request["PATH_INFO"]
