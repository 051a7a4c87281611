"""Accounts in the operators' console: the per-account queue summary, pause and resume, and
connection settings whose IMAP password is write-only. Changes go through accounts.services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
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
from jobs import reports
from jobs.admin import urls
from jobs.admin.forms import AccountForm
from jobs.admin.schedules import account_schedules
from jobs.states import JobStatus


@admin.register(Account)
class AccountAdmin(NoCountAdminMixin, DomainErrorMessageMixin, admin.ModelAdmin):
    form = AccountForm
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
                account.paused_at.strftime("%Y-%m-%d %H:%M UTC"),
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
