"""URLs of the console's pages, built in one place: the queue (the job changelist) with its
filters, and the job, triage and dashboard pages."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from django.urls import reverse

from jobs.states import NEEDS_OPERATOR

# The queue's filter for "waiting for an operator", as its status parameter spells it.
NEEDS_OPERATOR_STATUSES = ",".join(sorted(NEEDS_OPERATOR))


def queue_query(**filters: str | Iterable[str] | None) -> str:
    """A queue query string from filter values, in the order given; empty values are left out
    and a list is written comma-separated, as the queue reads it (jobs.filters)."""
    pairs = [
        (name, value if isinstance(value, str) else ",".join(value))
        for name, value in filters.items()
        if value
    ]
    return urlencode(pairs, safe=",:")


def queue_url(query: str = "", **filters: str | Iterable[str] | None) -> str:
    """The queue showing `filters` (or an already built query string)."""
    query = "&".join(part for part in (query, queue_query(**filters)) if part)
    url = reverse("admin:jobs_job_changelist")
    return f"{url}?{query}" if query else url


def job_url(job_id: str) -> str:
    return reverse("admin:jobs_job_change", args=[job_id])


def triage_url(account_id: str | None = None) -> str:
    url = reverse("admin:jobs_job_triage")
    return f"{url}?{queue_query(account=account_id)}" if account_id else url


def dashboard_url(**query: str | None) -> str:
    """The dashboard, with its scope (range, account, action) when given."""
    url = reverse("admin:jobs_job_dashboard")
    return f"{url}?{queue_query(**query)}" if queue_query(**query) else url


def workers_url(**query: str | None) -> str:
    url = reverse("admin:jobs_job_workers")
    return f"{url}?{queue_query(**query)}" if queue_query(**query) else url


def search_delete_url(query: str) -> str:
    return reverse("admin:jobs_job_search_delete") + "?" + query


def retention_url() -> str:
    return reverse("admin:jobs_job_retention")
