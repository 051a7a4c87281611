"""The operators' console: queue views, the job page, bulk commands, delete by search, error
triage, the dashboard and the audit log. Thin: every change goes through jobs.services."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from core.actors import Actor, ActorType
from core.admin.messages import DomainErrorMessageMixin
from core.admin.paginators import NoCountAdminMixin
from core.audit import AuditCommand
from core.errors import DomainError, ValidationFailed
from core.models import AuditEvent
from core.unreadable import Unreadable, unreadable_fields
from jobs import services
from jobs.admin import urls
from jobs.admin import views as admin_views
from jobs.admin.actions import BUTTON_COMMANDS
from jobs.admin.filters import QUEUE_LIST_FILTERS, QueueFilter, split_search
from jobs.admin.forms import COMMAND_FORMS, JobChangeForm
from jobs.filters import filter_jobs, normalize_filter_params
from jobs.models import Job, JobAttempt
from jobs.selectors import job_timeline
from jobs.states import MUTABLE_FIELDS, JobStatus, allowed_commands

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec


def _summarized(events: Iterable[AuditEvent]) -> list[AuditEvent]:
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
    if moment is None:
        return "—"
    if isinstance(moment, Unreadable):
        return unreadable(moment)
    return format_html(
        '<span title="{}">{} ago</span>', moment.isoformat(), timesince(moment).split(",")[0]
    )


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ("number", "outcome_column", "started_at", "duration", "worker", "error")
    readonly_fields = fields
    ordering = ("-number",)
    verbose_name_plural = "attempts (newest first)"

    def has_add_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Whoever may see a job sees its attempts.
        return request.user.has_perm("jobs.view_job") or request.user.has_perm("jobs.change_job")

    @admin.display(description="outcome")
    def outcome_column(self, attempt: JobAttempt) -> str:
        return status_badge(attempt.outcome, attempt.get_outcome_display())

    @admin.display(description="duration")
    def duration(self, attempt: JobAttempt) -> str:
        if attempt.duration_ms is None:
            return "—"
        return f"{attempt.duration_ms / 1000:.2f} s"

    @admin.display(description="error")
    def error(self, attempt: JobAttempt) -> str:
        if not attempt.error_code and not attempt.traceback:
            return "—"
        parts = [format_html("<b>{}</b> {}", attempt.error_code, attempt.error_detail)]
        if attempt.traceback:
            parts.append(
                format_html(
                    '<details class="traceback"><summary>Traceback</summary><pre>{}</pre>'
                    "</details>",
                    attempt.traceback,
                )
            )
        return format_html_join("", "{}", ((part,) for part in parts))


@admin.register(Job)
class JobAdmin(NoCountAdminMixin, DomainErrorMessageMixin, admin.ModelAdmin):
    form = JobChangeForm
    list_display = (
        "id",
        "account_column",
        "action",
        "status_column",
        "attempts_column",
        "last_error_code",
        "age_column",
        "updated_column",
    )
    # The stubs' list of every kind of filter spec, which a list of filter classes is not (lists
    # are invariant).
    list_filter = QUEUE_LIST_FILTERS  # type: ignore[assignment]
    list_select_related = ("account",)
    list_per_page = 50
    changelist_defer = ("payload", "labels", "result", "resolution", "last_error_detail")
    # Replaced by get_search_results; non-empty so the admin shows the search box.
    search_fields = ("id",)
    search_help_text = "A job, task or account id, or words of the error detail."
    ordering = ("-id",)
    # Sorting on an unindexed column would sort the whole table for each page.
    sortable_by = ()
    actions = ["retry_jobs", "resolve_jobs", "trigger_jobs", "delete_jobs"]
    inlines = [JobAttemptInline]

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

    @admin.display(description="account")
    def account_column(self, job: Job) -> str:
        return format_html(
            '<a href="{}" title="Queue of this account">{}</a>',
            urls.queue_url(account=job.account_id),
            job.account.name,
        )

    @admin.display(description="status")
    def status_column(self, job: Job) -> str:
        return status_badge(job.status, job.get_status_display())

    @admin.display(description="attempts")
    def attempts_column(self, job: Job) -> str:
        return f"{job.attempt_count}/{job.max_attempts}"

    @admin.display(description="age")
    def age_column(self, job: Job) -> str:
        if isinstance(job.created_at, Unreadable):
            return unreadable(job.created_at)
        return timesince(job.created_at).split(",")[0]

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

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
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
                        "provider_event_id",
                        "resolution_column",
                    ]
                },
            ),
            (
                "Last error",
                {"fields": ["last_error_code", "last_error_at", "last_error_detail_column"]},
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
                        "worker",
                        "heartbeat_at",
                        "enqueued_at",
                        "started_at",
                        "finished_at",
                        "created_at",
                        "updated_at",
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
            commands = [
                (command.value, COMMAND_FORMS[command.value](auto_id=f"id_{command.value}_%s"))
                for command in allowed_commands(obj.status)
                if command in BUTTON_COMMANDS
                and self.has_command_permission(request, command.value)
            ]
            context.update(
                title=f"Job {obj.pk}",
                job=obj,
                commands=commands,
                audit_events=_summarized(job_timeline(obj)),
                queue_url=urls.queue_url(account=obj.account_id),
                is_running=obj.status == JobStatus.RUNNING,
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

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
        "created_at",
        "actor",
        "command",
        "job_column",
        "account_id",
        "transition",
        "reason_column",
    )
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
        if event.data.get("count") is not None:
            text = f"{text} ({event.data['count']} jobs)".strip()
        return text[:120] or "—"


# The admin index links to the console's pages (templates/admin/index.html).
admin.site.index_title = "Jobs console"
admin.site.site_header = "Jobs console"
admin.site.site_title = "Jobs console"
# The queue needs the width more than a second copy of the index's model list.
admin.site.enable_nav_sidebar = False
