"""Views of the operators' console beyond Django's own: bulk command confirmation, delete by
search, command buttons of the job page, the error triage and the dashboard. They parse input,
call jobs.services and report; no rule lives here. Also the retention page: the policy, what
the next run will remove, the last runs, and a button for one run now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.utils.html import format_html

from accounts.models import Account
from core import live
from core.actors import Actor
from core.errors import Conflict, DomainError, ValidationFailed
from core.models import AuditEvent
from jobs import reports, services
from jobs.admin import bulk as bulk_urls
from jobs.admin import urls
from jobs.admin.actions import BUTTON_COMMANDS, PAST_TENSE, command_runner, run_bulk
from jobs.admin.filters import QueueFilter
from jobs.admin.forms import COMMAND_FORMS
from jobs.execution.actions.registry import action_names
from jobs.models import BulkOperation, Job
from jobs.monitoring import heartbeats, rollups
from jobs.services.retention import AUDIT, PROVIDER_EVENTS
from jobs.states import ALLOWED_FROM, Command, JobStatus

if TYPE_CHECKING:
    from jobs.admin.options import JobAdmin

CONFIRM = "confirm"


def _account_of(queue_filter: QueueFilter) -> Account | None:
    if not queue_filter.account_id:
        return None
    return Account.objects.filter(pk=queue_filter.account_id).only("name").first()


def _status_breakdown(queryset: QuerySet[Job]) -> list[tuple[str, int]]:
    return list(queryset.order_by().values_list("status").annotate(n=Count("*")).order_by("-n"))


def bulk_command(
    model_admin: JobAdmin, request: HttpRequest, queryset: QuerySet[Job], command: str
) -> HttpResponse | None:
    """An admin action's two steps: a confirmation page with the count, what will be skipped
    and the filter in words; then, when confirmed, one service call per job and a report."""
    select_across = request.POST.get("select_across") == "1"
    form_class = COMMAND_FORMS[command]
    form = form_class(request.POST if CONFIRM in request.POST else None)
    try:
        queue_filter = QueueFilter.from_query(request.GET)
    except ValidationFailed:
        queue_filter = QueueFilter()
    # "All N matching" becomes a bulk operation (no cap, in the background), "stalled now"
    # included: the service judges it once, when it fixes the set (bulk_operation_create's
    # stalled_now). Of the commands, only cancel acts on those running jobs; the others count
    # them as skipped (running). A selection of rows (one page at most) stays one service call
    # per job, in the request.
    as_operation = select_across
    if CONFIRM in request.POST and form.is_valid():
        actor = Actor.user(request.user)
        if as_operation:
            data = form.cleaned_data
            try:
                operation = services.bulk_operation_create(
                    command=command,
                    filters=queue_filter.filter_dict(),
                    account_id=queue_filter.account_id or None,
                    actor=actor,
                    note=data.get("note", ""),
                    inputs=data,
                    default_pace=True,
                    stalled_now=queue_filter.stalled_now,
                )
            except DomainError as exc:
                model_admin.message_user(request, f"Not started: {exc.message}", messages.ERROR)
                return None
            assert isinstance(operation, BulkOperation)
            model_admin.message_user(
                request,
                f"Started: {command} of {operation.matched:,} job"
                f"{'s' if operation.matched != 1 else ''}, in the background.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(bulk_urls.progress_url(operation.pk))
        outcome = run_bulk(command, queryset, actor=actor, data=form.cleaned_data)
        level = messages.SUCCESS if outcome.done else messages.WARNING
        model_admin.message_user(request, outcome.message(), level)
        return None  # Django redirects back to the changelist, filters kept

    breakdown = _status_breakdown(queryset)
    total = sum(n for _, n in breakdown)
    allowed = ALLOWED_FROM[Command(command)]
    acting = sum(n for status, n in breakdown if status in allowed)
    skipped = [(status, n) for status, n in breakdown if status not in allowed]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"{command.capitalize()} {total:,} job{'s' if total != 1 else ''}?",
        "command": command,
        "verb": PAST_TENSE[command],
        "action_name": request.POST.get("action", ""),
        "select_across": select_across,
        "selected_ids": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "filter_words": queue_filter.describe(_account_of(queue_filter)),
        "total": total,
        "acting": acting,
        "skipped": skipped,
        "as_operation": as_operation,
        "sample": list(queryset.select_related("account").order_by("-id")[:10]),
        "form": form,
        "cancel_url": request.get_full_path(),
    }
    return TemplateResponse(request, "admin/jobs/job/bulk_confirmation.html", context)


def search_delete_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """Delete by search: what the filtered queue view of one account shows, running jobs kept.
    A confirmation page with the exact count and a dry-run preview comes first."""
    if not model_admin.has_delete_permission(request):
        raise PermissionDenied
    refusal = ""
    queue_filter = QueueFilter()
    try:
        queue_filter = QueueFilter.from_query(request.GET)
    except ValidationFailed as exc:
        refusal = exc.message
    account = _account_of(queue_filter)
    if refusal:
        pass
    elif not queue_filter.account_id or account is None:
        refusal = (
            "Delete by search works on one account's queue: pin the queue to an account first "
            "(open the account and follow a status, or search its acc_… id)."
        )
    elif queue_filter.stalled_now:
        refusal = (
            "“Stalled now” jobs are running, and deleting keeps running jobs: there is nothing "
            "to delete. Let the sweeper declare them lost first."
        )
    elif not queue_filter.params:
        refusal = (
            "Add at least one filter besides the account: deleting an account's whole queue "
            "is refused."
        )
    back_url = urls.queue_url(queue_filter.query_string())
    actor = Actor.user(request.user)
    preview = None
    count_changed = ""
    if not refusal:
        try:
            if request.method == "POST":
                try:
                    # The count this page showed and the operator confirmed: the service
                    # deletes nothing when the filter matches another number of jobs by now.
                    result = services.jobs_search_delete(
                        account_id=queue_filter.account_id,
                        filters=queue_filter.filter_dict(),
                        actor=actor,
                        expected_count=_posted_count(request),
                    )
                except Conflict as exc:
                    count_changed = exc.message  # show the new count, to confirm again
                else:
                    model_admin.message_user(
                        request,
                        _deleted_message(result["deleted"], result["skipped_running"]),
                        messages.SUCCESS if result["deleted"] else messages.WARNING,
                    )
                    return HttpResponseRedirect(back_url)
            preview = services.jobs_search_delete(
                account_id=queue_filter.account_id,
                filters=queue_filter.filter_dict(),
                actor=actor,
                dry_run=True,
            )
        except DomainError as exc:
            refusal = exc.message
    sample = []
    if preview:
        sample = list(
            queue_filter.apply(Job.objects.select_related("account"))
            .exclude(status=JobStatus.RUNNING)
            .order_by("-id")[:10]
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Delete by search",
        "refusal": refusal,
        "count_changed": count_changed,
        "preview": preview,
        "to_delete": preview["matched"] - preview["skipped_running"] if preview else 0,
        "sample": sample,
        "filter_words": queue_filter.describe(account),
        "back_url": back_url,
    }
    return TemplateResponse(request, "admin/jobs/job/search_delete.html", context)


def _posted_count(request: HttpRequest) -> int | None:
    value = request.POST.get("expected_count", "")
    return int(value) if value.isdecimal() and len(value) < 19 else None


def _deleted_message(deleted: int, running: int) -> str:
    text = f"{deleted:,} job{'s' if deleted != 1 else ''} deleted"
    if running:
        text += f", {running:,} skipped: running"
    return text + "."


def job_command_view(
    model_admin: JobAdmin, request: HttpRequest, object_id: str, command: str
) -> HttpResponse:
    """A command button of the job page (a POST form, never a GET link)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if command not in BUTTON_COMMANDS:
        raise PermissionDenied
    if not model_admin.has_command_permission(request, command):
        raise PermissionDenied
    job = get_object_or_404(Job.objects.only("id", "status"), pk=object_id)
    page = urls.job_url(job.pk)
    form = COMMAND_FORMS[command](request.POST)
    if not form.is_valid():
        errors = "; ".join(
            f"{name}: {' '.join(str(e) for e in errs)}" for name, errs in form.errors.items()
        )
        model_admin.message_user(request, f"Not {PAST_TENSE[command]}: {errors}", messages.ERROR)
        return HttpResponseRedirect(page)
    run = command_runner(command, Actor.user(request.user), form.cleaned_data)
    try:
        updated = run(job.pk)
    except DomainError as exc:
        model_admin.message_user(
            request, f"Not {PAST_TENSE[command]}: {exc.message}", messages.ERROR
        )
    else:
        assert updated is not None  # None only for delete, which is no button
        if command == Command.CANCEL:
            text = format_html(
                "Job {} asked to stop: its worker stops the run at its next ownership check, "
                "or at the latest at its timeout, and the job is then resolved as cancelled.",
                job.pk,
            )
        else:
            text = format_html(
                "Job {} {}: it is now <b>{}</b>.", job.pk, PAST_TENSE[command], updated.status
            )
        model_admin.message_user(request, text, messages.SUCCESS)
    return HttpResponseRedirect(page)


