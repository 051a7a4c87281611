from __future__ import annotations

from django.db import models
from django.utils import timezone

from core.ids import PublicIdField


class ImapSecurity(models.TextChoices):
    TLS = "tls", "TLS"
    STARTTLS = "starttls", "STARTTLS"
    NONE = "none", "None (plain text)"


class Account(models.Model):
    """A connected mailbox. Paused accounts keep their jobs `scheduled` until resumed."""

    id = PublicIdField("acc")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)

    imap_host = models.CharField(max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(default=993)
    imap_security = models.CharField(
        max_length=10, choices=ImapSecurity.choices, default=ImapSecurity.TLS
    )
    imap_username = models.CharField(max_length=255, blank=True)
    # Fernet token of the password (accounts.crypto); never the password itself.
    imap_password_encrypted = models.TextField(blank=True, editable=False)
    imap_folders = models.JSONField(default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None

    @property
    def folders(self) -> list[str]:
        return list(self.imap_folders) or ["INBOX"]


class ApiKey(models.Model):
    """A bearer key. Only a hash of the secret is stored; the secret is shown once."""

    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    # Null means an operator key: it sees every account.
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        scope = self.account_id or "operator"
        return f"{self.prefix}… ({scope}{', read-only' if self.read_only else ''})"

    @property
    def is_operator(self) -> bool:
        return self.account_id is None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class MailboxFolder(models.Model):
    """Sync position of one IMAP folder: a sync resumes above `last_uid` while UIDVALIDITY holds."""

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="mailbox_folders", db_index=False
    )
    name = models.CharField(max_length=500)
    uidvalidity = models.BigIntegerField(null=True, blank=True)
    last_uid = models.BigIntegerField(default=0)
    message_count = models.PositiveIntegerField(default=0)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "name"], name="mailbox_folder_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id}:{self.name}"


class MailboxMessage(models.Model):
    """The envelope of one message, stored idempotently per (account, folder, uidvalidity, uid)."""

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    folder = models.CharField(max_length=500)
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    message_id = models.CharField(max_length=998, blank=True)
    subject = models.TextField(blank=True)
    from_address = models.TextField(blank=True)
    to_addresses = models.TextField(blank=True)
    date = models.DateTimeField(null=True, blank=True)
    flags = models.JSONField(default=list, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "folder", "uidvalidity", "uid"], name="mailbox_message_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.folder}#{self.uid} {self.subject[:40]}"
