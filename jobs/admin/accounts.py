"""Accounts in the operators' console: the per-account queue summary, pause and resume,
connection settings whose IMAP password is write-only, and the account's own concurrency
limits. Changes go through accounts.services (limits: jobs.services.account_limit_set)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import services
from accounts.models import Account
from core.actors import Actor
from core.admin.messages import DomainErrorMessageMixin
from core.admin.paginators import NoCountAdminMixin
from core.errors import DomainError
from core.templatetags import console
from jobs import reports
from jobs import services as job_services
from jobs.admin import urls
from jobs.admin.forms import AccountForm
from jobs.admin.schedules import account_schedules
from jobs.execution.actions.registry import action_names, policy_for
from jobs.models import ConcurrencyLimit
from jobs.serializers import MAX_CONCURRENCY_LIMIT
from jobs.states import JobStatus


def _action_choices() -> list[tuple[str, str]]:
    choices = []
    for name in action_names():
        default = policy_for(name).per_account_limit
        label = f"{name} (policy: {default})" if default is not None else f"{name} (policy: none)"
        choices.append((name, label))
    return choices


class ConcurrencyLimitForm(forms.ModelForm):
    action = forms.ChoiceField(choices=_action_choices)
    limit = forms.IntegerField(min_value=1, max_value=MAX_CONCURRENCY_LIMIT)

    class Meta:
        model = ConcurrencyLimit
        fields = ["action", "limit"]


class ConcurrencyLimitInline(admin.TabularInline):
    """The account's own caps on how many jobs of an action run at once, overriding the
    action's policy. Saved through the service (AccountAdmin.save_formset): audited, and jobs
    a raised limit lets run are released at once. Who may change the account may change them."""

    model = ConcurrencyLimit
    form = ConcurrencyLimitForm
    extra = 0
    verbose_name = "own concurrency limit"
    verbose_name_plural = (
        "Concurrency limits (the account's own; without one, the action's policy applies)"
    )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.view_account")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.change_account")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.change_account")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("accounts.change_account")


@admin.register(Account)
class AccountAdmin(NoCountAdminMixin, DomainErrorMessageMixin, admin.ModelAdmin):
    form = AccountForm
    inlines = [ConcurrencyLimitInline]
    list_display = ("name", "id", "email", "state_column", "imap_host", "queue_column")
    search_fields = ("name", "email", "=id")
    search_help_text = "Name, email or exact account id."
    ordering = ("-id",)
    sortable_by = ("name",)
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["name", "email"]}),
        (
            "IMAP connection",
            {
                "fields": [
                    "imap_host",
                    "imap_port",
                    "imap_security",
                    "imap_username",
                    "imap_password",
                    "password_state",
                    "imap_folders_text",
                ]
            },
        ),
        ("State", {"fields": ["id", "state_column", "paused_reason", "created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "id",
        "state_column",
        "paused_reason",
        "password_state",
        "created_at",
        "updated_at",
    ]

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        # An account's jobs, tasks and messages would go with it; not a console operation.
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.display(description="state")
    def state_column(self, account: Account) -> str:
        if account.paused_at is not None:  # is_paused, spelled out: the date is then known
            return format_html(
                '<span class="job-status job-status-paused">paused</span> <span class="quiet">'
                "since {}</span>",
                console.ago(account.paused_at),
            )
        return mark_safe('<span class="job-status job-status-active">active</span>')

    @admin.display(description="queue")
    def queue_column(self, account: Account) -> str:
        return format_html(
            '<a href="{}">all jobs</a> · <a href="{}">failed or stalled</a>',
            urls.queue_url(account=account.pk),
            urls.queue_url(account=account.pk, status=urls.NEEDS_OPERATOR_STATUSES),
        )

    @admin.display(description="stored password")
    def password_state(self, account: Account) -> str:
        return "set (encrypted)" if account.imap_password_encrypted else "not set"

    def save_model(
        self, request: HttpRequest, obj: Account, form: AccountForm, change: bool
    ) -> None:
        actor = Actor.user(request.user)
        imap = form.imap_changes(adding=not change)
        if change:
            fields = {
                name: form.cleaned_data[name]
                for name in ("name", "email")
                if name in form.changed_data
            }
            services.account_update(account_id=obj.pk, actor=actor, imap=imap or None, **fields)
        else:
            created = services.account_create(
                name=form.cleaned_data["name"],
                email=form.cleaned_data.get("email") or "",
                actor=actor,
                imap=imap,
            )
            obj.pk = created.pk
        obj.refresh_from_db()

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not ConcurrencyLimit:
            super().save_formset(request, form, formset, change)
            return
        actor = Actor.user(request.user)
        account_id = form.instance.pk
        # The admin's change message reads these; the service keeps the audit trail.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for limit_form in formset.forms:
            if not limit_form.has_changed() and limit_form not in formset.deleted_forms:
                continue
            before = limit_form.initial.get("action")
            if limit_form in formset.deleted_forms:
                if limit_form.instance.pk:
                    job_services.account_limit_set(
                        account_id=account_id, action=before, limit=None, actor=actor
                    )
                continue
            action = limit_form.cleaned_data["action"]
            if before and before != action:
                job_services.account_limit_set(
                    account_id=account_id, action=before, limit=None, actor=actor
                )
            job_services.account_limit_set(
                account_id=account_id,
                action=action,
                limit=limit_form.cleaned_data["limit"],
                actor=actor,
            )

    # Django's error reports (the DEBUG page, mail to ADMINS) then hide the typed password.
    @method_decorator(sensitive_post_parameters("imap_password"))
    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Account | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk and not add:
            summary = reports.account_summary(obj.pk)
            context.update(
                account=obj,
                status_rows=[
                    (
                        status,
                        summary.by_status[status.value],
                        urls.queue_url(account=obj.pk, status=status.value),
                    )
                    for status in JobStatus
                ],
                total_jobs=sum(summary.by_status.values()),
                failing_rows=[
                    (
                        action,
                        code,
                        n,
                        urls.queue_url(
                            account=obj.pk,
                            status=urls.NEEDS_OPERATOR_STATUSES,
                            action=action,
                            last_error_code=code,
                        ),
                    )
                    for action, code, n in summary.failing_actions
                ],
                last_errors=summary.last_errors,
                all_jobs_url=urls.queue_url(account=obj.pk),
                triage_url=urls.triage_url(obj.pk),
                can_pause=self.has_change_permission(request, obj),
                **account_schedules(request, obj.pk),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Django's history (LogEntry) is always empty here: an account's is its audit trail.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(
            reverse("admin:core_auditevent_changelist") + f"?q={unquote(object_id)}"
        )

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/pause/",
                self.admin_site.admin_view(self.pause_view),
                name="accounts_account_pause",
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(self.resume_view),
                name="accounts_account_resume",
            ),
            *super().get_urls(),
        ]

    def _pause_or_resume(self, request: HttpRequest, object_id: str, command: str) -> HttpResponse:
        account = get_object_or_404(Account, pk=object_id)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        service = services.account_pause if command == "pause" else services.account_resume
        try:
            service(
                account_id=account.pk,
                actor=Actor.user(request.user),
                reason=request.POST.get("reason", ""),
            )
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            done = "paused: its scheduled jobs wait" if command == "pause" else "resumed"
            self.message_user(request, f"Account {account.name} {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:accounts_account_change", args=[account.pk]))

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(lambda r: self._pause_or_resume(r, object_id, "pause"))(request)

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return require_POST(lambda r: self._pause_or_resume(r, object_id, "resume"))(request)