def triage_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """Failed and stalled jobs grouped by (action, error code), each with a way to act on it.
    Its table is a live region (core.live): `?_live=1` renders it alone, from the same query."""
    region = live.strip_live(request)
    account_id = request.GET.get("account", "").strip() or None
    triage = reports.triage(account_id=account_id)
    rows = []
    for group in triage.groups:
        query = urls.queue_query(
            status=urls.NEEDS_OPERATOR_STATUSES,
            action=group.action,
            last_error_code=group.error_code,
            account=account_id,
        )
        rows.append({"group": group, "query": query, "url": urls.queue_url(query)})
    context = {
        "opts": model_admin.model._meta,
        "title": "Error triage",
        "rows": rows,
        "account_id": account_id,
        "total": triage.total,
        "counted_at": triage.counted_at,
        "count_interval": settings.JOBS_TRIAGE_COUNT_INTERVAL,
        "can_retry": model_admin.has_command_permission(request, "retry"),
        "can_resolve": model_admin.has_command_permission(request, "resolve"),
    }
    if region:
        return TemplateResponse(request, "admin/jobs/job/_triage_live.html", context)
    context.update(model_admin.admin_site.each_context(request))
    return TemplateResponse(request, "admin/jobs/job/triage.html", context)


# The query parameter asking for a page's live region alone (core/static/core/live.js).
LIVE = "_live"


