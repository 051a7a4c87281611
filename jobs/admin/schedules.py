"""Sync schedules in the operators' console: a list of every account's schedules (next run,
last run and its outcome, pause, resume, run now), their add and edit pages, and the POST
views the account page's schedule section posts to. Every change goes through
jobs.services.schedules; buttons and actions show only with their permission (change for
pause and resume, run_schedule for run now)."""

from __future__ import annotations

from typing import Any

from cronsim import CronSim
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.models import Account
from core.actors import Actor
from core.admin.messages import DomainErrorMessageMixin
from core.admin.paginators import NoCountAdminMixin
from core.errors import DomainError
from jobs import services
from jobs.admin import urls
from jobs.admin.forms import ScheduleForm
from jobs.models import Schedule, ScheduleOutcome


def has_run_permission(request: HttpRequest) -> bool:
    return request.user.has_perm("jobs.run_schedule")


def outcome_html(schedule: Schedule) -> str:
    """The last run: what it did, with a link to the task it made or the job it joined."""
    if not schedule.last_outcome:
        return format_html('<span class="quiet">{}</span>', "not run yet")
    label = ScheduleOutcome(schedule.last_outcome).label
    badge = {"created": "succeeded", "coalesced": "scheduled", "failed": "failed"}
    pill = format_html(
        '<span class="job-status job-status-{}">{}</span>', badge[schedule.last_outcome], label
    )
    if schedule.last_task_id:
        task = schedule.last_task
        status = f" ({task.status})" if task else ""
        return format_html(
            '{} <a href="{}">task {}</a>{}',
            pill,
            urls.queue_url(task_id=schedule.last_task_id),
            schedule.last_task_id,
            status,
        )
    if schedule.last_job_id:
        return format_html(
            '{} <a href="{}">{}</a>', pill, urls.job_url(schedule.last_job_id), schedule.last_job_id
        )
    return format_html('{} <span class="quiet">{}</span>', pill, schedule.last_detail)


def cadence_html(schedule: Schedule) -> str:
    """The cadence, with a cron expression spelled out in words (cronsim's explanation)."""
    if not schedule.cron:
        return schedule.cadence
    try:
        words = CronSim(schedule.cron, timezone.now()).explain()
    except Exception:  # an expression cronsim cannot put in words is still shown as it is
        words = ""
    return format_html('{} <span class="quiet">{}</span>', schedule.cadence, words)


def state_html(schedule: Schedule) -> str:
    if schedule.is_paused:
        return format_html('<span class="job-status job-status-paused">{}</span>', "paused")
    if schedule.account.is_paused:
        return format_html('<span class="job-status job-status-paused">{}</span>', "account paused")
    return format_html('<span class="job-status job-status-active">{}</span>', "active")


