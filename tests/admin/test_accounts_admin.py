"""The account page: queue summary with links, pause and resume (audited), and a write-only,
encrypted IMAP password."""

from __future__ import annotations

from django.urls import reverse

from accounts.crypto import decrypt_secret
from accounts.models import Account
from core.models import AuditEvent
from jobs.states import JobStatus

S = JobStatus


def page(account):
    return reverse("admin:accounts_account_change", args=[account.pk])


# The inline of the account's own concurrency limits (none unless a test adds rows).
NO_LIMITS = {
    "concurrency_limits-TOTAL_FORMS": "0",
    "concurrency_limits-INITIAL_FORMS": "0",
    "concurrency_limits-MIN_NUM_FORMS": "0",
    "concurrency_limits-MAX_NUM_FORMS": "1000",
}


def test_queue_summary_links_to_filtered_queue(operator_client, account, make_job):
    make_job(status=S.FAILED, action="sleep")
    make_job(status=S.FAILED, action="sleep")
    make_job(status=S.SUCCEEDED)
    html = operator_client.get(page(account)).content.decode()
    queue = reverse("admin:jobs_job_changelist")
    assert f"{queue}?account={account.pk}&amp;status=failed" in html
    assert "Queue of this account: 3 jobs" in html
    failing = html.split('id="failing-actions"')[1].split('id="last-errors"')[0]
    assert "sleep" in failing and ">2</a>" in failing
    assert "IMAP connection timed out" in html.split('id="last-errors"')[1]


def test_pause_and_resume_are_audited(operator_client, account):
    response = operator_client.post(
        reverse("admin:accounts_account_pause", args=[account.pk]), {"reason": "provider outage"}
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.is_paused and account.paused_reason == "provider outage"
    assert "Resume account" in operator_client.get(page(account)).content.decode()
    operator_client.post(reverse("admin:accounts_account_resume", args=[account.pk]))
    account.refresh_from_db()
    assert not account.is_paused
    commands = list(
        AuditEvent.objects.filter(account_id=account.pk).values_list("command", "actor")
    )
    assert ("pause", "user:operator") in commands and ("resume", "user:operator") in commands
    assert (
        operator_client.get(reverse("admin:accounts_account_pause", args=[account.pk])).status_code
        == 405
    )


def test_password_is_write_only_and_encrypted(operator_client, account):
    data = {
        "name": "Renamed",
        "email": "box@example.test",
        "imap_host": "imap.example.test",
        "imap_port": "993",
        "imap_security": "tls",
        "imap_username": "box",
        "imap_password": "s3cret-pass",
        "imap_folders_text": "INBOX, Archive",
        **NO_LIMITS,
    }
    response = operator_client.post(page(account), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    account.refresh_from_db()
    assert account.name == "Renamed" and account.imap_folders == ["INBOX", "Archive"]
    assert account.imap_password_encrypted and "s3cret" not in account.imap_password_encrypted
    assert decrypt_secret(account.imap_password_encrypted) == "s3cret-pass"
    html = operator_client.get(page(account)).content.decode()
    assert "s3cret" not in html and account.imap_password_encrypted not in html
    assert 'type="password" name="imap_password"' in html and "set (encrypted)" in html
    # Saving again without typing a password keeps the stored one.
    operator_client.post(page(account), {**data, "imap_password": "", "name": "Again"})
    account.refresh_from_db()
    assert decrypt_secret(account.imap_password_encrypted) == "s3cret-pass"
    audit = AuditEvent.objects.filter(command="update_account").first()
    assert "s3cret" not in str(audit.data)


def test_create_account_through_the_service(operator_client, superuser, client):
    client.force_login(superuser)
    response = client.post(
        reverse("admin:accounts_account_add"),
        {
            "name": "New box",
            "email": "",
            "imap_host": "imap.example.test",
            "imap_port": "993",
            "imap_security": "tls",
            "imap_username": "u",
            "imap_password": "pw",
            "imap_folders_text": "",
            **NO_LIMITS,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    account = Account.objects.get(name="New box")
    assert decrypt_secret(account.imap_password_encrypted) == "pw"
    assert AuditEvent.objects.filter(command="create_account", account_id=account.pk).exists()


def test_an_accounts_own_concurrency_limits_are_set_through_the_service(
    operator_client, readonly, account, make_job
):
    from django.test import Client

    from jobs.models import ConcurrencyLimit

    running = make_job(status=S.RUNNING, action="imap_sync_messages")
    waiting = make_job(status=S.SCHEDULED, action="imap_sync_messages")
    Job = type(waiting)
    Job.objects.filter(pk=waiting.pk).update(wait_reason="concurrency_limit")
    html = operator_client.get(page(account)).content.decode()
    assert "Concurrency limits" in html and "imap_sync_messages (policy: 1)" in html
    data = {
        "name": account.name,
        "email": account.email,
        "imap_host": "",
        "imap_port": "993",
        "imap_security": "tls",
        "imap_username": "",
        "imap_password": "",
        "imap_folders_text": "",
        **NO_LIMITS,
        "concurrency_limits-TOTAL_FORMS": "1",
        "concurrency_limits-0-action": "imap_sync_messages",
        "concurrency_limits-0-limit": "2",
        "concurrency_limits-0-account": account.pk,
    }
    response = operator_client.post(page(account), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert ConcurrencyLimit.objects.get(account=account).limit == 2
    # Raised from the policy's 1 to 2: the waiting job is queued at once, and it is audited.
    waiting.refresh_from_db()
    assert waiting.status == S.QUEUED and running.pk != waiting.pk
    event = AuditEvent.objects.get(
        command="update_account", account_id=account.pk, data__has_key="concurrency_limit"
    )
    assert event.data["concurrency_limit"]["to"] == 2
    # Out of range: refused, nothing changes.
    bad = {**data, "concurrency_limits-0-limit": "0"}
    assert operator_client.post(page(account), bad).status_code == 200
    assert ConcurrencyLimit.objects.get(account=account).limit == 2
    # A read-only operator sees the limit and cannot change it.
    viewer = Client()
    viewer.force_login(readonly)
    html = viewer.get(page(account)).content.decode()
    assert "imap_sync_messages" in html and 'name="concurrency_limits-0-limit"' not in html
