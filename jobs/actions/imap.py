"""imap_sync_messages: a real IMAP sync of message envelopes (see issue "Real work")."""

from __future__ import annotations

from typing import Any

from jobs.actions.registry import ActionContext, JobError, action


@action(
    "imap_sync_messages",
    max_attempts=5,
    timeout=120,
    backoff_base=10.0,
    retry_on={"provider_timeout", "provider_unavailable"},
)
def imap_sync_messages(ctx: ActionContext) -> dict[str, Any]:
    raise JobError("not_implemented", "IMAP sync is not built yet", retryable=False)