@admin.register(Schedule)
class ScheduleAdmin(NoCountAdminMixin, DomainErrorMessageMixin, admin.ModelAdmin):
    form = ScheduleForm
    list_display = (
        "id",
        "account_column",
        "kind",
        "cadence_column",
        "state_column",
        "next_run_at",
        "last_run_at",
        "outcome_column",
    )
    list_select_related = ("account", "last_task")
    list_filter = ("kind", "last_outcome")
    search_fields = ("=id", "=account__id", "account__name")
    search_help_text = "Exact schedule or account id, or account name."
    ordering = ("next_run_at", "id")
    sortable_by = ("next_run_at", "last_run_at")
    list_per_page = 100
    actions = ["pause_selected", "resume_selected", "run_selected"]
    readonly_fields = ("id", "state_column", "last_run_at", "outcome_column", "created_at")

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        what = ["account", "kind", "params"] if obj is None else ["id", "account", "kind"]
        fieldsets: list[Any] = [
            (None, {"fields": what}),
            (
                "Cadence",
                {
                    "fields": ["interval_seconds", "cron", "time_zone", "next_run_at"],
                    "description": "An interval in seconds (60 at least) or a cron expression "
                    "(minute hour day-of-month month day-of-week, read in the time zone): one "
                    "of the two. Leave the next run empty for the cadence's first slot.",
                },
            ),
        ]
        if obj is not None:
            fieldsets.append(
                ("Last run", {"fields": ["state_column", "last_run_at", "outcome_column"]})
            )
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        # What a schedule is (its account, kind and params) is fixed: another is another.
        fixed = ("account", "kind") if obj is not None else ()
        return (*self.readonly_fields, *fixed)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None:
            # The params are not edited (with the read-only fields, which Django excludes
            # itself unless told what to exclude).
            kwargs["exclude"] = ["params", *self.get_readonly_fields(request, obj)]
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial: dict[str, Any] = dict(super().get_changeform_initial_data(request))
        initial.setdefault("kind", "mailbox_sync")
        initial.setdefault("interval_seconds", 300)
        return initial

    @admin.display(description="account")
    def account_column(self, schedule: Schedule) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:accounts_account_change", args=[schedule.account_id]),
            schedule.account.name,
        )

    @admin.display(description="cadence")
    def cadence_column(self, schedule: Schedule) -> str:
        return cadence_html(schedule)

    @admin.display(description="state")
    def state_column(self, schedule: Schedule) -> str:
        return state_html(schedule)

    @admin.display(description="last outcome")
    def outcome_column(self, schedule: Schedule) -> str:
        return outcome_html(schedule)

    # --- saving through the services ------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        actor = Actor.user(request.user)
        cadence = form.cadence()
        if change:
            changes = {
                name: value
                for name, value in cadence.items()
                if form.cadence_changed(name) and not (name == "next_run_at" and value is None)
            }
            if changes:
                services.schedule_update(schedule_id=obj.pk, changes=changes, actor=actor)
        else:
            created = services.schedule_create(
                account=form.cleaned_data["account"],
                kind=form.cleaned_data["kind"],
                params=form.cleaned_data.get("params") or {},
                cadence={k: v for k, v in cadence.items() if v is not None},
                actor=actor,
            )
            obj.pk = created.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule_id=obj.pk, actor=Actor.user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule_id in queryset.values_list("pk", flat=True):
            services.schedule_delete(schedule_id=schedule_id, actor=Actor.user(request.user))

    # --- commands: admin actions and the account page's buttons ------------------------------

    def has_run_permission(self, request: HttpRequest) -> bool:
        return has_run_permission(request)

    def _each(self, request: HttpRequest, queryset: QuerySet[Schedule], command: str) -> None:
        done, refused = 0, []
        for schedule_id in queryset.values_list("pk", flat=True):
            try:
                self._run(request, schedule_id, command)
                done += 1
            except DomainError as exc:
                refused.append(exc.message)
        self.message_user(request, f"{command}: {done} done.", messages.SUCCESS)
        if refused:
            self.message_user(
                request, f"{len(refused)} refused: " + " ".join(refused[:5]), messages.WARNING
            )

    @admin.action(description="Pause selected schedules", permissions=["change"])
    def pause_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, "pause")

    @admin.action(description="Resume selected schedules", permissions=["change"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, "resume")

    @admin.action(description="Run selected schedules now", permissions=["run"])
    def run_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, "run now")

    def _run(self, request: HttpRequest, schedule_id: str, command: str) -> Schedule:
        actor = Actor.user(request.user)
        reason = request.POST.get("reason", "")
        if command == "pause":
            return services.schedule_pause(schedule_id=schedule_id, actor=actor, reason=reason)
        if command == "resume":
            return services.schedule_resume(schedule_id=schedule_id, actor=actor, reason=reason)
        return services.schedule_run_now(schedule_id=schedule_id, actor=actor)

    def account_fragment_view(self, request: HttpRequest, account_id: str) -> HttpResponse:
        """The account page's schedule section alone, for its live region (the page's own
        live refresh, core/static/core/live.js, fetches it every few seconds)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        account = get_object_or_404(Account, pk=account_id)
        context = {"account": account, **account_schedules(request, account.pk)}
        return TemplateResponse(request, "admin/jobs/schedule/_account_schedules.html", context)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "account/<path:account_id>/live/",
                self.admin_site.admin_view(self.account_fragment_view),
                name="jobs_schedule_account_live",
            ),
            path(
                "<path:object_id>/pause/",
                self.admin_site.admin_view(self.command_view),
                {"command": "pause"},
                name="jobs_schedule_pause",
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(self.command_view),
                {"command": "resume"},
                name="jobs_schedule_resume",
            ),
            path(
                "<path:object_id>/run-now/",
                self.admin_site.admin_view(self.command_view),
                {"command": "run now"},
                name="jobs_schedule_run_now",
            ),
            *super().get_urls(),
        ]

    def command_view(self, request: HttpRequest, object_id: str, command: str) -> HttpResponse:
        return require_POST(lambda r: self._command(r, object_id, command))(request)

    def _command(self, request: HttpRequest, object_id: str, command: str) -> HttpResponse:
        schedule = get_object_or_404(Schedule, pk=object_id)
        allowed = (
            has_run_permission(request)
            if command == "run now"
            else self.has_change_permission(request, schedule)
        )
        if not allowed:
            raise PermissionDenied
        try:
            done = self._run(request, schedule.pk, command)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            said = {
                "pause": "paused: it creates nothing until resumed",
                "resume": "resumed",
                "run now": f"run now: {ScheduleOutcome(done.last_outcome).label.lower()}",
            }[command]
            self.message_user(request, f"Schedule {schedule.pk} {said}.", messages.SUCCESS)
        back = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            back = reverse("admin:jobs_schedule_change", args=[schedule.pk])
        return HttpResponseRedirect(back)


def account_schedules(request: HttpRequest, account_id: str) -> dict[str, Any]:
    """The account page's schedule section (admin/jobs/schedule/_account_schedules.html): its
    schedules and what the operator may do; also the context of its live fragment."""
    schedules = list(
        Schedule.objects.filter(account_id=account_id)
        .select_related("account", "last_task")
        .order_by("kind")
    )
    return {
        "schedules": [
            (schedule, cadence_html(schedule), state_html(schedule), outcome_html(schedule))
            for schedule in schedules
        ],
        "can_change_schedules": request.user.has_perm("jobs.change_schedule"),
        "can_run_schedules": has_run_permission(request),
        "can_add_schedule": request.user.has_perm("jobs.add_schedule"),
        "add_schedule_url": reverse("admin:jobs_schedule_add") + f"?account={account_id}",
        "schedules_url": reverse("admin:jobs_schedule_changelist") + f"?q={account_id}",
        "schedules_fragment_url": reverse("admin:jobs_schedule_account_live", args=[account_id]),
        "back_url": reverse("admin:accounts_account_change", args=[account_id]),
    }
