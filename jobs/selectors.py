"""Reads, scoped to the caller.

Scoping lives in the querysets: a caller bound to one account gets querysets of that account
only, so an object of another account is simply not there (404 with the same body as a missing
id) and never shows up in a list, a count or an error message.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils import timezone

from accounts.permissions import Principal
from accounts.selectors import get_in_scope
from core.actors import ActorType
from core.api.pagination import Scan
from core.audit import for_job as audit_for_job
from core.errors import ValidationFailed
from core.ids import id_pattern
from core.models import AuditEvent
from jobs.filters import (
    UtcDateTimeFilter,
    filter_jobs,
    id_validator,
    normalize_filter_params,
    text_condition,
)
from jobs.models import BulkOperation, Job, ProviderEvent, Schedule, Task
from jobs.states import BulkStatus

# --- jobs --------------------------------------------------------------------------------------


def jobs_visible(principal: Principal) -> QuerySet[Job]:
    qs = Job.objects.all()
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def job_get(principal: Principal, job_id: str) -> Job:
    """The job `job_id` if the caller may see it, else NotFound."""
    return get_in_scope(jobs_visible(principal), job_id, "job")


JOB_PAGE_PARAMS = frozenset({"limit", "cursor"})


def jobs_search(
    account_id: str, data: Mapping[str, Any], *, queryset: QuerySet[Job] | None = None
) -> tuple[QuerySet[Job], QueryDict]:
    """The jobs of the account that the filters in `data` (a query string or a search body)
    match, taken from `queryset` (all jobs by default), and the normalized filters; `limit` and
    `cursor` are left to the paginator."""
    params = normalize_filter_params(data, reserved=JOB_PAGE_PARAMS)
    queryset = Job.objects.all() if queryset is None else queryset
    return filter_jobs(queryset.filter(account_id=account_id), params), params


def jobs_search_scan(
    account_id: str, params: QueryDict, *, queryset: QuerySet[Job] | None = None
) -> Scan | None:
    """For a page of jobs_search whose filters (`params`, as it returned them, so valid) hold
    text (`q`): the jobs without the text and the text's condition, for the paginator to scan
    (core.api.pagination.Scan); None without text."""
    condition = text_condition(params.get("q", ""))
    if condition is None:
        return None
    others = params.copy()
    others.pop("q")
    queryset = Job.objects.all() if queryset is None else queryset
    return Scan(filter_jobs(queryset.filter(account_id=account_id), others), condition)


# --- tasks and provider events -------------------------------------------------------------------


def tasks_visible(principal: Principal) -> QuerySet[Task]:
    qs = Task.objects.all()
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def task_get(principal: Principal, task_id: str) -> Task:
    """The task `task_id` if the caller may see it, else NotFound."""
    return get_in_scope(tasks_visible(principal), task_id, "tsk")


def provider_events_visible(principal: Principal) -> QuerySet[ProviderEvent]:
    qs = ProviderEvent.objects.all()
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def provider_event_get(principal: Principal, event_id: str) -> ProviderEvent:
    """The provider event `event_id` if the caller may see it, else NotFound."""
    return get_in_scope(provider_events_visible(principal), event_id, "evt")


# --- schedules ---------------------------------------------------------------------------------


def schedules_of(principal: Principal, account_id: str) -> QuerySet[Schedule]:
    """The schedules of one account the caller may see (none of another account's), with
    their last task (its status is the last run's outcome)."""
    qs = Schedule.objects.filter(account_id=account_id).select_related("last_task")
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def schedule_get(principal: Principal, account_id: str, schedule_id: str) -> Schedule:
    """The schedule `schedule_id` of account `account_id` if the caller may see it, else
    NotFound (also when it belongs to another account than the path's)."""
    return get_in_scope(schedules_of(principal, account_id), schedule_id, "sch")


# --- audit log ---------------------------------------------------------------------------------


ID_FILTER_PREFIXES = {"job_id": "job", "account_id": "acc", "task_id": "tsk"}
# The id filters of the audit log and the ids they take (empty: no filter).
AUDIT_ID_FILTERS = {name: id_pattern(prefix) for name, prefix in ID_FILTER_PREFIXES.items()}


def _filter_job_id(queryset: QuerySet[AuditEvent], name: str, value: str) -> QuerySet[AuditEvent]:
    return queryset.filter(audit_for_job(value)) if value else queryset


class AuditEventFilter(django_filters.FilterSet):
    # Every event that touched the job, the events about many jobs included (core.audit.for_job).
    job_id = django_filters.CharFilter(validators=[id_validator("job")], method=_filter_job_id)
    account_id = django_filters.CharFilter(validators=[id_validator("acc")])
    task_id = django_filters.CharFilter(validators=[id_validator("tsk")])
    actor = django_filters.CharFilter()
    actor_type = django_filters.ChoiceFilter(choices=ActorType.choices)
    command = django_filters.BaseInFilter(field_name="command")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


AUDIT_FILTER_FIELDS = frozenset(AuditEventFilter.base_filters)


def audit_events_visible(principal: Principal) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def audit_events_search(
    principal: Principal, data: QueryDict | dict[str, Any]
) -> QuerySet[AuditEvent]:
    """The audit events the caller may see, filtered by job, account, task, actor, command
    (comma-separated) and time. Unknown fields and bad values are a 400 naming them."""
    unknown = sorted(set(data) - AUDIT_FILTER_FIELDS - JOB_PAGE_PARAMS)
    if unknown:
        raise ValidationFailed(
            f"Unknown filter field(s): {', '.join(unknown)}.",
            fields={name: ["Unknown filter field."] for name in unknown},
        )
    for name in AUDIT_FILTER_FIELDS:
        if hasattr(data, "getlist") and len(data.getlist(name)) > 1:
            raise ValidationFailed.for_field(name, "takes one value (use commas for command).")
    filterset = AuditEventFilter(data, queryset=audit_events_visible(principal))
    if not filterset.is_valid():
        fields = {name: [str(m) for m in messages] for name, messages in filterset.errors.items()}
        raise ValidationFailed(
            "Invalid filter: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()),
            fields=fields,
        )
    return filterset.qs


def job_timeline(job: Job, *, limit: int = 200) -> QuerySet[AuditEvent]:
    """The audit events of one job, newest first: its own, and those about many jobs that
    touched it (its task's creation, bulk operations, search-delete; core.audit.for_job)."""
    condition = audit_for_job(job.pk)
    if job.task_id:
        # A job created before the links existed is found by its task's creation event.
        condition |= Q(task_id=job.task_id, command="create_task")
    return AuditEvent.objects.filter(condition).order_by("-id")[:limit]


def bulk_operations_visible(principal: Principal) -> QuerySet[BulkOperation]:
    """Operations of the caller's account; an operator sees all, those across accounts too."""
    qs = BulkOperation.objects.all()
    return qs if principal.is_operator else qs.filter(account_id=principal.account_id)


def bulk_operation_get(principal: Principal, operation_id: str) -> BulkOperation:
    """The operation `operation_id` if the caller may see it, else NotFound."""
    return get_in_scope(bulk_operations_visible(principal), operation_id, "bop")


# --- bulk operations --------------------------------------------------------------------------


def bulk_progress(operation: BulkOperation, *, now: datetime | None = None) -> dict[str, Any]:
    """The figures the admin and the API show alike: matched, done, skipped (total and by
    reason), failed, remaining, rate (jobs/s so far) and the estimated seconds left."""
    now = now or timezone.now()
    skipped_total = sum(operation.skipped.values())
    handled = operation.done + skipped_total + operation.failed
    remaining = max(operation.matched - handled, 0)
    rate = None
    eta = None
    if operation.started_at and handled:
        end = operation.finished_at or now
        elapsed = max((end - operation.started_at).total_seconds(), 0.001)
        rate = round(handled / elapsed, 1)
        if operation.status == BulkStatus.RUNNING:
            pace = min(rate, operation.rate) if operation.rate else rate
            eta = round(remaining / pace, 1) if pace else None
    if operation.status != BulkStatus.RUNNING:
        eta = 0.0 if operation.status == BulkStatus.SUCCEEDED else None
    return {
        "matched": operation.matched,
        "done": operation.done,
        "skipped": skipped_total,
        "skipped_by_reason": dict(sorted(operation.skipped.items())),
        "failed": operation.failed,
        "remaining": remaining,
        "rate": rate,
        "eta_seconds": eta,
    }
