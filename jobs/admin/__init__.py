"""The operators' console: Django admin, laid out by role as django.contrib.admin is.

- options: the model admins (jobs, their attempts, the audit log) and their pages;
- bulk: the bulk operations' list and progress pages (live), and their Cancel button;
- accounts: the account pages (queue summary, pause and resume, write-only password, the
  account's sync schedules);
- schedules: the sync schedules (list, add, edit, pause, resume, run now);
- actions: admin actions and the bulk commands behind them;
- views: the console's own pages (confirmations, delete by search, triage, dashboard);
- filters: the queue's sidebar filters and the filter read from a changelist URL;
- forms: the command forms and the account form;
- urls: changelist URLs with filters.

Every change goes through jobs.services or accounts.services; nothing here holds a rule.
Importing this package registers the model admins (Django's autodiscover imports it).
"""

from jobs.admin import accounts, bulk, options, schedules

__all__ = ["accounts", "bulk", "options", "schedules"]
