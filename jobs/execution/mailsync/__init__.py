"""IMAP envelope sync: client (timeouts, classified errors), envelope parsing, storage."""

from __future__ import annotations

from jobs.execution.mailsync.sync import sync_account, sync_hook

__all__ = ["sync_account", "sync_hook"]
