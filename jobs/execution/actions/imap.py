"""imap_sync_messages: a real IMAP sync of message envelopes (the work is in
jobs.execution.mailsync)."""

from __future__ import annotations

from typing import Any

from jobs.execution.actions.registry import ActionContext, JobError, action
from jobs.execution.mailsync import sync_account


@action(
    "imap_sync_messages",
    max_attempts=5,
    timeout=120,
    backoff_base=10.0,
    retry_on={"provider_timeout", "provider_unavailable"},
    # Two syncs of one mailbox at once are a conflict (PRODUCT), and providers cap connections.
    per_account_limit=1,
)
def imap_sync_messages(ctx: ActionContext) -> dict[str, Any]:
    """Sync the envelopes of the account's folders above the last synced UID.

    Payload: {"full": bool (drop what is stored and sync from scratch), "folders": [names]
    (default: the account's folders, INBOX when none are set)}. Result: counts per folder.
    """
    folders = ctx.payload.get("folders")
    if folders is not None and (
        not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders)
    ):
        raise JobError("invalid_payload", "payload.folders must be a list of folder names")
    return sync_account(
        ctx.account_id,
        full=bool(ctx.payload.get("full")),
        folders=folders,
        ensure_owned=ctx.ensure_owned,
    )
