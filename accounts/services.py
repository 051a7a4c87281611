"""Account rules: creation, connection settings, pause and resume (all audited)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.crypto import encrypt_secret
from accounts.models import Account, ImapSecurity
from accounts.signals import imap_configured
from core.actors import Actor
from core.audit import AuditCommand, audit
from core.errors import Conflict, NotFound, ValidationFailed

IMAP_FIELDS = ("host", "port", "security", "username", "password", "folders")


def _clean_imap(imap: Any) -> dict[str, Any]:
    if not isinstance(imap, dict):
        raise ValidationFailed.for_field("imap", "must be an object.")
    unknown = sorted(set(imap) - set(IMAP_FIELDS))
    if unknown:
        raise ValidationFailed.for_field(f"imap.{unknown[0]}", "unknown field.")
    cleaned: dict[str, Any] = {}
    if "host" in imap:
        host = imap["host"]
        if not isinstance(host, str) or not host.strip() or len(host) > 255:
            raise ValidationFailed.for_field("imap.host", "must be a host name.")
        cleaned["imap_host"] = host.strip()
    if "port" in imap:
        port = imap["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationFailed.for_field("imap.port", "must be an integer from 1 to 65535.")
        cleaned["imap_port"] = port
    if "security" in imap:
        if imap["security"] not in ImapSecurity.values:
            raise ValidationFailed.for_field(
                "imap.security", f"must be one of {', '.join(ImapSecurity.values)}."
            )
        cleaned["imap_security"] = imap["security"]
    if "username" in imap:
        if not isinstance(imap["username"], str) or len(imap["username"]) > 255:
            raise ValidationFailed.for_field("imap.username", "must be a string.")
        cleaned["imap_username"] = imap["username"]
    if "password" in imap:
        if not isinstance(imap["password"], str) or len(imap["password"]) > 1000:
            raise ValidationFailed.for_field("imap.password", "must be a string.")
        cleaned["imap_password_encrypted"] = encrypt_secret(imap["password"])
    if "folders" in imap:
        folders = imap["folders"]
        if not isinstance(folders, list) or not all(
            isinstance(f, str) and f.strip() for f in folders
        ):
            raise ValidationFailed.for_field("imap.folders", "must be a list of folder names.")
        cleaned["imap_folders"] = [f.strip() for f in folders]
    return cleaned


def account_create(
    *, name: str, actor: Actor, email: str = "", imap: dict[str, Any] | None = None
) -> Account:
    """Create an account; the IMAP password is encrypted before it is stored."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValidationFailed.for_field("name", "is required (200 characters at most).")
    fields = _clean_imap(imap or {})
    with transaction.atomic():
        account = Account.objects.create(name=name.strip(), email=email or "", **fields)
        audit(
            actor=actor,
            command=AuditCommand.CREATE_ACCOUNT,
            account_id=account.pk,
            data={"changed": sorted(k for k in fields if k != "imap_password_encrypted")},
        )
        if account.imap_host:
            imap_configured.send(sender=Account, account=account, actor=actor)
    return account


def account_update(
    *,
    account_id: str,
    actor: Actor,
    name: str | None = None,
    email: str | None = None,
    imap: dict[str, Any] | None = None,
) -> Account:
    """Change an account's name, email or connection settings. The audit records which fields
    changed, never the password."""
    fields = _clean_imap(imap) if imap is not None else {}
    if name is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationFailed.for_field("name", "is required (200 characters at most).")
        fields["name"] = name.strip()
    if email is not None:
        fields["email"] = email
    with transaction.atomic():
        account = _lock_account(account_id)
        had_imap = bool(account.imap_host)
        for field, value in fields.items():
            setattr(account, field, value)
        account.save(update_fields=[*fields, "updated_at"])
        audit(
            actor=actor,
            command=AuditCommand.UPDATE_ACCOUNT,
            account_id=account.pk,
            data={
                "changed": sorted(
                    "imap_password" if k == "imap_password_encrypted" else k for k in fields
                )
            },
        )
        if account.imap_host and not had_imap:
            imap_configured.send(sender=Account, account=account, actor=actor)
    return account


def _lock_account(account_id: str) -> Account:
    try:
        return Account.objects.select_for_update(no_key=True).get(pk=account_id)
    except Account.DoesNotExist:
        raise NotFound(f"Account {account_id} not found.") from None


def account_pause(*, account_id: str, actor: Actor, reason: str = "") -> Account:
    """Hold the account's scheduled jobs (the dispatcher skips paused accounts; trigger does
    not). Jobs already handed to the broker still run."""
    with transaction.atomic():
        account = _lock_account(account_id)
        if account.is_paused:
            raise Conflict(
                f"Account {account_id} is already paused.",
                code="already_paused",
                extra={"current_status": "paused"},
            )
        account.paused_at = timezone.now()
        account.paused_reason = (reason or "").strip()[:500]
        account.save(update_fields=["paused_at", "paused_reason", "updated_at"])
        audit(
            actor=actor,
            command=AuditCommand.PAUSE,
            account_id=account.pk,
            reason=account.paused_reason,
        )
    return account


def account_resume(*, account_id: str, actor: Actor, reason: str = "") -> Account:
    """Let the dispatcher run the account's due jobs again."""
    with transaction.atomic():
        account = _lock_account(account_id)
        if not account.is_paused:
            raise Conflict(
                f"Account {account_id} is not paused.",
                code="not_paused",
                extra={"current_status": "active"},
            )
        account.paused_at = None
        account.paused_reason = ""
        account.save(update_fields=["paused_at", "paused_reason", "updated_at"])
        audit(
            actor=actor,
            command=AuditCommand.RESUME,
            account_id=account.pk,
            reason=(reason or "")[:500],
        )
    return account
