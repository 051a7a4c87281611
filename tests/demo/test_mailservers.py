"""The demo's mail servers and accounts really succeed and really fail, each as promised."""

from __future__ import annotations

import pytest

from accounts.models import MailboxMessage
from accounts.services import account_create, account_update
from core.actors import Actor
from demo.mailservers import ODD_MESSAGES, start_demo_mail_servers
from jobs import services
from jobs.execution.worker import run_job
from jobs.states import JobStatus
from tests.imap.conftest import run_sync

OPERATOR = Actor.system("demo-operator")


@pytest.fixture
def demo():
    servers = start_demo_mail_servers(messages=12)
    yield servers
    servers.stop()


def test_demo_accounts_succeed_and_fail_as_promised(db, imap_settings, demo):
    accounts = [account_create(actor=OPERATOR, **spec) for spec in demo.account_specs()]

    jobs = [run_sync(account) for account in accounts]

    assert [(job.status, job.last_error_code) for job in jobs] == [
        (JobStatus.SUCCEEDED, ""),
        (JobStatus.FAILED, "provider_auth_failed"),
        (JobStatus.SCHEDULED, "provider_unavailable"),
        (JobStatus.SCHEDULED, "provider_timeout"),
    ]
    healthy = jobs[0].result["folders"]
    assert healthy["INBOX"]["new"] == 12 + len(ODD_MESSAGES)
    assert healthy["Archive"]["new"] == 10

    # The operator's fix: set the right password, then retry the failed job.
    wrong = accounts[1]
    account_update(account_id=wrong.pk, actor=OPERATOR, imap={"password": demo.password})
    services.job_retry(job_id=jobs[1].pk, actor=OPERATOR, note="password fixed")
    run_job(jobs[1].pk)
    jobs[1].refresh_from_db()

    assert jobs[1].status == JobStatus.SUCCEEDED
    assert MailboxMessage.objects.filter(account=wrong).count() == 12 + len(ODD_MESSAGES) + 10


def test_new_demo_mail_arrives_for_the_next_sync(db, imap_settings, demo):
    account = account_create(actor=OPERATOR, **demo.account_specs()[0])
    run_sync(account)

    demo.mail.append(demo.user, b"Subject: hello\r\nMessage-ID: <new@x>\r\n\r\nhi\r\n")
    job = run_sync(account)

    assert job.result["folders"]["INBOX"]["new"] == 1
    assert job.result["folders"]["Archive"]["new"] == 0
