from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path, reverse_lazy
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework.permissions import AllowAny

from accounts.api import AccountViewSet
from core.api.docs import same_origin_only
from core.api.exceptions import api_not_found
from core.health import healthz
from core.views import favicon
from jobs.api import (
    AccountJobsViewSet,
    AuditEventViewSet,
    BulkOperationViewSet,
    ConcurrencyLimitViewSet,
    JobViewSet,
    ProviderEventViewSet,
    ScheduleViewSet,
    TaskViewSet,
)
from jobs.monitoring.metrics import metrics_view

# The exact paths of PRODUCT.md: no trailing slashes. Ids are matched loosely here so that a
# malformed id reaches the view, which answers the same 404 as for an unknown id.
api = [
    path(
        "accounts", AccountViewSet.as_view({"get": "list", "post": "create"}), name="api-accounts"
    ),
    path(
        "accounts/<str:account_id>", AccountViewSet.as_view({"get": "retrieve"}), name="api-account"
    ),
    path("accounts/<str:account_id>/pause", AccountViewSet.as_view({"post": "pause"})),
    path("accounts/<str:account_id>/resume", AccountViewSet.as_view({"post": "resume"})),
    path(
        "accounts/<str:account_id>/jobs",
        AccountJobsViewSet.as_view({"get": "list"}),
        name="api-account-jobs",
    ),
    path("accounts/<str:account_id>/jobs/search", AccountJobsViewSet.as_view({"post": "search"})),
    path(
        "accounts/<str:account_id>/jobs/search-delete",
        AccountJobsViewSet.as_view({"post": "search_delete"}),
    ),
    path(
        "accounts/<str:account_id>/tasks",
        TaskViewSet.as_view({"get": "list", "post": "create"}),
    ),
    path(
        "accounts/<str:account_id>/concurrency-limits",
        ConcurrencyLimitViewSet.as_view({"get": "list"}),
    ),
    path(
        "accounts/<str:account_id>/concurrency-limits/<str:action>",
        ConcurrencyLimitViewSet.as_view({"put": "update"}),
    ),
    path(
        "accounts/<str:account_id>/provider-events",
        ProviderEventViewSet.as_view({"get": "list", "post": "create"}),
    ),
    path(
        "accounts/<str:account_id>/schedules",
        ScheduleViewSet.as_view({"get": "list", "post": "create"}),
    ),
    path(
        "accounts/<str:account_id>/schedules/<str:schedule_id>",
        ScheduleViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
    ),
    path(
        "accounts/<str:account_id>/schedules/<str:schedule_id>/pause",
        ScheduleViewSet.as_view({"post": "pause"}),
    ),
    path(
        "accounts/<str:account_id>/schedules/<str:schedule_id>/resume",
        ScheduleViewSet.as_view({"post": "resume"}),
    ),
    path(
        "accounts/<str:account_id>/schedules/<str:schedule_id>/run-now",
        ScheduleViewSet.as_view({"post": "run_now"}),
    ),
    path(
        "jobs/<str:job_id>",
        JobViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="api-job",
    ),
    path("jobs/<str:job_id>/retry", JobViewSet.as_view({"post": "retry"})),
    path("jobs/<str:job_id>/resolve", JobViewSet.as_view({"post": "resolve"})),
    path("jobs/<str:job_id>/trigger", JobViewSet.as_view({"post": "trigger"})),
    path("jobs/<str:job_id>/cancel", JobViewSet.as_view({"post": "cancel"})),
    path("tasks/<str:task_id>", TaskViewSet.as_view({"get": "retrieve"})),
    path("provider-events/<str:event_id>", ProviderEventViewSet.as_view({"get": "retrieve"})),
    path("audit-events", AuditEventViewSet.as_view({"get": "list"})),
    path("bulk-operations", BulkOperationViewSet.as_view({"get": "list", "post": "create"})),
    path(
        "bulk-operations/<str:operation_id>",
        BulkOperationViewSet.as_view({"get": "retrieve"}),
        name="api-bulk-operation",
    ),
    path(
        "bulk-operations/<str:operation_id>/cancel",
        BulkOperationViewSet.as_view({"post": "cancel"}),
    ),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api-schema",
    ),
    path(
        "docs/",
        same_origin_only(
            SpectacularSwaggerView.as_view(
                url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny]
            )
        ),
        name="api-docs",
    ),
    path(
        "redoc/",
        same_origin_only(
            SpectacularRedocView.as_view(
                url_name="api-schema",
                # drf-spectacular's page loads its fonts from Google; this one uses the system's.
                template_name="api/redoc.html",
                authentication_classes=[],
                permission_classes=[AllowAny],
            )
        ),
        name="api-redoc",
    ),
]

# The admin's "View site" link: the console has no site of its own beyond the admin, so it leads
# to the operators' home page, the jobs dashboard.
admin.site.site_url = reverse_lazy("admin:jobs_job_dashboard")  # type: ignore[assignment]  # a lazy URL, resolved when the admin renders

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", csrf_exempt(metrics_view), name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("admin/", admin.site.urls),
    path("api/", include(api)),
    re_path(r"^api(/.*)?$", api_not_found),
]

# JSON under /api/, Django's pages elsewhere.
handler400 = "core.api.exceptions.api_bad_request"
handler403 = "core.api.exceptions.api_permission_denied"
handler404 = "core.api.exceptions.api_page_not_found"
handler500 = "core.api.exceptions.api_server_error"
