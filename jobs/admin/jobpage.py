"""The job page's live regions (core.live): the summary with the command buttons at the top,
and the history (attempts, audit timeline) below. The page renders them at load and the
fragments `?_live=summary` and `?_live=history` render them again, from the same reads: the job
by primary key, its attempts and its audit events by their (job, id) indexes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from core import live
from core.models import AuditEvent
from jobs.admin import urls
from jobs.admin.actions import BUTTON_COMMANDS
from jobs.admin.forms import COMMAND_FORMS
from jobs.execution.actions.registry import ErrorAdvice, advice_for
from jobs.models import Job, JobAttempt
from jobs.selectors import job_timeline
from jobs.states import NEEDS_OPERATOR, Command, JobStatus, allowed_commands, stale_heartbeat

if TYPE_CHECKING:
    from jobs.admin.options import JobAdmin

SUMMARY = "summary"
HISTORY = "history"
REGIONS = (SUMMARY, HISTORY)
# The page's load time of the job, passed back by the summary's refreshes: a later change
# makes the summary say that the fields below it are out of date.
SEEN_PARAM = "seen"
ATTEMPTS_SHOWN = 50


@dataclass(frozen=True)
class Diagnosis:
    """Why the job is where it is, in a sentence, and what to do about it."""

    text: str
    advice: ErrorAdvice | None = None
    retryable_left: bool = False  # failed with attempts left: its error is not retryable


def diagnose(job: Job, now: datetime | None = None) -> Diagnosis:
    now = now or timezone.now()
    status = job.status
    if status == JobStatus.SCHEDULED:
        if job.attempt_count and job.last_error_code:
            return Diagnosis(
                f"attempt {job.attempt_count + 1} of {job.max_attempts} is due after "
                f"{job.last_error_code}"
            )
        return Diagnosis("waits for its run time")
    if status == JobStatus.QUEUED:
        return Diagnosis("waits for a worker")
    if status == JobStatus.RUNNING:
        return Diagnosis(f"runs on {job.worker or 'a worker'}")
    if status in NEEDS_OPERATOR:
        advice = advice_for(job.last_error_code) if job.last_error_code else None
        if status == JobStatus.STALLED:
            return Diagnosis("the worker running it vanished and no attempt is left", advice)
        if job.attempt_count < job.max_attempts:
            return Diagnosis(
                f"{job.last_error_code or 'its error'} is not retryable: it was not retried "
                f"({job.attempt_count} of {job.max_attempts} attempts used)",
                advice,
                retryable_left=True,
            )
        return Diagnosis(
            f"every attempt failed ({job.attempt_count} of {job.max_attempts}), the last with "
            f"{job.last_error_code or 'no code'}",
            advice,
        )
    if status == JobStatus.SUCCEEDED:
        return Diagnosis("done")
    return Diagnosis("closed by an operator")


def _seen(request: HttpRequest) -> datetime | None:
    try:
        moment = datetime.fromisoformat(request.GET.get(SEEN_PARAM, ""))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def summary_url(request: HttpRequest, job: Job) -> str:
    updated = job.updated_at.isoformat() if isinstance(job.updated_at, datetime) else ""
    url = live.fragment_url(request, SUMMARY)
    return f"{url}&{urlencode({SEEN_PARAM: updated})}" if updated else url


def summary_context(model_admin: JobAdmin, request: HttpRequest, job: Job) -> dict[str, Any]:
    commands = [
        (command.value, COMMAND_FORMS[command.value](auto_id=f"id_{command.value}_%s"))
        for command in allowed_commands(job.status)
        if command in BUTTON_COMMANDS
        and model_admin.has_command_permission(request, command.value)
        # A second cancel would change nothing: the page says the first is pending.
        and not (command is Command.CANCEL and job.cancel_requested_at is not None)
    ]
    seen = _seen(request)
    changed = seen is not None and isinstance(job.updated_at, datetime) and job.updated_at > seen
    diagnosis = diagnose(job)
    return {
        "job": job,
        "commands": commands,
        "is_running": job.status == JobStatus.RUNNING,
        "cancel_pending": job.status == JobStatus.RUNNING and job.cancel_requested_at is not None,
        "heartbeat_stale": (
            job.status == JobStatus.RUNNING
            and Job.objects.filter(pk=job.pk).filter(stale_heartbeat()).exists()
        ),
        "diagnosis": diagnosis,
        "account_url": reverse("admin:accounts_account_change", args=[job.account_id]),
        "queue_url": urls.queue_url(account=job.account_id),
        "changed_since_load": changed,
        "live_url": summary_url(request, job) if not live.is_refresh(request) else "",
    }


def summarized(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """The timeline's events with the id list of an event about many jobs (a bulk batch, a
    search-delete) shown as its length: the page speaks of one job."""
    shown = []
    for event in events:
        ids = event.data.get("job_ids") if isinstance(event.data, dict) else None
        if isinstance(ids, list):
            event.data = {k: v for k, v in event.data.items() if k != "job_ids"} | {
                "jobs": len(ids)
            }
        shown.append(event)
    return shown


def history_context(job: Job) -> dict[str, Any]:
    attempts = list(
        JobAttempt.objects.filter(job_id=job.pk).order_by("-number")[: ATTEMPTS_SHOWN + 1]
    )
    events = summarized(job_timeline(job))
    return {
        "job": job,
        "attempts": attempts[:ATTEMPTS_SHOWN],
        "more_attempts": len(attempts) > ATTEMPTS_SHOWN,
        "audit_events": events,
        "audit_log_url": reverse("admin:core_auditevent_changelist") + f"?q={job.pk}",
    }
