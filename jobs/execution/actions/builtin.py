"""Built-in actions, task kinds and provider event types."""

from __future__ import annotations

import time
from typing import Any

from core.api.serializers import json_integer
from jobs.execution.actions.registry import (
    ActionContext,
    JobError,
    JobSpec,
    action,
    provider_event_type,
    task_kind,
)


@action("noop", max_attempts=1, timeout=30)
def noop(ctx: ActionContext) -> dict[str, Any]:
    """Does nothing: for benchmarks and smoke checks of a deployment."""
    return {"ok": True}


@action("sleep", max_attempts=3, timeout=60, backoff_base=1.0)
def sleep(ctx: ActionContext) -> dict[str, Any]:
    """Sleeps payload["seconds"]: for exercising heartbeats, timeouts and crash recovery."""
    seconds = float(ctx.payload.get("seconds", 1))
    time.sleep(seconds)
    return {"slept": seconds}


@action("fail", max_attempts=3, timeout=30, backoff_base=1.0)
def fail(ctx: ActionContext) -> None:
    """Fails with payload["code"]/["detail"]/["retryable"]: for exercising retries."""
    raise JobError(
        str(ctx.payload.get("code", "simulated_failure")),
        str(ctx.payload.get("detail", "Simulated failure requested by the payload")),
        retryable=bool(ctx.payload.get("retryable", True)),
    )


# imap_sync_messages is registered by jobs.execution.actions.imap (imported below).


# The params (or payload) the mailbox kinds and events read: `folders`, a list of folder names
# or null (every folder of the account); other keys are ignored.
FOLDERS_SCHEMA = {
    "type": "object",
    "properties": {
        "folders": {
            "type": ["array", "null"],
            "items": {"type": "string", "minLength": 1},
            "description": "Folder names; null or absent: the account's folders.",
        }
    },
}
MAX_NOOP_BATCH = 10_000


@task_kind("mailbox_sync", params_schema=FOLDERS_SCHEMA)
def mailbox_sync(params: dict[str, Any]) -> list[JobSpec]:
    return [JobSpec("imap_sync_messages", {"full": False, **_folders(params)})]


@task_kind("mailbox_resync", params_schema=FOLDERS_SCHEMA)
def mailbox_resync(params: dict[str, Any]) -> list[JobSpec]:
    return [JobSpec("imap_sync_messages", {"full": True, **_folders(params)})]


@task_kind(
    "noop_batch",
    params_schema={
        "type": "object",
        "properties": {"count": {"type": "integer", "minimum": 1, "maximum": MAX_NOOP_BATCH}},
    },
)
def noop_batch(params: dict[str, Any]) -> list[JobSpec]:
    """`count` no-op jobs (up to 10,000; 1 by default): for benchmarks of batched creation."""
    count = json_integer(params.get("count", 1))
    if count is None or not 1 <= count <= MAX_NOOP_BATCH:
        raise ValueError(f"count must be a whole number from 1 to {MAX_NOOP_BATCH}")
    return [JobSpec("noop", {"n": n}) for n in range(count)]


@provider_event_type("imap", "mailbox.changed", coalesce=True, payload_schema=FOLDERS_SCHEMA)
@provider_event_type("imap", "message.created", coalesce=True, payload_schema=FOLDERS_SCHEMA)
def imap_changed(payload: dict[str, Any]) -> list[JobSpec]:
    return [JobSpec("imap_sync_messages", {"full": False, **_folders(payload)})]


def _folders(params: dict[str, Any]) -> dict[str, Any]:
    folders = params.get("folders")
    if folders is None:
        return {}
    if not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders):
        raise ValueError("folders must be a list of folder names")
    return {"folders": folders}


from jobs.execution.actions import imap  # noqa: E402, F401  (registers imap_sync_messages)