def _is_live(request: HttpRequest) -> bool:
    return request.GET.get(LIVE) == "1"


def _health_scope(request: HttpRequest) -> tuple[str, Account | None, str, str]:
    """(range, account or None, the account id asked for, action) from the query string; what
    does not parse is ignored (the page says which scope it shows)."""
    range_key = request.GET.get("range", "")
    range_key = range_key if range_key in rollups.RANGES else DEFAULT_RANGE
    account_id = request.GET.get("account", "").strip()[:32]
    account = None
    if account_id:
        account = Account.objects.filter(pk=account_id).only("id", "name").first()
    action = request.GET.get("action", "").strip()[:100]
    return range_key, account, account_id, action


DEFAULT_RANGE = "24h"
# What one bucket of a range's series is, in the chart's heading (minutes -> words).
STEP_LABELS = {1: "minute", 60: "hour", 360: "6 hours"}


def dashboard_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """Counts by status, queue health over 1 h, 24 h or 7 d (every account and action, or one
    of each: depth and oldest queued age from the scheduler's samples, now and over the range;
    throughput, created -> started latency, failures by error code from the rollups) and the
    failures waiting for an operator. `?_live=1` renders the live region
    alone, for live.js."""
    range_key, account, account_id, action = _health_scope(request)
    scope_account = account.pk if account else None
    board = reports.dashboard()
    health = rollups.queue_health(range_key, account_id=scope_account, action=action or None)
    # Depth from the scheduler's samples (never a count of the job table here): over the range
    # for the chart, and the newest sample for the cards.
    depth = rollups.depth_history(range_key, account_id=scope_account, action=action or None)
    current = depth.current
    depth_counts = current.by_status() if current else {}
    if not (scope_account or action):
        # Every account and action: the board has just counted those waiting for an operator.
        depth_counts.update(
            {status: board.by_status[status] for status in (JobStatus.FAILED, JobStatus.STALLED)}
        )
    step = int(rollups.RANGES[range_key][2].total_seconds() // 60)
    step_label = STEP_LABELS.get(step, f"{step} minutes")
    scope = {"account": scope_account, "action": action or None}
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Jobs dashboard",
        "board": board,
        "status_rows": [
            (status, board.by_status[status.value], urls.queue_url(status=status.value))
            for status in JobStatus
        ],
        "failure_rows": [
            (code, n, urls.queue_url(status=urls.NEEDS_OPERATOR_STATUSES, last_error_code=code))
            for code, n in board.failures_by_code
        ],
        "stalled_url": urls.queue_url(stalled="1"),
        "needs_operator_url": urls.queue_url(status=urls.NEEDS_OPERATOR_STATUSES),
        "range_key": range_key,
        "step_label": step_label,
        "ranges": [(key, urls.dashboard_url(range=key, **scope)) for key in rollups.RANGES],
        "account": account,
        "account_id": account_id,
        "unknown_account": bool(account_id) and account is None,
        "action": action,
        "actions": sorted(set(action_names()) | set(health.by_action)),
        "health": health,
        "depth_rows": [
            (
                JobStatus(status),
                n,
                urls.queue_url(status=status, account=scope_account, action=action or None),
            )
            for status, n in depth_counts.items()
        ],
        "depth_sample": current,
        "oldest_queued_age": current.oldest_queued_seconds if current else None,
        "depth_chart": reports.depth_chart(
            [(start, point.by_status() if point else None) for start, point in depth.series],
            step_minutes=step,
        ),
        "latency_p50": health.total.latency_quantile(0.5),
        "latency_p95": health.total.latency_quantile(0.95),
        "health_failures": health.failure_rows(),
        "action_rows": [
            (
                name,
                tally,
                tally.latency_quantile(0.5),
                tally.latency_quantile(0.95),
                (tally.failed + tally.retried) / tally.finished if tally.finished else None,
                urls.dashboard_url(range=range_key, account=scope_account, action=name),
            )
            for name, tally in health.by_action.items()
        ],
        "chart": reports.hourly_chart(board.hours),
        "hour_totals": (
            sum(b.succeeded for b in board.hours),
            sum(b.failed for b in board.hours),
        ),
        "health_chart": reports.series_chart(
            [
                (bucket.start, bucket.tally.succeeded, bucket.tally.failed + bucket.tally.retried)
                for bucket in health.series
            ],
            step_minutes=step,
        ),
        "live_url": urls.dashboard_url(range=range_key, **scope, _live="1"),
    }
    live = _is_live(request)
    template = "admin/jobs/job/_dashboard_live.html" if live else "admin/jobs/job/dashboard.html"
    return TemplateResponse(request, template, context)


