"""The jobs API. Views are thin: find the object through the caller's scoped queryset (404
outside it), check the body's shape, call the service, render the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors as account_selectors
from accounts.permissions import principal
from core.api.idempotency import idempotent
from core.api.pagination import int_id, page_params, paginate, prefixed_id
from core.api.params import (
    ACCOUNT_ID,
    BULK_OPERATION_ID,
    EVENT_ID,
    IDEMPOTENCY_KEY,
    JOB_ID,
    TASK_ID,
    page_parameters,
)
from core.api.serializers import DATE_TIME_SCHEMA, TEXT, StrictSerializer, ecma, error_responses
from core.api.views import (
    json_object,
    page_response,
    reject_empty_params,
    reject_unknown_params,
    validated,
)
from core.errors import ValidationFailed
from jobs import selectors, services
from jobs.filters import MULTI_VALUED, JobFilter
from jobs.models import Job, Task
from jobs.selectors import AUDIT_ID_FILTERS
from jobs.serializers import (
    FILTER_VALUE_SCHEMAS,
    JOB_VALUES,
    AuditEventPageSerializer,
    AuditEventSerializer,
    BulkCancelInput,
    BulkDryRunSerializer,
    BulkOperationInput,
    BulkOperationPageSerializer,
    BulkOperationSerializer,
    JobPageSerializer,
    JobSearchDeleteInput,
    JobSearchInput,
    JobSerializer,
    JobUpdateInput,
    ProviderEventInput,
    ProviderEventPageSerializer,
    ProviderEventSerializer,
    ResolveInput,
    RetryInput,
    SearchDeleteResultSerializer,
    TaskInput,
    TaskPageSerializer,
    TaskSerializer,
    TriggerInput,
    job_data,
)
from jobs.states import Command


def _job_filter_params() -> list[OpenApiParameter]:
    """The filters in a query string: the value schemas of the search body
    (jobs.serializers.FILTER_VALUE_SCHEMAS); multi-valued ones repeated or comma-separated."""
    params = []
    for name in JobFilter.base_filters:
        schema = FILTER_VALUE_SCHEMAS[name]
        if name in MULTI_VALUED:
            params.append(
                OpenApiParameter(
                    name,
                    {"type": "array", "items": schema},
                    explode=True,
                    description="Repeated or comma-separated. " + schema.get("description", ""),
                )
            )
        else:
            params.append(
                OpenApiParameter(
                    name,
                    {k: v for k, v in schema.items() if k != "description"},
                    description=schema.get("description", ""),
                )
            )
    return params


def _audit_filter_params() -> list[OpenApiParameter]:
    """The filters of the audit log (jobs.selectors.AuditEventFilter)."""
    ids = [
        OpenApiParameter(
            name,
            {"type": "string", "pattern": ecma(pattern)},
            description=f"A {name[:-3]} id.",
        )
        for name, pattern in AUDIT_ID_FILTERS.items()
    ]
    text = {"type": "string", "minLength": 1, "pattern": ecma(TEXT)}
    return [
        *ids,
        OpenApiParameter("actor", text, description="user:alice, key:ab12..."),
        OpenApiParameter("actor_type", OpenApiTypes.STR, enum=["user", "api_key", "system"]),
        OpenApiParameter("command", text, description="Comma-separated."),
        OpenApiParameter("created_after", DATE_TIME_SCHEMA),
        OpenApiParameter("created_before", DATE_TIME_SCHEMA),
        *page_parameters(int_id),
    ]


# --- jobs ----------------------------------------------------------------------------------------


class JobViewSet(viewsets.ViewSet):
    """One job: GET, PATCH, DELETE, and the commands retry, resolve, trigger."""

    staff_permissions = {
        "retrieve": "jobs.view_job",
        "partial_update": "jobs.change_job",
        "destroy": "jobs.delete_job",
        "retry": "jobs.retry_job",
        "resolve": "jobs.resolve_job",
        "trigger": "jobs.trigger_job",
    }

    @extend_schema(
        operation_id="jobs_get",
        summary="Get job",
        parameters=[JOB_ID],
        responses={200: JobSerializer, **error_responses()},
        tags=["jobs"],
    )
    def retrieve(self, request: Request, job_id: str) -> Response:
        return Response(job_data(selectors.job_get(principal(request), job_id)))

    @extend_schema(
        operation_id="jobs_update",
        summary="Update job",
        description="Change mutable fields only: priority, run_at, max_attempts, payload, labels. "
        "Any other field is a 400 `immutable_field` naming it; a running job is a 409.",
        parameters=[JOB_ID],
        request=JobUpdateInput,
        responses={200: JobSerializer, **error_responses(409, body=True)},
        tags=["jobs"],
    )
    def partial_update(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        job = services.job_update(
            job_id=job.pk, actor=principal(request).actor, changes=json_object(request)
        )
        return Response(job_data(job))

    @extend_schema(
        operation_id="jobs_delete",
        summary="Delete job",
        description="Removes a job that is not running; its audit trail stays.",
        parameters=[JOB_ID],
        responses={204: OpenApiResponse(description="Deleted."), **error_responses(409)},
        tags=["jobs"],
    )
    def destroy(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        services.job_delete(job_id=job.pk, actor=principal(request).actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="jobs_retry",
        summary="Retry job",
        description="A failed or stalled job is queued now, with one more attempt even when "
        "its budget is spent. Other statuses: 409.",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=RetryInput,
        responses={200: JobSerializer, **error_responses(409, 422, body=True)},
        tags=["jobs"],
    )
    @idempotent
    def retry(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        data = validated(RetryInput, request)
        return self._command(request, job, Command.RETRY, data)

    @extend_schema(
        operation_id="jobs_resolve",
        summary="Resolve job",
        description="Close a scheduled, queued, failed or stalled job by hand with a code and "
        "a note. Other statuses: 409.",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=ResolveInput,
        responses={200: JobSerializer, **error_responses(409, 422, body=True)},
        tags=["jobs"],
    )
    @idempotent
    def resolve(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        data = validated(ResolveInput, request)
        return self._command(request, job, Command.RESOLVE, data)

    @extend_schema(
        operation_id="jobs_trigger",
        summary="Trigger job",
        description="Queue a job now, ahead of the line, ignoring run_at and an account pause. "
        "409 when it is running, or when another job of the same account and action is running "
        "(unless `force`).",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=TriggerInput,
        responses={200: JobSerializer, **error_responses(409, 422, body=True)},
        tags=["jobs"],
    )
    @idempotent
    def trigger(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        data = validated(TriggerInput, request)
        return self._command(request, job, Command.TRIGGER, data)

    def _command(
        self, request: Request, job: Job, command: Command, data: dict[str, Any]
    ) -> Response:
        done = services.job_command(
            command, job_id=job.pk, actor=principal(request).actor, inputs=data
        )
        assert done is not None  # None only for delete, which has its own endpoint
        return Response(job_data(done))


def _shaped(serializer_class: type[StrictSerializer], request: Request) -> dict[str, Any]:
    """The JSON body of a search, its fields checked for their JSON types (the serializer) and
    returned as sent: jobs.filters checks their values."""
    body = json_object(request)
    validated(serializer_class, request)
    return body


# `.values()` resolves each of its 21 field names every time it is called: resolve them once,
# here, and let each request clone the result.
JOB_ROWS = Job.objects.values(*JOB_VALUES)


class AccountJobsViewSet(viewsets.ViewSet):
    """The jobs of one account: list, search, search-delete."""

    read_actions = ("search",)

    staff_permissions = {
        "list": "jobs.view_job",
        "search": "jobs.view_job",
        "search_delete": "jobs.delete_job",
    }

    def _page(self, request: Request, account_id: str, data: Mapping[str, Any]) -> Response:
        caller = principal(request)
        # The hot path: scope is checked without a query where the key tells it.
        account_id = account_selectors.account_id_in_scope(caller, account_id)
        queryset, params = selectors.jobs_search(account_id, data, queryset=JOB_ROWS)
        limit, cursor = page_params(data)
        page = paginate(queryset, limit=limit, cursor=cursor, parse_id=prefixed_id("job"))
        if not page.items and caller.is_operator:
            account_selectors.account_get(caller, account_id)  # an unknown account is a 404
        params["limit"] = str(limit)
        base = request.build_absolute_uri(reverse("api-account-jobs", args=[account_id]))
        return page_response(request, page, job_data, base_url=base, query=params)

    @extend_schema(
        operation_id="jobs_list",
        summary="List jobs",
        description="Newest first, cursor-paginated. Filters as in the search body, in the "
        "query string (multi-valued ones repeated or comma-separated).",
        parameters=[ACCOUNT_ID, *_job_filter_params(), *page_parameters(prefixed_id("job"))],
        responses={200: JobPageSerializer, **error_responses()},
        tags=["jobs"],
    )
    def list(self, request: Request, account_id: str) -> Response:
        reject_empty_params(request)
        return self._page(request, account_id, request.query_params)

    @extend_schema(
        operation_id="jobs_search",
        summary="Search jobs",
        description="The filters of the list in a JSON body. `next` links to the equivalent "
        "GET list; `next_cursor` can be posted back as `cursor`.",
        parameters=[ACCOUNT_ID],
        request=JobSearchInput,
        responses={200: JobPageSerializer, **error_responses(body=True)},
        tags=["jobs"],
    )
    def search(self, request: Request, account_id: str) -> Response:
        return self._page(request, account_id, _shaped(JobSearchInput, request))

    @extend_schema(
        operation_id="jobs_search_delete",
        summary="Delete jobs by search",
        description="Deletes every job of the account the filters match, except running ones "
        "(exactly what the same search returns). Deliberate: an empty filter is refused (400), "
        "and a delete must carry `expected_count`, the `matched` of a dry run of the same "
        "filter (400 `expected_count_required` without it). When the filter matches another "
        "number of jobs by then, nothing is deleted: 409 `count_changed` with the current "
        "`matched`. `dry_run` counts only.",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=JobSearchDeleteInput,
        responses={200: SearchDeleteResultSerializer, **error_responses(409, 422, body=True)},
        tags=["jobs"],
    )
    @idempotent
    def search_delete(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        filters = dict(_shaped(JobSearchDeleteInput, request))
        dry_run = filters.pop("dry_run", False)
        expected_count = filters.pop("expected_count", None)
        result = services.jobs_search_delete(
            account_id=account.pk,
            filters=filters,
            actor=principal(request).actor,
            dry_run=dry_run,
            expected_count=expected_count,
        )
        return Response(SearchDeleteResultSerializer(result).data)


# --- tasks ---------------------------------------------------------------------------------------


def _task_data(tasks: list[Task], many: bool = False) -> dict[str, Any]:
    context = {"job_counts": selectors.task_job_counts(task.pk for task in tasks)}
    if many:
        return context
    return TaskSerializer(tasks[0], context=context).data


class TaskViewSet(viewsets.ViewSet):
    """Tasks: created under an account, shown with a status derived from their jobs."""

    staff_permissions = {
        "list": "jobs.view_task",
        "retrieve": "jobs.view_task",
        "create": "jobs.add_task",
    }

    @extend_schema(
        operation_id="tasks_list",
        summary="List tasks",
        parameters=[ACCOUNT_ID, *page_parameters(prefixed_id("tsk"))],
        responses={200: TaskPageSerializer, **error_responses()},
        tags=["tasks"],
    )
    def list(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        reject_unknown_params(request)
        limit, cursor = page_params(request.query_params)
        page = paginate(
            selectors.tasks_visible(principal(request)).filter(account=account),
            limit=limit,
            cursor=cursor,
            parse_id=prefixed_id("tsk"),
        )
        return page_response(request, page, TaskSerializer, context=_task_data(page.items, True))

    @extend_schema(
        operation_id="tasks_create",
        summary="Create task",
        description="Creates a task and, in the same transaction, the jobs its kind produces.",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=TaskInput,
        responses={201: TaskSerializer, **error_responses(422, body=True)},
        tags=["tasks"],
    )
    @idempotent
    def create(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        data = validated(TaskInput, request)
        task = services.task_create(
            account=account,
            kind=data["kind"],
            params=data["params"],
            actor=principal(request).actor,
        )
        return Response(_task_data([task]), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="tasks_get",
        summary="Get task",
        parameters=[TASK_ID],
        responses={200: TaskSerializer, **error_responses()},
        tags=["tasks"],
    )
    def retrieve(self, request: Request, task_id: str) -> Response:
        return Response(_task_data([selectors.task_get(principal(request), task_id)]))


# --- provider events -----------------------------------------------------------------------------


class ProviderEventViewSet(viewsets.ViewSet):
    """Events pushed by mail providers, deduplicated on the provider's event id."""

    staff_permissions = {
        "list": "jobs.view_providerevent",
        "retrieve": "jobs.view_providerevent",
        "create": "jobs.add_providerevent",
    }

    @extend_schema(
        operation_id="provider_events_create",
        summary="Ingest provider event",
        description="201 with the jobs a new event produced; 200 with the original event when "
        "its external id was seen before (nothing is created).",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=ProviderEventInput,
        responses={
            201: OpenApiResponse(ProviderEventSerializer, description="A new event."),
            200: OpenApiResponse(ProviderEventSerializer, description="A duplicate: the original."),
            **error_responses(422, body=True),
        },
        tags=["provider events"],
    )
    @idempotent
    def create(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        data = validated(ProviderEventInput, request)
        event, created = services.provider_event_ingest(
            account=account,
            provider=data["provider"],
            type=data["type"],
            external_id=data["external_id"],
            payload=data["payload"],
            actor=principal(request).actor,
        )
        return Response(
            ProviderEventSerializer(event).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        operation_id="provider_events_list",
        summary="List provider events",
        parameters=[ACCOUNT_ID, *page_parameters(prefixed_id("evt"))],
        responses={200: ProviderEventPageSerializer, **error_responses()},
        tags=["provider events"],
    )
    def list(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        reject_unknown_params(request)
        limit, cursor = page_params(request.query_params)
        page = paginate(
            selectors.provider_events_visible(principal(request)).filter(account=account),
            limit=limit,
            cursor=cursor,
            parse_id=prefixed_id("evt"),
        )
        return page_response(request, page, ProviderEventSerializer)

    @extend_schema(
        operation_id="provider_events_get",
        summary="Get provider event",
        parameters=[EVENT_ID],
        responses={200: ProviderEventSerializer, **error_responses()},
        tags=["provider events"],
    )
    def retrieve(self, request: Request, event_id: str) -> Response:
        event = selectors.provider_event_get(principal(request), event_id)
        return Response(ProviderEventSerializer(event).data)


# --- audit log -----------------------------------------------------------------------------------


class AuditEventViewSet(viewsets.ViewSet):
    """Who did what to which job, when and why."""

    staff_permissions = {"list": "core.view_auditevent"}

    @extend_schema(
        operation_id="audit_events_list",
        summary="Search the audit log",
        description="Newest first. An account key sees its own account's events only.",
        parameters=_audit_filter_params(),
        responses={200: AuditEventPageSerializer, **error_responses()},
        tags=["audit"],
    )
    def list(self, request: Request) -> Response:
        reject_empty_params(request)
        queryset = selectors.audit_events_search(principal(request), request.query_params)
        limit, cursor = page_params(request.query_params)
        page = paginate(queryset, limit=limit, cursor=cursor, parse_id=int_id)
        return page_response(request, page, AuditEventSerializer)


# --- bulk operations -----------------------------------------------------------------------------

# The permission a staff user needs for each bulk command: the same as for the command on one job.
BULK_PERMISSIONS = {
    Command.RETRY: "jobs.retry_job",
    Command.RESOLVE: "jobs.resolve_job",
    Command.TRIGGER: "jobs.trigger_job",
    Command.DELETE: "jobs.delete_job",
}


class BulkOperationViewSet(viewsets.ViewSet):
    """Commands over everything a filter matches, run in the background (jobs.services.bulk)."""

    # Whoever may see jobs may see what was done to them; starting and cancelling also need
    # the command's own permission (BULK_PERMISSIONS, checked in the view: it depends on the body).
    staff_permissions = {
        "list": "jobs.view_job",
        "retrieve": "jobs.view_job",
        "create": "jobs.view_job",
        "cancel": "jobs.view_job",
    }

    @extend_schema(
        operation_id="bulk_operations_create",
        summary="Start a bulk operation",
        description="Runs `command` (retry, resolve, trigger, delete) on every job the "
        "`filter` (the search body's filters) matches in `account_id`, or across accounts "
        "when it is null (operators only; an account key's own account otherwise, 404 for any "
        "other). The set is fixed now: jobs that match later are not swept in. 202 with the "
        "operation, which runs in the background in batches; 200 with the count for a "
        "`dry_run`. resolve takes `code` and `note`; trigger `force`; retry and trigger "
        "`pace`. A staff user needs the command's own permission.",
        parameters=[IDEMPOTENCY_KEY],
        request=BulkOperationInput,
        responses={
            202: OpenApiResponse(BulkOperationSerializer, description="Started."),
            200: OpenApiResponse(BulkDryRunSerializer, description="A dry run: the count."),
            **error_responses(422, body=True),
        },
        tags=["bulk operations"],
    )
    @idempotent
    def create(self, request: Request) -> Response:
        caller = principal(request)
        data = validated(BulkOperationInput, request)
        command = Command(data["command"])
        if caller.user is not None and not caller.user.has_perm(BULK_PERMISSIONS[command]):
            raise PermissionDenied(f"You do not have the permission {BULK_PERMISSIONS[command]}.")
        account_id = data["account_id"]
        if account_id is None:
            if not caller.is_operator:
                raise ValidationFailed.for_field(
                    "account_id", "Only operators may run an operation across accounts."
                )
        else:
            account_id = account_selectors.account_get(caller, account_id).pk
        body = json_object(request)
        inputs = {"code": data.get("code", ""), "force": data.get("force", False)}
        result = services.bulk_operation_create(
            command=command,
            filters=body.get("filter") or {},
            account_id=account_id,
            actor=caller.actor,
            note=data.get("note", ""),
            inputs=inputs,
            pace=data.get("pace"),
            default_pace="pace" not in body,
            dry_run=data["dry_run"],
        )
        if isinstance(result, int):
            return Response({"matched": result, "dry_run": True})
        return Response(BulkOperationSerializer(result).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="bulk_operations_list",
        summary="List bulk operations",
        description="Newest first, with their progress.",
        parameters=page_parameters(prefixed_id("bop")),
        responses={200: BulkOperationPageSerializer, **error_responses()},
        tags=["bulk operations"],
    )
    def list(self, request: Request) -> Response:
        reject_unknown_params(request)
        limit, cursor = page_params(request.query_params)
        page = paginate(
            selectors.bulk_operations_visible(principal(request)),
            limit=limit,
            cursor=cursor,
            parse_id=prefixed_id("bop"),
        )
        return page_response(request, page, BulkOperationSerializer)

    @extend_schema(
        operation_id="bulk_operations_get",
        summary="Get bulk operation",
        description="Its progress: matched, done, skipped by reason, failed, rate, time left.",
        parameters=[BULK_OPERATION_ID],
        responses={200: BulkOperationSerializer, **error_responses()},
        tags=["bulk operations"],
    )
    def retrieve(self, request: Request, operation_id: str) -> Response:
        operation = selectors.bulk_operation_get(principal(request), operation_id)
        return Response(BulkOperationSerializer(operation).data)

    @extend_schema(
        operation_id="bulk_operations_cancel",
        summary="Cancel bulk operation",
        description="Stops it after the batch in progress; what was done stays done and "
        "counted. 409 with its status when it has already ended.",
        parameters=[BULK_OPERATION_ID, IDEMPOTENCY_KEY],
        request=BulkCancelInput,
        responses={200: BulkOperationSerializer, **error_responses(409, body=True)},
        tags=["bulk operations"],
    )
    @idempotent
    def cancel(self, request: Request, operation_id: str) -> Response:
        caller = principal(request)
        operation = selectors.bulk_operation_get(caller, operation_id)
        command = Command(operation.command)
        if caller.user is not None and not caller.user.has_perm(BULK_PERMISSIONS[command]):
            raise PermissionDenied(f"You do not have the permission {BULK_PERMISSIONS[command]}.")
        data = validated(BulkCancelInput, request)
        operation = services.bulk_operation_cancel(
            operation_id=operation.pk, actor=caller.actor, note=data.get("note", "")
        )
        return Response(BulkOperationSerializer(operation).data)


# --- OpenAPI links -------------------------------------------------------------------------------
# How the answer of one operation feeds the next (OpenAPI links): a client, or schemathesis'
# stateful tests, can walk from a new account to its tasks and jobs and the commands on them.

_ACCOUNT_OPERATIONS = (
    "accounts_get",
    "accounts_pause",
    "accounts_resume",
    "jobs_list",
    "jobs_search",
    "jobs_search_delete",
    "tasks_list",
    "tasks_create",
    "provider_events_list",
    "provider_events_create",
)
_JOB_OPERATIONS = (
    "jobs_get",
    "jobs_update",
    "jobs_delete",
    "jobs_retry",
    "jobs_resolve",
    "jobs_trigger",
)


def _links(operations: Any, name: str, value: str) -> dict[str, dict[str, Any]]:
    return {op: {"operationId": op, "parameters": {f"path.{name}": value}} for op in operations}


def _openapi_links() -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
    account, first = "$response.body#/id", "$response.body#/results/0/id"
    job_ops = _links(_JOB_OPERATIONS, "job_id", "$response.body#/id")
    first_job = _links(_JOB_OPERATIONS, "job_id", first)
    audit = {
        "audit_events_list": {
            "operationId": "audit_events_list",
            "parameters": {"query.account_id": account},
        }
    }
    task_jobs = {
        "jobs_list_of_task": {
            "operationId": "jobs_list",
            "parameters": {
                "path.account_id": "$response.body#/account_id",
                "query.task_id": "$response.body#/id",
            },
        }
    }
    event = {
        **_links(["provider_events_get"], "event_id", "$response.body#/id"),
        **_links(_JOB_OPERATIONS, "job_id", "$response.body#/jobs/0/id"),
    }
    return {
        ("accounts_create", "201"): {**_links(_ACCOUNT_OPERATIONS, "account_id", account), **audit},
        ("accounts_get", "200"): _links(_ACCOUNT_OPERATIONS, "account_id", account),
        ("accounts_list", "200"): _links(_ACCOUNT_OPERATIONS, "account_id", first),
        ("tasks_create", "201"): {**_links(["tasks_get"], "task_id", account), **task_jobs},
        ("tasks_list", "200"): _links(["tasks_get"], "task_id", first),
        ("provider_events_create", "201"): event,
        ("provider_events_create", "200"): event,
        ("provider_events_list", "200"): _links(["provider_events_get"], "event_id", first),
        ("jobs_list", "200"): first_job,
        ("jobs_search", "200"): first_job,
        **{(op, "200"): job_ops for op in _JOB_OPERATIONS if op != "jobs_delete"},
        ("bulk_operations_create", "202"): _links(
            ["bulk_operations_get", "bulk_operations_cancel"], "operation_id", "$response.body#/id"
        ),
    }


def add_openapi_links(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): the links of _openapi_links."""
    links = _openapi_links()
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for status_code, response in operation.get("responses", {}).items():
                found = links.get((operation.get("operationId"), status_code))
                if found:
                    response["links"] = found
    return result
