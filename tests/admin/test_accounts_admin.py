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
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    account = Account.objects.get(name="New box")
    assert decrypt_secret(account.imap_password_encrypted) == "pw"
    assert AuditEvent.objects.filter(command="create_account", account_id=account.pk).exists()