def workers_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """Every cluster, worker and scheduler that beat in the last 24 hours: alive ones with what
    they run now, and those that stopped or are gone, since when. `?_live=1`: the region."""
    procs = heartbeats.processes()
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Workers",
        "procs": procs,
        "live_url": urls.workers_url(_live="1"),
    }
    template = (
        "admin/jobs/job/_workers_live.html" if _is_live(request) else "admin/jobs/job/workers.html"
    )
    return TemplateResponse(request, template, context)


def counts_context() -> dict[str, Any]:
    """The live counts of the admin index (jobs.reports.operator_counts), with their links."""
    counts = reports.operator_counts()
    return {
        "cards": [
            (
                "needs-operator",
                "Waiting for an operator",
                "failed or stalled",
                counts["needs_operator"],
                urls.queue_url(status=urls.NEEDS_OPERATOR_STATUSES),
            ),
            (
                "running",
                "Running",
                "",
                counts["running"],
                urls.queue_url(status=JobStatus.RUNNING.value),
            ),
            (
                "stalled-now",
                "Running without a heartbeat",
                "the sweeper will declare them lost",
                counts["stalled_now"],
                urls.queue_url(stalled="1"),
            ),
            (
                "queued",
                "Queued",
                "waiting for a worker",
                counts["queued"],
                urls.queue_url(status=JobStatus.QUEUED.value),
            ),
            (
                "scheduled",
                "Scheduled",
                "waiting for their time",
                counts["scheduled"],
                urls.queue_url(status=JobStatus.SCHEDULED.value),
            ),
        ],
    }


