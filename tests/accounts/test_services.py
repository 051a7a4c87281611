from __future__ import annotations

import pytest

from accounts.crypto import decrypt_secret
from accounts.models import Account
from accounts.services import account_create, account_pause, account_resume, account_update
from core.errors import Conflict, ValidationFailed
from core.models import AuditEvent


def test_password_is_encrypted_and_never_audited(db, actor):
    account = account_create(
        name="Acme",
        actor=actor,
        imap={"host": "imap.acme.example", "port": 993, "username": "u", "password": "s3cret-pw"},
    )
    stored = Account.objects.get(pk=account.pk)
    assert "s3cret-pw" not in stored.imap_password_encrypted
    assert decrypt_secret(stored.imap_password_encrypted) == "s3cret-pw"
    account_update(account_id=account.pk, actor=actor, imap={"password": "n3w-pw"})
    assert decrypt_secret(Account.objects.get(pk=account.pk).imap_password_encrypted) == "n3w-pw"
    for event in AuditEvent.objects.all():
        assert "pw" not in repr(event.data) + event.reason
    assert AuditEvent.objects.get(command="update_account").data == {"changed": ["imap_password"]}


@pytest.mark.parametrize(
    ("imap", "field"),
    [
        ({"port": 0}, "imap.port"),
        ({"port": "993"}, "imap.port"),
        ({"security": "ssl"}, "imap.security"),
        ({"host": ""}, "imap.host"),
        ({"folders": "INBOX"}, "imap.folders"),
        ({"passwd": "x"}, "imap.passwd"),
    ],
)
def test_bad_connection_settings_name_the_field(db, actor, imap, field):
    with pytest.raises(ValidationFailed) as excinfo:
        account_create(name="Acme", actor=actor, imap=imap)
    assert field in excinfo.value.fields
    assert not Account.objects.exists()


def test_pause_and_resume_are_audited_and_checked(account, actor):
    account_pause(account_id=account.pk, actor=actor, reason="customer request")
    account.refresh_from_db()
    assert account.is_paused
    with pytest.raises(Conflict):
        account_pause(account_id=account.pk, actor=actor)
    account_resume(account_id=account.pk, actor=actor)
    account.refresh_from_db()
    assert not account.is_paused
    with pytest.raises(Conflict):
        account_resume(account_id=account.pk, actor=actor)
    commands = list(
        AuditEvent.objects.filter(account_id=account.pk)
        .order_by("id")
        .values_list("command", "reason")
    )
    assert commands == [("pause", "customer request"), ("resume", "")]
