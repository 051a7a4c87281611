"""Storing envelopes so that any crash resumes without loss or duplicates.

Each batch is one transaction: insert the rows (ignoring those already there: the unique key is
account, folder, uidvalidity, uid) and advance the folder's `last_uid` past the batch. A crash
before the commit leaves both as they were and the next run fetches the batch again; a crash after
it finds `last_uid` past the batch. Either way no row is lost or doubled.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import MailboxFolder, MailboxMessage
from core.db import insert_ignoring_conflicts
from jobs.execution.mailsync.envelope import Envelope


@dataclass(frozen=True)
class FolderStart:
    folder_id: int
    uidvalidity: int
    last_uid: int
    # Why the stored copy was dropped: "uidvalidity" (the server renumbered the folder), "full"
    # (a resync was asked for), or "" (an incremental sync from last_uid).
    reset: str = ""


def folder_start(*, account_id: str, name: str, uidvalidity: int, full: bool) -> FolderStart:
    """Lock the folder's sync position and decide where to start.

    When the server's UIDVALIDITY differs from the stored one, the stored UIDs no longer name the
    same messages (RFC 3501 2.3.1.1): the client must forget them. We delete that folder's rows of
    the old UIDVALIDITY rather than keep them beside the new ones, so the folder never shows each
    message twice, and sync it again from UID 0. A full resync does the same on request.
    """
    with transaction.atomic():
        folder, _ = MailboxFolder.objects.select_for_update().get_or_create(
            account_id=account_id, name=name
        )
        changed = folder.uidvalidity is not None and folder.uidvalidity != uidvalidity
        reset = "uidvalidity" if changed else "full" if full else ""
        stale = MailboxMessage.objects.filter(account_id=account_id, folder=name)
        if not reset:
            # A first sync, or rows left by an interrupted sync under another UIDVALIDITY.
            stale = stale.exclude(uidvalidity=uidvalidity)
        stale.delete()
        if reset or folder.uidvalidity is None:
            folder.uidvalidity = uidvalidity
            folder.last_uid = 0
            folder.save(update_fields=["uidvalidity", "last_uid"])
    return FolderStart(folder.pk, uidvalidity, folder.last_uid, reset)


def store_batch(
    *,
    account_id: str,
    start: FolderStart,
    name: str,
    envelopes: list[Envelope],
    through_uid: int,
    before_commit: Callable[[], None] | None = None,
) -> bool:
    """Insert a batch and move `last_uid` to `through_uid`, atomically. False when the folder
    was reset meanwhile (a concurrent resync under another UIDVALIDITY): nothing is written."""
    now = timezone.now()
    with transaction.atomic():
        folder = MailboxFolder.objects.select_for_update().filter(pk=start.folder_id).first()
        if folder is None or folder.uidvalidity != start.uidvalidity:
            return False
        _insert_ignoring_existing(account_id, name, start.uidvalidity, envelopes, now)
        if before_commit is not None:
            before_commit()
        if through_uid > folder.last_uid:
            folder.last_uid = through_uid
            folder.save(update_fields=["last_uid"])
    return True


_COLUMNS = (
    "account",
    "folder",
    "uidvalidity",
    "uid",
    "message_id",
    "subject",
    "from_address",
    "to_addresses",
    "date",
    "flags",
    "size",
    "created_at",
)


def _insert_ignoring_existing(
    account_id: str, folder: str, uidvalidity: int, envelopes: list[Envelope], now: datetime
) -> None:
    """Store the envelopes not stored yet (the unique key says which)."""
    adapt = connection.ops.adapt_datetimefield_value
    created_at = adapt(now)
    rows = [
        (
            account_id,
            folder,
            uidvalidity,
            e.uid,
            e.message_id,
            e.subject,
            e.from_address,
            e.to_addresses,
            adapt(e.date) if e.date is not None else None,
            json.dumps(e.flags),
            e.size,
            created_at,
        )
        for e in envelopes
    ]
    insert_ignoring_conflicts(MailboxMessage, _COLUMNS, rows)


def folder_finish(*, start: FolderStart, account_id: str, name: str) -> int:
    """Record the folder's message count and sync time; returns the count."""
    count = MailboxMessage.objects.filter(
        account_id=account_id, folder=name, uidvalidity=start.uidvalidity
    ).count()
    MailboxFolder.objects.filter(pk=start.folder_id).update(
        message_count=count, synced_at=timezone.now()
    )
    return count