def counts_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """The admin index's live counts (a fragment: the index renders the same template)."""
    return TemplateResponse(request, "admin/jobs/_index_counts.html", counts_context())


# The retention page counts the rows past their cut-off up to the minute's budget (at least
# this many): enough to say exactly what the next run removes, without reading millions of
# index entries on every visit when a backlog is large; more shows as "at least".
RETENTION_PREVIEW_MIN_CAP = 1_000
# The classes that are not a status of jobs (those are labelled and coloured by their status).
RETENTION_LABELS = {AUDIT: "Audit events", PROVIDER_EVENTS: "Provider events"}


def retention_view(model_admin: JobAdmin, request: HttpRequest) -> HttpResponse:
    """The retention policy, what the next run will remove, the last runs; POST runs one run
    now (for operators who may delete jobs)."""
    can_prune = model_admin.has_delete_permission(request)
    if request.method == "POST":
        if not can_prune:
            raise PermissionDenied
        policy = services.RetentionPolicy.from_settings()
        record = services.jobs_prune(
            policy=policy, max_rows=_one_run(policy), actor=Actor.user(request.user)
        )
        removed = ", ".join(f"{n:,} {name}" for name, n in record["removed"].items() if n)
        model_admin.message_user(
            request,
            f"Retention run: removed {removed or 'nothing'}"
            + ("." if record["complete"] else "; more is left for the next runs."),
            messages.SUCCESS,
        )
        return HttpResponseRedirect(urls.retention_url())
    policy = services.RetentionPolicy.from_settings()
    cap = max(policy.rows_per_minute, RETENTION_PREVIEW_MIN_CAP)
    rows = [
        {
            "row": row,
            "label": RETENTION_LABELS.get(row.name, f"{row.name.capitalize()} jobs"),
            "status": "" if row.name in RETENTION_LABELS else row.name,
        }
        for row in services.retention_preview(policy=policy, cap=cap)
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Retention",
        "policy": policy,
        "rows": rows,
        "runs": [_prune_run(event) for event in reports.prune_runs()],
        "can_prune": can_prune,
        "cap": cap,
    }
    return TemplateResponse(request, "admin/jobs/job/retention.html", context)


def _one_run(policy: services.RetentionPolicy) -> int:
    """What one run may remove: the minute's budget, or one batch where the scheduler's pruning
    is off (JOBS_PRUNE_ROWS_PER_MINUTE=0)."""
    return policy.rows_per_minute if policy.rows_per_minute > 0 else policy.batch


def _prune_run(event: AuditEvent) -> dict[str, Any]:
    data = event.data if isinstance(event.data, dict) else {}
    removed = data.get("removed") or {}
    return {
        "at": event.created_at,
        "summary": ", ".join(f"{n:,} {name}" for name, n in removed.items() if n) or "nothing",
        "attempts": data.get("attempts", 0),
        "batches": data.get("batches", 0),
        "complete": bool(data.get("complete")),
    }
