"""The operators' console: queue views, the job page, bulk commands, delete by search, error
triage, the dashboard and the audit log. Thin: every change goes through jobs.services."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.templatetags.admin_list import result_list
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.functions import Left
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from accounts.models import Account
from core import live
from core.actors import Actor, ActorType
from core.admin.messages import DomainErrorMessageMixin
from core.admin.paginators import NoCountAdminMixin
from core.audit import AuditCommand
from core.errors import DomainError, ValidationFailed
from core.models import AuditEvent
from core.templatetags import console
from core.unreadable import Unreadable, unreadable_fields
from jobs import services
from jobs.admin import jobpage, urls
from jobs.admin import views as admin_views
from jobs.admin.filters import QUEUE_LIST_FILTERS, QueueFilter, split_search
from jobs.admin.forms import JobChangeForm
from jobs.filters import filter_jobs, normalize_filter_params
from jobs.models import Job
from jobs.states import MUTABLE_FIELDS, JobStatus

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec


def status_badge(status: str, label: str | None = None) -> str:
    """A coloured status pill (styles in admin/jobs/_styles.html)."""
    return format_html('<span class="job-status job-status-{}">{}</span>', status, label or status)


def unreadable(value: Unreadable) -> str:
    """A value the application cannot read (core.unreadable), as the database spells it."""
    return format_html(
        '<span class="unreadable" title="{}">unreadable: {}</span>', value.reason, value
    )


def pretty_json(value: Any) -> str:
    if isinstance(value, Unreadable):
        return unreadable(value)
    if value in (None, {}, []):
        return format_html('<span class="quiet">{}</span>', "empty" if value is not None else "—")
    return format_html(
        '<pre class="json">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True),
    )


def _ago(moment: datetime | None) -> str:
    """A moment in a list: "3 min ago", the date and time on hover (core console tags)."""
    if isinstance(moment, Unreadable):
        return unreadable(moment)
    return console.ago(moment)


def _when(moment: datetime | None) -> str:
    """A moment on a page about one thing: the date and time, "(3 min ago)" beside it."""
    if isinstance(moment, Unreadable):
        return unreadable(moment)
    return console.when(moment)


@admin.register(Job)
class JobAdmin(NoCountAdminMixin, DomainErrorMessageMixin, admin.ModelAdmin):
    form = JobChangeForm
    list_display = (
        "id_column",
        "account_column",
        "action",
        "status_column",
        "error_column",
        "next_run_column",
        "updated_column",
    )
    # The stubs' list of every kind of filter spec, which a list of filter classes is not (lists
    # are invariant).
    list_filter = QUEUE_LIST_FILTERS  # type: ignore[assignment]
    list_select_related = ("account",)
    list_per_page = 50
    changelist_defer = ("payload", "labels", "result", "resolution", "last_error_detail")
    # The error column shows the start of the detail (the whole of it is up to 64 KB).
    ERROR_EXCERPT = 1000
    # Replaced by get_search_results; non-empty so the admin shows the search box.
    search_fields = ("id",)
    search_help_text = "A job, task or account id, or words of the error detail."
    ordering = ("-id",)
    # Sorting on an unindexed column would sort the whole table for each page.
    sortable_by = ()
    actions = ["retry_jobs", "resolve_jobs", "trigger_jobs", "cancel_jobs", "delete_jobs"]

    # --- permissions ---------------------------------------------------------------------

    def has_command_permission(self, request: HttpRequest, command: str) -> bool:
        if command == "delete":
            return self.has_delete_permission(request)
        return request.user.has_perm(f"jobs.{command}_job")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return self.has_command_permission(request, "retry")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return self.has_command_permission(request, "resolve")

    def has_trigger_permission(self, request: HttpRequest) -> bool:
        return self.has_command_permission(request, "trigger")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return self.has_command_permission(request, "cancel")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Jobs come from tasks, provider events and the API, never from a blank form.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.status != JobStatus.RUNNING)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Django's delete_selected loads every object and its relations first.
        actions.pop("delete_selected", None)
        return actions

    # --- queue view ------------------------------------------------------------------------

    def changelist_page(self, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return (
            super()
            .changelist_page(queryset)
            .annotate(error_excerpt=Left("last_error_detail", self.ERROR_EXCERPT))
        )

    @admin.display(description="account")
    def account_column(self, job: Job) -> str:
        return format_html(
            '<a href="{}" class="account-name" title="{} · the queue of this account">{}</a>',
            urls.queue_url(account=job.account_id),
            job.account.name,
            job.account.name,
        )

    @admin.display(description="status · attempts")
    def status_column(self, job: Job) -> str:
        return format_html(
            '{} <span class="attempts" title="attempts used of the budget">{}/{}</span>',
            status_badge(job.status, job.get_status_display()),
            job.attempt_count,
            job.max_attempts,
        )

    @admin.display(description="job")
    def id_column(self, job: Job) -> str:
        # Ids sort by creation time; the moment itself on hover.
        created = job.created_at
        title = "" if isinstance(created, Unreadable) else console.absolute(created)
        return format_html('<span title="created {}">{}</span>', title, job.pk)

    @admin.display(description="error")
    def error_column(self, job: Job) -> str:
        if not job.last_error_code:
            return "—"
        detail = getattr(job, "error_excerpt", None) or ""
        if not detail:
            return format_html("<code>{}</code>", job.last_error_code)
        return format_html(
            '<code>{}</code> <span class="error-excerpt" title="{}">{}</span>',
            job.last_error_code,
            detail,
            Truncator(detail).chars(70),
        )

    @admin.display(description="next run")
    def next_run_column(self, job: Job) -> str:
        if job.status != JobStatus.SCHEDULED:
            return "—"
        if isinstance(job.run_at, Unreadable):
            return unreadable(job.run_at)
        label = "retry " if job.attempt_count and job.last_error_code else ""
        return format_html("{}{}", label, console.ago(job.run_at))

    @admin.display(description="updated")
    def updated_column(self, job: Job) -> str:
        return _ago(job.updated_at)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Job], search_term: str
    ) -> tuple[QuerySet[Job], bool]:
        account_id, params = split_search(search_term)
        if account_id:
            queryset = queryset.filter(account_id=account_id)
        if params:
            try:
                queryset = filter_jobs(queryset, normalize_filter_params(params))
            except ValidationFailed as exc:
                raise IncorrectLookupParameters(exc.message) from exc
        return queryset, False

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist: Any = super().get_changelist_instance(request)
        # The result rows are a live region (core.live): this page's own URL renders them.
        changelist.live_attrs = live.region_attrs(live.fragment_url(request))
        return changelist

    def queue_rows(self, request: HttpRequest) -> HttpResponse:
        """The queue's live refresh: the rows of the page on screen, from the page's one
        query (LIMIT per page + 1, no count), rendered as the page renders them."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            QueueFilter.from_query(request.GET)
            changelist = self.get_changelist_instance(request)
            changelist.formset = None  # no list_editable: as changelist_view sets it
        except (ValidationFailed, IncorrectLookupParameters):
            return HttpResponseBadRequest("Bad filter: reload the page.")
        return TemplateResponse(request, "admin/jobs/job/_queue_rows.html", result_list(changelist))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if live.strip_live(request) and request.method == "GET":
            return self.queue_rows(request)
        if request.method == "POST" and "action" in request.POST:
            # A forged POST of an action the user may not run is a 403, not a silent no-op.
            names = request.POST.getlist("action")
            try:
                chosen = names[int(request.POST.get("index", 0))]
            except (ValueError, IndexError):
                chosen = names[0] if names else ""
            if chosen and chosen not in self.get_actions(request):
                raise PermissionDenied
        elif request.method == "POST" and not self.has_change_permission(request):
            raise PermissionDenied
        try:
            queue_filter = QueueFilter.from_query(request.GET)
        except ValidationFailed as exc:
            self.message_user(request, f"Filter ignored: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(request.path)
        search_delete_url = ""
        if queue_filter.account_id and self.has_delete_permission(request):
            search_delete_url = urls.search_delete_url(queue_filter.query_string())
        context = {
            "search_delete_url": search_delete_url,
            "triage_url": urls.triage_url(),
            "dashboard_url": urls.dashboard_url(),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    # --- bulk commands ---------------------------------------------------------------------

    @admin.action(description="Retry the selected jobs…", permissions=["retry"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return admin_views.bulk_command(self, request, queryset, "retry")

    @admin.action(description="Resolve the selected jobs…", permissions=["resolve"])
    def resolve_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return admin_views.bulk_command(self, request, queryset, "resolve")

    @admin.action(description="Trigger the selected jobs now…", permissions=["trigger"])
    def trigger_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return admin_views.bulk_command(self, request, queryset, "trigger")

    @admin.action(description="Cancel the selected running jobs…", permissions=["cancel"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        return admin_views.bulk_command(self, request, queryset, "cancel")

    @admin.action(description="Delete the selected jobs…", permissions=["delete"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> HttpResponse | None:
        if request.POST.get("select_across") == "1":
            # Everything a filter matches is deleted by search: set-based, scoped, audited.
            return HttpResponseRedirect(urls.search_delete_url(request.GET.urlencode()))
        return admin_views.bulk_command(self, request, queryset, "delete")

    # --- job page --------------------------------------------------------------------------

    def _editable(self, request: HttpRequest, obj: Job | None) -> bool:
        return (
            obj is not None
            and obj.status != JobStatus.RUNNING
            and self.has_change_permission(request, obj)
        )

    def get_fieldsets(self, request: HttpRequest, obj: Job | None = None) -> _FieldsetSpec:
        editable = self._editable(request, obj)
        return [
            (
                "Job",
                {
                    "fields": [
                        "id",
                        "status_column",
                        "account_column",
                        "action",
                        "task_column",
                        "provider_event_column",
                        "resolution_column",
                        "cancel_column",
                    ]
                },
            ),
            (
                "Last error",
                {"fields": ["last_error_code", "last_error_at_column", "last_error_detail_column"]},
            ),
            (
                "Schedule and budget" + ("" if editable else " (read-only)"),
                {"fields": ["priority", "run_at", "max_attempts", "attempt_count"]},
            ),
            (
                "Payload and labels",
                {"fields": ["payload", "labels"] if editable else ["payload_json", "labels_json"]},
            ),
            ("Result", {"fields": ["result_json"]}),
            (
                "Execution",
                {
                    "fields": [
                        "worker_column",
                        "heartbeat_at_column",
                        "enqueued_at_column",
                        "started_at_column",
                        "finished_at_column",
                        "created_at_column",
                        "updated_at_column",
                    ]
                },
            ),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[Any]:
        names = [
            name for _, options in self.get_fieldsets(request, obj) for name in options["fields"]
        ]
        if self._editable(request, obj):
            # A value the application cannot read is shown, never offered for editing here.
            unreadable = unreadable_fields(obj)
            return [name for name in names if name not in MUTABLE_FIELDS or name in unreadable]
        return names

    @admin.display(description="provider event")
    def provider_event_column(self, job: Job) -> str:
        return job.provider_event_id or "—"

    @admin.display(description="worker")
    def worker_column(self, job: Job) -> str:
        return job.worker or "—"

    @admin.display(description="last error at")
    def last_error_at_column(self, job: Job) -> str:
        return _when(job.last_error_at)

    @admin.display(description="last heartbeat")
    def heartbeat_at_column(self, job: Job) -> str:
        return _when(job.heartbeat_at)

    @admin.display(description="enqueued at")
    def enqueued_at_column(self, job: Job) -> str:
        return _when(job.enqueued_at)

    @admin.display(description="started at")
    def started_at_column(self, job: Job) -> str:
        return _when(job.started_at)

    @admin.display(description="finished at")
    def finished_at_column(self, job: Job) -> str:
        return _when(job.finished_at)

    @admin.display(description="created at")
    def created_at_column(self, job: Job) -> str:
        return _when(job.created_at)

    @admin.display(description="updated at")
    def updated_at_column(self, job: Job) -> str:
        return _when(job.updated_at)

    @admin.display(description="task")
    def task_column(self, job: Job) -> str:
        if not job.task_id:
            return "—"
        return format_html('<a href="{}">{}</a>', urls.queue_url(task_id=job.task_id), job.task_id)

    @admin.display(description="resolution")
    def resolution_column(self, job: Job) -> str:
        if not job.resolution:
            return "—"
        if not isinstance(job.resolution, dict):  # written by SQL
            return pretty_json(job.resolution)
        r = job.resolution
        return format_html(
            "<b>{}</b>: {} <span class='quiet'>by {} at {}</span>",
            r.get("code", ""),
            r.get("note", ""),
            r.get("by", ""),
            r.get("at", ""),
        )

    @admin.display(description="cancel requested")
    def cancel_column(self, job: Job) -> str:
        if job.cancel_requested_at is None:
            return "—"
        return format_html(
            "{} <span class='quiet'>by {} at {}</span>",
            job.cancel_note or "(no note)",
            job.cancel_requested_by,
            job.cancel_requested_at,
        )

    @admin.display(description="last error detail")
    def last_error_detail_column(self, job: Job) -> str:
        if not job.last_error_detail:
            return "—"
        return format_html('<pre class="error-detail">{}</pre>', job.last_error_detail)

    @admin.display(description="payload")
    def payload_json(self, job: Job) -> str:
        return pretty_json(job.payload)

    @admin.display(description="labels")
    def labels_json(self, job: Job) -> str:
        return pretty_json(job.labels)

    @admin.display(description="result")
    def result_json(self, job: Job) -> str:
        return pretty_json(job.result)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Job | None = None,
    ) -> HttpResponse:
        if obj is not None and (bad := unreadable_fields(obj)):
            self.message_user(
                request,
                "This job holds values the application cannot read, shown as the database "
                "spells them: "
                + "; ".join(f"{name} {value!s} ({value.reason})" for name, value in bad.items())
                + ".",
                messages.WARNING,
            )
        if obj is not None:
            context.update(jobpage.summary_context(self, request, obj))
            context.update(jobpage.history_context(obj))
            context.update(title=f"Job {obj.pk}", subtitle=None)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        region = live.strip_live(request)
        if region and request.method == "GET":
            return self.job_region(request, object_id, region)
        return super().change_view(request, object_id, form_url, extra_context)

    def job_region(self, request: HttpRequest, object_id: str, region: str) -> HttpResponse:
        """A live region of the job page (jobs.admin.jobpage): its summary or its history."""
        if region not in jobpage.REGIONS:
            raise Http404("No such region.")
        job = self.get_object(request, unquote(object_id))
        if job is None:
            raise Http404("No such job.")
        if not self.has_view_or_change_permission(request, job):
            raise PermissionDenied
        if region == jobpage.SUMMARY:
            context = jobpage.summary_context(self, request, job)
            template = "admin/jobs/job/_job_summary.html"
        else:
            context = jobpage.history_context(job)
            template = "admin/jobs/job/_job_history.html"
        return TemplateResponse(request, template, context)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Django's history (LogEntry) is always empty here: our history is the audit trail.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(
            reverse("admin:core_auditevent_changelist") + f"?q={unquote(object_id)}"
        )

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        changes = {
            name: form.cleaned_data[name] for name in form.changed_data if name in MUTABLE_FIELDS
        }
        if changes:
            services.job_update(job_id=obj.pk, actor=Actor.user(request.user), changes=changes)

    def get_deleted_objects(
        self, objs: Sequence[Job] | QuerySet[Job], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        # The job and its attempts go; its audit trail stays. No collector walk needed.
        return [str(obj) for obj in objs], {"jobs": len(objs)}, set(), []

    def delete_model(self, request: HttpRequest, obj: Job) -> None:
        services.job_delete(job_id=obj.pk, actor=Actor.user(request.user))

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except DomainError as exc:
            self.message_user(request, f"Not deleted: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(urls.job_url(object_id))

    # --- extra pages -----------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def view(
            function: Callable[..., HttpResponse], permission: str = "view"
        ) -> Callable[..., HttpResponse]:
            def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                if permission == "view" and not self.has_view_permission(request):
                    raise PermissionDenied
                return function(self, request, *args, **kwargs)

            return self.admin_site.admin_view(checked)

        return [
            path("triage/", view(admin_views.triage_view), name="jobs_job_triage"),
            path("dashboard/", view(admin_views.dashboard_view), name="jobs_job_dashboard"),
            path("workers/", view(admin_views.workers_view), name="jobs_job_workers"),
            path("counts/", view(admin_views.counts_view), name="jobs_job_counts"),
            path("retention/", view(admin_views.retention_view), name="jobs_job_retention"),
            path(
                "search-delete/",
                view(admin_views.search_delete_view),
                name="jobs_job_search_delete",
            ),
            path(
                "<path:object_id>/command/<str:command>/",
                view(admin_views.job_command_view),
                name="jobs_job_command",
            ),
            *super().get_urls(),
        ]


class AuditCommandFilter(admin.SimpleListFilter):
    """A fixed list: a DISTINCT over the whole audit log on every page would be slow."""

    title = "command"
    parameter_name = "command"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return AuditCommand.choices

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent]
    ) -> QuerySet[AuditEvent]:
        return queryset.filter(command=self.value()) if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(NoCountAdminMixin, admin.ModelAdmin):
    """The audit log: read-only, searchable by job, account or task id, actor and command."""

    list_display = (
        "created_column",
        "actor",
        "command",
        "job_column",
        "account_column",
        "transition",
        "reason_column",
    )
    readonly_fields = ("data_column",)
    list_filter = (AuditCommandFilter, "actor_type")
    search_fields = ("job_id",)  # replaced by get_search_results
    search_help_text = (
        "A job, task or account id, an actor (user:alice, key:ab12cd34, system:worker) "
        "or a command."
    )
    ordering = ("-id",)
    sortable_by = ()
    list_per_page = 100

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[AuditEvent], search_term: str
    ) -> tuple[QuerySet[AuditEvent], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        for prefix, column in (("job_", "job_id"), ("acc_", "account_id"), ("tsk_", "task_id")):
            if term.startswith(prefix):
                return queryset.filter(**{column: term}), False
        if term.split(":", 1)[0] in {"user", "key", "system"} and ":" in term:
            return queryset.filter(actor=term), False
        if term in ActorType.values:
            return queryset.filter(actor_type=term), False
        # A bare word: a command, or a user name (indexed exact matches, no LIKE scan).
        return queryset.filter(command=term) | queryset.filter(actor=f"user:{term}"), False

    def get_fields(self, request: HttpRequest, obj: AuditEvent | None = None) -> Any:
        fields = [field.name for field in AuditEvent._meta.fields if field.name != "data"]
        return [*fields, "data_column"]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist: Any = super().get_changelist_instance(request)
        # Accounts by name: one query for the page (an event outlives its account: then the id).
        ids = {event.account_id for event in changelist.result_list if event.account_id}
        names = dict(Account.objects.filter(pk__in=ids).values_list("pk", "name")) if ids else {}
        for event in changelist.result_list:
            event.account_name = names.get(event.account_id, "")
        return changelist

    @admin.display(description="when")
    def created_column(self, event: AuditEvent) -> str:
        if isinstance(event.created_at, Unreadable):
            return unreadable(event.created_at)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            event.created_at.isoformat(),
            console.relative(event.created_at),
            console.absolute(event.created_at),
        )

    @admin.display(description="account")
    def account_column(self, event: AuditEvent) -> str:
        if not event.account_id:
            return "—"
        name = getattr(event, "account_name", "")
        if not name:
            return format_html(
                '<span class="quiet" title="Account gone">{}</span>', event.account_id
            )
        return format_html(
            '<a href="{}" class="account-name" title="{} ({})">{}</a>',
            reverse("admin:accounts_account_change", args=[event.account_id]),
            name,
            event.account_id,
            name,
        )

    @admin.display(description="data")
    def data_column(self, event: AuditEvent) -> str:
        return console.labelled(event.data) or "—"

    @admin.display(description="job")
    def job_column(self, event: AuditEvent) -> str:
        if not event.job_id:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            urls.job_url(event.job_id),
            event.job_id,
        )

    @admin.display(description="transition")
    def transition(self, event: AuditEvent) -> str:
        if not event.from_status and not event.to_status:
            return "—"
        return format_html(
            "{} → {}",
            status_badge(event.from_status) if event.from_status else "·",
            status_badge(event.to_status) if event.to_status else "gone",
        )

    @admin.display(description="reason")
    def reason_column(self, event: AuditEvent) -> str:
        text = event.reason or ""
        data = event.data if isinstance(event.data, dict) else {}
        if data.get("count") is not None:
            text = f"{text} ({data['count']} jobs)".strip()
        if not text:
            return "—"
        return format_html(
            '<span class="reason" title="{}">{}</span>', text, Truncator(text).chars(120)
        )


# The admin index links to the console's pages (templates/admin/index.html).
admin.site.index_title = "Jobs console"
admin.site.site_header = "Jobs console"
admin.site.site_title = "Jobs console"
# The queue needs the width more than a second copy of the index's model list.
admin.site.enable_nav_sidebar = False
# An empty value reads as the console's dash everywhere (Django's default is a hyphen).
admin.site.empty_value_display = "—"
