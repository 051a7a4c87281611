"""The jobs API. Views are thin: find the object through the caller's scoped queryset (404
outside it), check the body's shape, call the service, render the result."""

from __future__ import annotations

import re
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
from accounts.serializers import PauseInput
from core.api.idempotency import idempotent
from core.api.pagination import int_id, page_params, paginate, prefixed_id
from core.api.params import (
    ACCOUNT_ID,
    BULK_OPERATION_ID,
    EVENT_ID,
    IDEMPOTENCY_KEY,
    JOB_ID,
    SCHEDULE_ID,
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
from core.errors import NotFound
from jobs import rules, selectors, services
from jobs.execution.actions.registry import action_names
from jobs.filters import MULTI_VALUED, JobFilter
from jobs.models import Job, Schedule
from jobs.selectors import AUDIT_ID_FILTERS
from jobs.serializers import (
    ACTION_NAME,
    FILTER_VALUE_SCHEMAS,
    JOB_VALUES,
    AuditEventPageSerializer,
    AuditEventSerializer,
    BulkCancelInput,
    BulkDryRunSerializer,
    BulkOperationInput,
    BulkOperationPageSerializer,
    BulkOperationSerializer,
    CancelInput,
    ConcurrencyLimitInput,
    ConcurrencyLimitListSerializer,
    ConcurrencyLimitSerializer,
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
    RunNowInput,
    ScheduleInput,
    SchedulePageSerializer,
    ScheduleSerializer,
    ScheduleUpdateInput,
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
        if name in JSON_QUERY_PARAMETERS:
            # JSON text in the query string: `content`, not `schema` (json_query_parameters).
            params.append(
                OpenApiParameter(
                    name,
                    {k: v for k, v in schema.items() if k != "description"},
                    description=schema.get("description", ""),
                    extensions={JSON_CONTENT: True},
                )
            )
        elif name in MULTI_VALUED:
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


# Query parameters whose value is JSON text (the payload filter): OpenAPI says so with
# `content: {"application/json": ...}` in place of `schema`, which drf-spectacular's parameters
# cannot write; a marker and the json_query_parameters hook do.
JSON_QUERY_PARAMETERS = frozenset({"payload"})
JSON_CONTENT = "x-jobs-json-content"


def json_query_parameters(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS): each marked parameter takes
    its schema as JSON content."""
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.pop(JSON_CONTENT, False):
                    parameter.pop("style", None)
                    parameter.pop("explode", None)
                    parameter["content"] = {"application/json": {"schema": parameter.pop("schema")}}
    return result


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
    """One job: GET, PATCH, DELETE, and the commands retry, resolve, trigger, cancel."""

    staff_permissions = {
        "retrieve": "jobs.view_job",
        "partial_update": "jobs.change_job",
        "destroy": "jobs.delete_job",
        "retry": "jobs.retry_job",
        "resolve": "jobs.resolve_job",
        "trigger": "jobs.trigger_job",
        "cancel": "jobs.cancel_job",
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

    @extend_schema(
        operation_id="jobs_cancel",
        summary="Cancel job",
        description="Ask the worker running the job to stop it. 202 with the job, still "
        "`running`, its `cancel_requested_at` set: the worker learns of the request with its "
        "next heartbeat, the handler stops at its next ownership check or at the latest at its "
        "timeout, the run is recorded `cancelled` and the job ends `resolved` with the code "
        "`cancelled` and this note. A run that succeeds before its worker saw the request "
        "stays succeeded. A job that is not running (it finished first, or never started) is "
        "a 409 with its current status. Cancelling a job whose cancel is pending changes "
        "nothing (202).",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        request=CancelInput,
        responses={202: JobSerializer, **error_responses(409, 422, body=True)},
        tags=["jobs"],
    )
    @idempotent
    def cancel(self, request: Request, job_id: str) -> Response:
        job = selectors.job_get(principal(request), job_id)
        data = validated(CancelInput, request)
        return self._command(request, job, Command.CANCEL, data, status.HTTP_202_ACCEPTED)

    def _command(
        self,
        request: Request,
        job: Job,
        command: Command,
        data: dict[str, Any],
        status_code: int = status.HTTP_200_OK,
    ) -> Response:
        done = services.job_command(
            command, job_id=job.pk, actor=principal(request).actor, inputs=data
        )
        assert done is not None  # None only for delete, which has its own endpoint
        return Response(job_data(done), status=status_code)


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
        scan = selectors.jobs_search_scan(account_id, params, queryset=JOB_ROWS)
        limit, cursor = page_params(data)
        page = paginate(
            queryset, limit=limit, cursor=cursor, parse_id=prefixed_id("job"), scan=scan
        )
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
        return page_response(request, page, TaskSerializer)

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
        return Response(TaskSerializer(task).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="tasks_get",
        summary="Get task",
        parameters=[TASK_ID],
        responses={200: TaskSerializer, **error_responses()},
        tags=["tasks"],
    )
    def retrieve(self, request: Request, task_id: str) -> Response:
        return Response(TaskSerializer(selectors.task_get(principal(request), task_id)).data)


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


# --- schedules ---------------------------------------------------------------------------------


class ScheduleViewSet(viewsets.ViewSet):
    """The sync schedules of one account: a task created on a cadence (jobs.services.schedules).
    Account keys manage their own account's, as they create its tasks."""

    staff_permissions = {
        "list": "jobs.view_schedule",
        "retrieve": "jobs.view_schedule",
        "create": "jobs.add_schedule",
        "partial_update": "jobs.change_schedule",
        "destroy": "jobs.delete_schedule",
        "pause": "jobs.change_schedule",
        "resume": "jobs.change_schedule",
        "run_now": "jobs.run_schedule",
    }

    def _get(self, request: Request, account_id: str, schedule_id: str) -> Any:
        account = account_selectors.account_get(principal(request), account_id)
        return selectors.schedule_get(principal(request), account.pk, schedule_id)

    def _answer(self, schedule_id: str, status_code: int = status.HTTP_200_OK) -> Response:
        # Read again with its last task, whose status the answer shows.
        schedule = Schedule.objects.select_related("last_task").get(pk=schedule_id)
        return Response(ScheduleSerializer(schedule).data, status=status_code)

    @extend_schema(
        operation_id="schedules_list",
        summary="List schedules",
        parameters=[ACCOUNT_ID, *page_parameters(prefixed_id("sch"))],
        responses={200: SchedulePageSerializer, **error_responses()},
        tags=["schedules"],
    )
    def list(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        reject_unknown_params(request)
        limit, cursor = page_params(request.query_params)
        page = paginate(
            selectors.schedules_of(principal(request), account.pk),
            limit=limit,
            cursor=cursor,
            parse_id=prefixed_id("sch"),
        )
        return page_response(request, page, ScheduleSerializer)

    @extend_schema(
        operation_id="schedules_create",
        summary="Create schedule",
        description="A task of `kind` with `params`, created every `interval_seconds` or at the "
        "times of `cron` (in `timezone`). One per account and kind: 409 `schedule_exists`. "
        "The scheduler creates each due task once, runs a schedule missed while it was down "
        "once, and creates nothing while a job of the same sync is still scheduled, queued or "
        "running (the run is `coalesced`).",
        parameters=[ACCOUNT_ID, IDEMPOTENCY_KEY],
        request=ScheduleInput,
        responses={201: ScheduleSerializer, **error_responses(409, 422, body=True)},
        tags=["schedules"],
    )
    @idempotent
    def create(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        data = validated(ScheduleInput, request)
        schedule = services.schedule_create(
            account=account,
            kind=data["kind"],
            params=data["params"],
            cadence={name: data[name] for name in rules.SCHEDULE_MUTABLE_FIELDS if name in data},
            actor=principal(request).actor,
        )
        return self._answer(schedule.pk, status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="schedules_get",
        summary="Get schedule",
        parameters=[ACCOUNT_ID, SCHEDULE_ID],
        responses={200: ScheduleSerializer, **error_responses()},
        tags=["schedules"],
    )
    def retrieve(self, request: Request, account_id: str, schedule_id: str) -> Response:
        return Response(ScheduleSerializer(self._get(request, account_id, schedule_id)).data)

    @extend_schema(
        operation_id="schedules_update",
        summary="Update schedule",
        description="Change the cadence (`interval_seconds` or `cron`: the one given replaces "
        "the other), `timezone` or `next_run_at`. A new cadence without `next_run_at` runs "
        "next at its first slot from now. `kind` and `params` cannot change (400 "
        "`immutable_field`): delete the schedule and create another.",
        parameters=[ACCOUNT_ID, SCHEDULE_ID],
        request=ScheduleUpdateInput,
        responses={200: ScheduleSerializer, **error_responses(body=True)},
        tags=["schedules"],
    )
    def partial_update(self, request: Request, account_id: str, schedule_id: str) -> Response:
        schedule = self._get(request, account_id, schedule_id)
        services.schedule_update(
            schedule_id=schedule.pk, changes=json_object(request), actor=principal(request).actor
        )
        return self._answer(schedule.pk)

    @extend_schema(
        operation_id="schedules_delete",
        summary="Delete schedule",
        description="The tasks it created stay, and so does its audit trail.",
        parameters=[ACCOUNT_ID, SCHEDULE_ID],
        responses={204: OpenApiResponse(description="Deleted."), **error_responses()},
        tags=["schedules"],
    )
    def destroy(self, request: Request, account_id: str, schedule_id: str) -> Response:
        schedule = self._get(request, account_id, schedule_id)
        services.schedule_delete(schedule_id=schedule.pk, actor=principal(request).actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="schedules_pause",
        summary="Pause schedule",
        description="It creates nothing until resumed. 409 when paused already.",
        parameters=[ACCOUNT_ID, SCHEDULE_ID, IDEMPOTENCY_KEY],
        request=PauseInput,
        responses={200: ScheduleSerializer, **error_responses(409, 422, body=True)},
        tags=["schedules"],
    )
    @idempotent
    def pause(self, request: Request, account_id: str, schedule_id: str) -> Response:
        schedule = self._get(request, account_id, schedule_id)
        data = validated(PauseInput, request)
        services.schedule_pause(
            schedule_id=schedule.pk, actor=principal(request).actor, reason=data.get("reason", "")
        )
        return self._answer(schedule.pk)

    @extend_schema(
        operation_id="schedules_resume",
        summary="Resume schedule",
        description="Runs once at the scheduler's next round if a slot passed while it was "
        "paused, then on its cadence. 409 when not paused.",
        parameters=[ACCOUNT_ID, SCHEDULE_ID, IDEMPOTENCY_KEY],
        request=PauseInput,
        responses={200: ScheduleSerializer, **error_responses(409, 422, body=True)},
        tags=["schedules"],
    )
    @idempotent
    def resume(self, request: Request, account_id: str, schedule_id: str) -> Response:
        schedule = self._get(request, account_id, schedule_id)
        data = validated(PauseInput, request)
        services.schedule_resume(
            schedule_id=schedule.pk, actor=principal(request).actor, reason=data.get("reason", "")
        )
        return self._answer(schedule.pk)

    @extend_schema(
        operation_id="schedules_run_now",
        summary="Run schedule now",
        description="Creates its task now (paused or not), unless a job of the same sync is "
        "still pending: then `last_outcome` is `coalesced` and `last_job_id` names it. Its "
        "cadence keeps its slots.",
        parameters=[ACCOUNT_ID, SCHEDULE_ID, IDEMPOTENCY_KEY],
        request=RunNowInput,
        responses={200: ScheduleSerializer, **error_responses(422, body=True)},
        tags=["schedules"],
    )
    @idempotent
    def run_now(self, request: Request, account_id: str, schedule_id: str) -> Response:
        schedule = self._get(request, account_id, schedule_id)
        validated(RunNowInput, request)
        services.schedule_run_now(schedule_id=schedule.pk, actor=principal(request).actor)
        return self._answer(schedule.pk)


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

# The permission a staff user needs for each bulk command: the same as for the command on one job
# (JobViewSet.staff_permissions; cancel of running jobs is jobs.cancel_job there too). Every
# command in BULK_COMMANDS has one: tests/api/test_bulk_operations_api.py checks.
BULK_PERMISSIONS = {
    Command.RETRY: "jobs.retry_job",
    Command.RESOLVE: "jobs.resolve_job",
    Command.TRIGGER: "jobs.trigger_job",
    Command.DELETE: "jobs.delete_job",
    Command.CANCEL: "jobs.cancel_job",
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
        description="Runs `command` (retry, resolve, trigger, delete, or cancel: of running "
        "jobs) on every job the `filter` (the search body's filters) matches in `account_id`, "
        "or across accounts "
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
                # A privilege, not a malformed body: 403, as for a read-only key.
                raise PermissionDenied(
                    "Only operators may run an operation across accounts (account_id null); "
                    "give your account's id."
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
        responses={200: BulkOperationSerializer, **error_responses(409, 422, body=True)},
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
    "schedules_list",
    "schedules_create",
)
_SCHEDULE_OPERATIONS = (
    "schedules_get",
    "schedules_update",
    "schedules_delete",
    "schedules_pause",
    "schedules_resume",
    "schedules_run_now",
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

    def schedule_ops(base: str) -> dict[str, dict[str, Any]]:
        return {
            op: {
                "operationId": op,
                "parameters": {
                    "path.account_id": f"{base}/account_id",
                    "path.schedule_id": f"{base}/id",
                },
            }
            for op in _SCHEDULE_OPERATIONS
        }

    schedule_links = {
        **{("schedules_create", "201"): schedule_ops("$response.body#")},
        **{
            (op, "200"): schedule_ops("$response.body#")
            for op in _SCHEDULE_OPERATIONS
            if op != "schedules_delete"
        },
        ("schedules_list", "200"): schedule_ops("$response.body#/results/0"),
    }
    return {
        **schedule_links,
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


ACTION_PARAM = OpenApiParameter(
    "action",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="A registered action's name (an unknown one is a 404).",
    pattern=ecma(ACTION_NAME),
)


class ConcurrencyLimitViewSet(viewsets.ViewSet):
    """The per-account concurrency limits of an account: every action that has one, by its
    policy or the account's own; operators set or clear the account's own."""

    operator_actions = ("update",)
    staff_permissions = {
        "list": "accounts.view_account",
        "update": "accounts.change_account",
    }

    @extend_schema(
        operation_id="concurrency_limits_list",
        summary="List an account's concurrency limits",
        description="Each action that caps how many of the account's jobs run at once: the "
        "limit in force, the action's policy (`default`) and the account's own (`own`). A job "
        "over its limit waits (scheduled) without spending an attempt and starts when a slot "
        "frees.",
        parameters=[ACCOUNT_ID],
        responses={200: ConcurrencyLimitListSerializer, **error_responses()},
        tags=["accounts"],
    )
    def list(self, request: Request, account_id: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        reject_unknown_params(request)
        limits = services.limits_of_account(account.pk)
        return Response({"results": [{"action": name, **limit} for name, limit in limits.items()]})

    @extend_schema(
        operation_id="concurrency_limits_set",
        summary="Set an account's concurrency limit for one action (operators)",
        description="`limit` between 1 and 10,000, or null to go back to the action's policy. "
        "Jobs waiting for a slot that the new limit frees are queued at once. 404 for an "
        "action that is not registered.",
        parameters=[ACCOUNT_ID, ACTION_PARAM],
        request=ConcurrencyLimitInput,
        responses={200: ConcurrencyLimitSerializer, **error_responses(body=True)},
        tags=["accounts"],
    )
    def update(self, request: Request, account_id: str, action: str) -> Response:
        account = account_selectors.account_get(principal(request), account_id)
        if not re.match(ACTION_NAME, action) or action not in action_names():
            raise NotFound(f"No action is registered as {action!r}.")
        data = validated(ConcurrencyLimitInput, request)
        services.account_limit_set(
            account_id=account.pk,
            action=action,
            limit=data["limit"],
            actor=principal(request).actor,
        )
        limit = services.limits_of_account(account.pk).get(
            action, {"limit": None, "default": None, "own": None}
        )
        return Response(ConcurrencyLimitSerializer({"action": action, **limit}).data)
