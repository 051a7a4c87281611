"""The bulk operations' pages: the list (who ran what, when, on which filter, with its counts)
and each operation's progress page, which refreshes itself (the live-refresh contract of
core/static/core/live.js: a `data-live` region served again as `?_live=1`, `data-live-done`
once the operation has ended), with a Cancel button for those who may run its command."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.http.request import QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from accounts.models import Account
from core.actors import Actor
from core.admin.paginators import NoCountAdminMixin
from core.errors import DomainError
from jobs import selectors, services
from jobs.admin.filters import QueueFilter
from jobs.models import BulkOperation
from jobs.states import BulkStatus


def filter_words(operation: BulkOperation, account: Account | None = None) -> str:
    """The operation's filter in an operator's words, as the queue describes its own."""
    params = QueryDict(mutable=True)
    for name, values in operation.filter.items():
        if name != services.STALLED_NOW_KEY:
            params.setlist(name, values)
    stalled_now = services.STALLED_NOW_KEY in operation.filter
    words = QueueFilter(operation.account_id or "", stalled_now, params).describe(account)
    return words if operation.account_id else f"every account; {words}"


def progress_url(operation_id: str) -> str:
    return reverse("admin:jobs_bulkoperation_change", args=[operation_id])


def command_permission(request: HttpRequest, command: str) -> bool:
    """Whether the user may run `command` on jobs (and so start or cancel an operation of it)."""
    return bool(request.user.has_perm(f"jobs.{command}_job"))


@admin.register(BulkOperation)
class BulkOperationAdmin(NoCountAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "command",
        "scope",
        "filter_in_words",
        "actor",
        "created_at",
        "status",
        "matched",
        "done",
        "skipped_total",
        "failed",
    )
    list_filter = ("status", "command")
    list_select_related = ("account",)
    ordering = ("-id",)
    search_fields = ("=id", "=actor")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Whoever may look at jobs may look at what was done to them.
        return bool(
            request.user.has_perm("jobs.view_bulkoperation")
            or request.user.has_perm("jobs.view_job")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Operations start from the queue and the triage (or the API), with their filter.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of what was done stays

    def get_queryset(self, request: HttpRequest) -> QuerySet[BulkOperation]:
        return super().get_queryset(request).defer("filter", "inputs")

    @admin.display(description="Scope")
    def scope(self, operation: BulkOperation) -> str:
        return operation.account.name if operation.account else "all accounts"

    @admin.display(description="Filter")
    def filter_in_words(self, operation: BulkOperation) -> str:
        return filter_words(operation, operation.account)

    @admin.display(description="Skipped")
    def skipped_total(self, operation: BulkOperation) -> int:
        return sum(operation.skipped.values())

    def get_queryset_for_page(self) -> QuerySet[BulkOperation]:
        return BulkOperation.objects.select_related("account")

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The progress page (`?_live=1`: its live region alone)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        operation = get_object_or_404(self.get_queryset_for_page(), pk=object_id)
        figures = selectors.bulk_progress(operation)
        context = {
            "operation": operation,
            "progress": figures,
            "handled": figures["matched"] - figures["remaining"],
            "filter_words": filter_words(operation, operation.account),
            "finished": operation.status != BulkStatus.RUNNING,
            "can_cancel": operation.status == BulkStatus.RUNNING
            and command_permission(request, operation.command),
            "cancel_url": reverse("admin:jobs_bulkoperation_cancel", args=[operation.pk]),
        }
        if request.GET.get("_live") == "1":
            return TemplateResponse(request, "admin/jobs/bulkoperation/_progress.html", context)
        context |= {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{operation.command.capitalize()} operation {operation.pk}",
            "live_url": f"{request.path}?_live=1",
        }
        return TemplateResponse(request, "admin/jobs/bulkoperation/progress.html", context)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        operation = get_object_or_404(BulkOperation.objects.only("id", "command"), pk=object_id)
        if not command_permission(request, operation.command):
            raise PermissionDenied
        try:
            services.bulk_operation_cancel(
                operation_id=operation.pk,
                actor=Actor.user(request.user),
                note=request.POST.get("note", ""),
            )
        except DomainError as exc:
            self.message_user(request, f"Not cancelled: {exc.message}", messages.ERROR)
        else:
            self.message_user(
                request,
                "Cancelled: the batch in progress finishes, no other starts. What was done "
                "stays done.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(progress_url(operation.pk))

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="jobs_bulkoperation_cancel",
            ),
            *super().get_urls(),
        ]
