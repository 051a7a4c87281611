"""Signals of account changes that other apps act on, so accounts depends on none of them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent inside the transaction that gives an account IMAP settings (a host where it had none):
# at its creation with them, or when an update sets a host on an account that had none.
# Arguments: `account` (the saved Account) and `actor` (core.actors.Actor). jobs connects the
# account's default sync schedule to it (jobs.services.schedules.schedule_create_default): a
# receiver that raises rolls the account change back with it.
imap_configured = Signal()
