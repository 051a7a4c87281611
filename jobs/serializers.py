"""API shapes: input serializers check the form of a request body (types, unknown fields); the
services check the rules. Output serializers render what PRODUCT.md shows."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.api.pagination import MAX_LIMIT, cursor_pattern, prefixed_id
from core.api.serializers import (
    DATE_TIME_SCHEMA,
    JSON_VALUE_REF,
    LABEL_VALUE,
    NON_BLANK_TEXT,
    TEXT,
    WHITESPACE,
    BlankAsNullCharField,
    JsonObjectField,
    PageSerializer,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictIntegerField,
    StrictSerializer,
    ecma,
    text_rule,
    whole,
)
from core.ids import id_pattern
from core.models import AuditEvent
from jobs import rules
from jobs.execution.actions.registry import (
    event_type_names,
    get_event_route,
    task_kind_names,
    task_params_schema,
)
from jobs.filters import MAX_PAYLOAD_FILTER, PAYLOAD_EXAMPLE
from jobs.models import BulkOperation, Job, ProviderEvent, Schedule, ScheduleOutcome, Task
from jobs.selectors import bulk_progress
from jobs.states import BULK_COMMANDS, Command, JobStatus, TaskStatus, allowed_commands

# --- input -------------------------------------------------------------------------------------
# Each field states the rule the server applies (jobs.rules, jobs.filters, the services), so the
# OpenAPI schema accepts what the server accepts and refuses what it refuses.


class RetryInput(StrictSerializer):
    note = StrictCharField(required=False, allow_blank=True, max_length=rules.MAX_NOTE)


class CancelInput(StrictSerializer):
    note = StrictCharField(
        required=False,
        allow_blank=True,
        max_length=rules.MAX_NOTE,
        help_text="Why: it becomes the note of the job's resolution.",
    )


class TriggerInput(StrictSerializer):
    force = StrictBooleanField(
        required=False,
        default=False,
        help_text="Run even while another job of the same account and action is running.",
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=rules.MAX_NOTE)


class ResolveInput(StrictSerializer):
    code = StrictCharField(
        max_length=50,
        pattern=whole(rules.RESOLUTION_CODE),
        help_text="A short code: ignored, fixed, cancelled, ... (a-z 0-9 _ . -).",
    )
    note = StrictCharField(max_length=rules.MAX_NOTE, non_blank=True, help_text="Why (required).")


LABELS_SCHEMA = {
    "type": "object",
    "maxProperties": rules.MAX_LABELS,
    "propertyNames": {"pattern": ecma(whole(rules.LABEL_KEY))},
    "additionalProperties": {
        "type": "string",
        "maxLength": rules.MAX_LABEL_VALUE,
        "pattern": ecma(rf"\A{LABEL_VALUE}\Z"),
    },
    "description": f"At most {rules.MAX_LABELS} labels: keys of letters, digits, - and _ (50 at "
    f"most), string values ({rules.MAX_LABEL_VALUE} at most).",
}


@extend_schema_field(LABELS_SCHEMA)
class LabelsField(serializers.DictField):
    pass


@extend_schema_field(DATE_TIME_SCHEMA)
class DateTimeText(StrictCharField):
    """A date-time as a string; its value is checked where it is used (rules, filters)."""


class JobUpdateInput(StrictSerializer):
    """Documents PATCH; jobs.rules.clean_changes checks the values and names an immutable field."""

    schema_extra = {"minProperties": 1}

    priority = StrictIntegerField(required=False, min_value=-1000, max_value=1000)
    run_at = DateTimeText(required=False)
    max_attempts = StrictIntegerField(required=False, min_value=1, max_value=100)
    payload = JsonObjectField(required=False, help_text="A JSON object (64 KiB at most).")
    labels = LabelsField(required=False)


# The filters (jobs.filters.JobFilter): the schema of one value. A multi-valued filter takes a
# list of such values or one (and in a string, values separated by commas: so no value has one).
_LIST_ITEM = rf"\A[^,\x00]*[^,\x00{WHITESPACE}][^,\x00]*\Z"
_ID = {
    prefix: {
        "type": "string",
        "pattern": ecma(id_pattern(prefix)),
        "description": f"A {prefix}_... id.",
    }
    for prefix in ("tsk", "evt")
}
FILTER_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "status": {"type": "string", "enum": list(JobStatus.values)},
    "action": {"type": "string", "maxLength": 200, "pattern": ecma(_LIST_ITEM)},
    "last_error_code": {"type": "string", "maxLength": 200, "pattern": ecma(_LIST_ITEM)},
    "label": {
        "type": "string",
        "maxLength": 200,
        "pattern": ecma(rf"\A{whole(rules.LABEL_KEY)[2:-2]}:{LABEL_VALUE}\Z"),
        "description": "key:value; a job matches when it carries every pair given.",
    },
    "task_id": _ID["tsk"],
    "provider_event_id": _ID["evt"],
    **{
        name: {**DATE_TIME_SCHEMA, "description": description}
        for name, description in [
            ("created_after", "Created at or after."),
            ("created_before", "Created before."),
            ("updated_after", "Updated at or after."),
            ("updated_before", "Updated before."),
            ("run_at_after", "Due at or after."),
            ("run_at_before", "Due before."),
        ]
    },
    "attempt_count_min": {"type": "integer", "minimum": 0},
    "attempt_count_max": {"type": "integer", "minimum": 0},
    "q": {
        "type": "string",
        "minLength": 1,
        "pattern": ecma(TEXT),
        "description": "Text in the last error detail, or a job id.",
    },
    "payload": {
        "type": "object",
        "propertyNames": {"pattern": ecma(TEXT)},
        "additionalProperties": JSON_VALUE_REF,
        "description": f"Jobs whose payload contains this JSON object (`{PAYLOAD_EXAMPLE}`), as "
        "PostgreSQL's jsonb containment (@>) means it: each key with a value that contains the "
        "given one; an array contains the given elements, in any order. At most "
        f"{MAX_PAYLOAD_FILTER:,} characters as compact JSON, nested 32 levels at most. In a query "
        "string: the JSON text.",
    },
}
MULTI_VALUED_FILTERS = ("status", "action", "last_error_code", "label")


class FilterValuesField(serializers.Field):
    """A multi-valued filter in a JSON body: one string or a list of strings."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        item = FILTER_VALUE_SCHEMAS[name]
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self._spectacular_annotation = {
            "field": {"oneOf": [item, {"type": "array", "items": item}]}
        }

    def to_internal_value(self, data: Any) -> Any:
        values = data if isinstance(data, list) else [data]
        if not all(isinstance(value, str) for value in values):
            raise serializers.ValidationError("Must be a string or a list of strings.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class FilterTextField(StrictCharField):
    def __init__(self, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self._spectacular_annotation = {"field": FILTER_VALUE_SCHEMAS[name]}


class FilterJsonObjectField(serializers.DictField):
    """A JSON object in a JSON body (the payload filter); jobs.filters checks its rules."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self._spectacular_annotation = {"field": FILTER_VALUE_SCHEMAS[name]}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(f"Must be a JSON object, such as {PAYLOAD_EXAMPLE}.")
        return data


class FilterIntegerField(StrictIntegerField):
    def __init__(self, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self._spectacular_annotation = {"field": FILTER_VALUE_SCHEMAS[name]}


class JobFilterInput(StrictSerializer):
    """The filters of PRODUCT.md in a JSON body. This checks the JSON types (a field's value is a
    string, an integer or a list of strings, as the schema says) and unknown fields; jobs.filters
    checks the values (the one FilterSet shared by the list, search and search-delete)."""

    status = FilterValuesField("status")
    action = FilterValuesField("action")
    last_error_code = FilterValuesField("last_error_code")
    label = FilterValuesField("label")  # type: ignore[assignment]  # a field, not Field.label
    task_id = FilterTextField("task_id")
    provider_event_id = FilterTextField("provider_event_id")
    created_after = FilterTextField("created_after")
    created_before = FilterTextField("created_before")
    updated_after = FilterTextField("updated_after")
    updated_before = FilterTextField("updated_before")
    run_at_after = FilterTextField("run_at_after")
    run_at_before = FilterTextField("run_at_before")
    attempt_count_min = FilterIntegerField("attempt_count_min")
    attempt_count_max = FilterIntegerField("attempt_count_max")
    q = FilterTextField("q")
    payload = FilterJsonObjectField("payload")


class JobSearchInput(JobFilterInput):
    limit = StrictIntegerField(required=False, min_value=1, max_value=MAX_LIMIT, default=50)
    cursor = StrictCharField(
        required=False,
        pattern=cursor_pattern(prefixed_id("job")),
        help_text="`next_cursor` (or `previous_cursor`) of the previous page.",
    )


def _narrowing_nothing(name: str) -> dict[str, Any]:
    """The values of filter `name` that narrow nothing (jobs.filters.has_filters): an empty list,
    text of white space only; none (`{"not": {}}`) when every value narrows."""
    if name in MULTI_VALUED_FILTERS:
        return {"type": "array", "maxItems": 0}
    if name == "q":
        return {"type": "string", "pattern": ecma(rf"\A[{WHITESPACE}]*\Z")}
    if name == "payload":
        return {"type": "object", "maxProperties": 0}
    return {"not": {}}


class JobSearchDeleteInput(JobFilterInput):
    # At least one filter that narrows the set: without one, search-delete refuses (400). Said
    # with `not` (not every filter given narrows nothing), so the body stays one object for
    # generated clients, which read a top-level anyOf as a union of bodies.
    schema_extra = {
        "not": {"properties": {name: _narrowing_nothing(name) for name in FILTER_VALUE_SCHEMAS}},
        # A delete (no dry run) carries the count its dry run showed (jobs.services).
        "if": {"properties": {"dry_run": {"const": False}}},
        "then": {
            "required": ["expected_count"],
            "properties": {"expected_count": {"type": "integer"}},
        },
        "description": "The search's filters, at least one of which narrows the set, `dry_run`, "
        "and, for a delete, `expected_count`.",
    }

    dry_run = StrictBooleanField(
        required=False, default=False, help_text="Count only; delete nothing."
    )
    expected_count = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=0,
        help_text="Required unless `dry_run`: the `matched` of a dry run of the same filter. "
        "When the filter matches another number of jobs, nothing is deleted (409).",
    )


def _component(auto_schema: Any, name: str, schema: dict[str, Any]) -> dict[str, str]:
    """`schema` as a named component (generated clients make one model of each)."""
    component = ResolvedComponent(
        name=name, type=ResolvedComponent.SCHEMA, schema=schema, object=name
    )
    auto_schema.registry.register_on_missing(component)
    return component.ref


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))


def _registered_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    """The schema of a task kind's params or an event type's payload, with the rules every JSON
    object a client sends follows (core.api.serializers.text_rule)."""
    return text_rule(schema or {"type": "object"})


class TaskInput(StrictSerializer):
    """Validated here for its shape; the kind's producer checks its params."""

    kind = StrictCharField(max_length=100, help_text="mailbox_sync, mailbox_resync, ...")
    params = JsonObjectField(required=False, default=dict)


class TaskInputSchema(OpenApiSerializerExtension):
    """One alternative per registered task kind, each with the params that kind accepts."""

    target_class = TaskInput
    priority = 1  # before StrictSerializerSchema

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        return {
            "oneOf": [
                _component(
                    auto_schema,
                    f"TaskInput{_camel(kind)}",
                    {
                        "type": "object",
                        "properties": {
                            "kind": {"type": "string", "const": kind},
                            "params": _registered_schema(task_params_schema(kind)),
                        },
                        "required": ["kind"],
                        "additionalProperties": False,
                    },
                )
                for kind in task_kind_names()
            ]
        }


class ProviderEventInput(StrictSerializer):
    """Validated here for its shape; the event type's producer checks its payload."""

    provider = StrictCharField(max_length=50)
    type = StrictCharField(max_length=100)
    external_id = StrictCharField(max_length=255, help_text="The provider's event id.")
    payload = JsonObjectField(required=False, default=dict)


class ProviderEventInputSchema(OpenApiSerializerExtension):
    """One alternative per registered event type, each with the payload that type accepts."""

    target_class = ProviderEventInput
    priority = 1  # before StrictSerializerSchema

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        basic = auto_schema._map_basic_serializer(self.target, direction)
        external_id = basic["properties"]["external_id"]
        variants = []
        for provider, type_ in event_type_names():
            route = get_event_route(provider, type_)
            schema = {
                "type": "object",
                "properties": {
                    "provider": {"type": "string", "const": provider},
                    "type": {"type": "string", "const": type_},
                    "external_id": external_id,
                    "payload": _registered_schema(route.payload_schema if route else None),
                },
                "required": ["provider", "type", "external_id"],
                "additionalProperties": False,
            }
            name = f"ProviderEventInput{_camel(provider)}{_camel(type_)}"
            variants.append(_component(auto_schema, name, schema))
        return {"oneOf": variants}


# --- output ------------------------------------------------------------------------------------


class ResolutionSerializer(serializers.Serializer):
    code = serializers.CharField()
    note = serializers.CharField()
    by = serializers.CharField()
    at = serializers.DateTimeField()


class JobSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField()
    task_id = serializers.CharField(allow_null=True)
    provider_event_id = serializers.CharField(allow_null=True)
    payload = serializers.DictField()
    labels = serializers.DictField(child=serializers.CharField())
    status = serializers.ChoiceField(choices=JobStatus.choices)
    last_error_code = BlankAsNullCharField(allow_null=True)
    last_error_detail = BlankAsNullCharField(allow_null=True)
    result = serializers.DictField(allow_null=True)
    resolution = ResolutionSerializer(allow_null=True)
    cancel_requested_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When an operator asked for the run to stop (POST /api/jobs/:id/cancel); "
        "null when no cancel is pending or past. The job stays running until its worker "
        "stops the run and resolves it with the code `cancelled`.",
    )
    allowed_commands = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "account_id",
            "task_id",
            "provider_event_id",
            "action",
            "payload",
            "labels",
            "status",
            "priority",
            "run_at",
            "attempt_count",
            "max_attempts",
            "last_error_code",
            "last_error_detail",
            "last_error_at",
            "result",
            "resolution",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "allowed_commands",
        ]
        read_only_fields = fields

    @extend_schema_field(
        {"type": "array", "items": {"type": "string", "enum": list(Command.values)}}
    )
    def get_allowed_commands(self, job: Job) -> list[str]:
        return [command.value for command in allowed_commands(job.status)]


# The list of jobs is the API's hot path: rendering rows straight from `.values()` costs a
# fraction of a ModelSerializer over model instances. JobSerializer documents the same shape
# (the schemathesis test checks that they agree).
JOB_VALUES = tuple(name for name in JobSerializer.Meta.fields if name != "allowed_commands")
_DATETIMES = (
    "run_at",
    "last_error_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "cancel_requested_at",
)
_BLANK_AS_NULL = ("last_error_code", "last_error_detail")
_ALLOWED = {status: [c.value for c in allowed_commands(status)] for status in JobStatus.values}


def _datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # an Unreadable: the database's own text (core.unreadable)
        return value
    if value.tzinfo is not UTC:  # the database's rows are in UTC already: skip the conversion
        value = value.astimezone(UTC)
    text = value.isoformat()  # as DRF renders it with TIME_ZONE = "UTC"
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def job_data(job: Job | dict) -> dict:
    """The API representation of a job (a model instance or a row of `.values(*JOB_VALUES)`)."""
    # This runs for every row of every page: a row is copied in one step (its keys are already
    # in JOB_VALUES order) and only the fields that need it are touched.
    data = dict(job) if isinstance(job, dict) else {n: getattr(job, n) for n in JOB_VALUES}
    for name in _DATETIMES:
        if data[name] is not None:
            data[name] = _datetime(data[name])
    for name in _BLANK_AS_NULL:
        data[name] = data[name] or None
    allowed = _ALLOWED.get(data["status"])
    if allowed is None:  # a status no JobStatus names (written by SQL)
        allowed = [command.value for command in allowed_commands(data["status"])]
    data["allowed_commands"] = allowed
    return data


class JobPageSerializer(PageSerializer):
    results = JobSerializer(many=True)


class SearchDeleteResultSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    deleted = serializers.IntegerField()
    skipped_running = serializers.IntegerField()
    dry_run = serializers.BooleanField()


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "description": "Number of the task's jobs in each job status.",
    }
)
class CountsField(serializers.DictField):
    pass


class TaskSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField()
    params = serializers.DictField()
    status = serializers.ChoiceField(choices=TaskStatus.choices, help_text="Derived from its jobs.")
    job_counts = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "account_id",
            "kind",
            "params",
            "status",
            "job_counts",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CountsField())
    def get_job_counts(self, task: Task) -> dict[str, int]:
        return task.job_counts()


class TaskPageSerializer(PageSerializer):
    results = TaskSerializer(many=True)


class ProviderEventSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField()
    payload = serializers.DictField()
    job_id = serializers.CharField(
        allow_null=True, help_text="The job this event produced, or joined when coalesced."
    )
    jobs = serializers.SerializerMethodField()

    class Meta:
        model = ProviderEvent
        fields = [
            "id",
            "account_id",
            "provider",
            "type",
            "external_id",
            "payload",
            "job_id",
            "coalesced",
            "created_at",
            "jobs",
        ]
        read_only_fields = fields

    @extend_schema_field(JobSerializer(many=True))
    def get_jobs(self, event: ProviderEvent) -> list:
        jobs = Job.objects.filter(provider_event_id=event.pk).order_by("id").values(*JOB_VALUES)
        return [job_data(job) for job in jobs]


class ProviderEventPageSerializer(PageSerializer):
    results = ProviderEventSerializer(many=True)


class AuditEventSerializer(serializers.ModelSerializer):
    # A declared field, taken off the class by the metaclass: Serializer.data stays.
    data = serializers.DictField()  # type: ignore[assignment]
    account_id = BlankAsNullCharField(allow_null=True)
    job_id = BlankAsNullCharField(allow_null=True)
    task_id = BlankAsNullCharField(allow_null=True)
    from_status = BlankAsNullCharField(allow_null=True)
    to_status = BlankAsNullCharField(allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor_type",
            "actor",
            "command",
            "account_id",
            "job_id",
            "task_id",
            "from_status",
            "to_status",
            "reason",
            "data",
        ]
        read_only_fields = fields


class AuditEventPageSerializer(PageSerializer):
    results = AuditEventSerializer(many=True)


# --- bulk operations -----------------------------------------------------------------------------


class StrictNumberField(serializers.FloatField):
    """A JSON number: not a string or a boolean DRF would turn into one."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


MAX_BULK_RATE = 100_000.0
MAX_BULK_WINDOW = 7 * 86_400.0


class PaceInput(StrictSerializer):
    """Exactly one of a rate and a window."""

    schema_extra = {"minProperties": 1, "maxProperties": 1}

    rate = StrictNumberField(
        required=False,
        min_value=0.1,
        max_value=MAX_BULK_RATE,
        help_text="Jobs per second.",
    )
    window_seconds = StrictNumberField(
        required=False,
        min_value=1,
        max_value=MAX_BULK_WINDOW,
        help_text="Spread the set over this many seconds.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError("Give exactly one of rate and window_seconds.")
        return attrs


class BulkOperationInput(StrictSerializer):
    # resolve needs a code and a note that is not blank, as the per-job resolve does: said in
    # the schema (a conditional), so that a client and schemathesis know it before asking.
    schema_extra = {
        "if": {
            "properties": {"command": {"const": Command.RESOLVE.value}},
            "required": ["command"],
        },
        "then": {
            "required": ["code", "note"],
            "properties": {"note": {"minLength": 1, "pattern": ecma(NON_BLANK_TEXT)}},
        },
    }

    command = StrictChoiceField(choices=[command.value for command in BULK_COMMANDS])
    filter = JobFilterInput(
        required=False, help_text="The filters of a search body (`{}`: every job in scope)."
    )
    account_id = StrictCharField(
        allow_null=True,
        pattern=id_pattern("acc"),
        help_text="One account, or null across accounts (operators only).",
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=rules.MAX_NOTE)
    code = StrictCharField(
        required=False,
        max_length=50,
        pattern=whole(rules.RESOLUTION_CODE),
        help_text="resolve: the resolution code (required with a note).",
    )
    force = StrictBooleanField(
        required=False, default=False, help_text="trigger: run beside a running twin."
    )
    pace = PaceInput(
        required=False,
        allow_null=True,
        help_text="retry and trigger: a rate or a window; omitted: JOBS_BULK_DEFAULT_RATE "
        "jobs/s; null: unpaced.",
    )
    dry_run = StrictBooleanField(required=False, default=False, help_text="Count only.")


class BulkDryRunSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    dry_run = serializers.BooleanField()


@extend_schema_field(
    {"type": "object", "additionalProperties": {"type": "integer"}, "description": "By reason."}
)
class SkippedField(serializers.DictField):
    pass


class BulkProgressSerializer(serializers.Serializer):
    matched = serializers.IntegerField()
    done = serializers.IntegerField()
    skipped = serializers.IntegerField()
    skipped_by_reason = SkippedField()
    failed = serializers.IntegerField()
    remaining = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="Jobs handled per second so far.")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="Estimated time left.")


class BulkOperationSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField(allow_null=True)
    filter = serializers.DictField()
    inputs = serializers.DictField()
    pace_rate = serializers.FloatField(source="rate", allow_null=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = BulkOperation
        fields = [
            "id",
            "command",
            "account_id",
            "filter",
            "inputs",
            "note",
            "actor",
            "status",
            "pace_rate",
            "progress",
            "cancelled_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(BulkProgressSerializer)
    def get_progress(self, operation: BulkOperation) -> dict[str, Any]:
        return bulk_progress(operation)


class BulkOperationPageSerializer(PageSerializer):
    results = BulkOperationSerializer(many=True)


class BulkCancelInput(StrictSerializer):
    note = StrictCharField(required=False, allow_blank=True, max_length=rules.MAX_NOTE)


# --- per-account concurrency limits (jobs.services.limits) --------------------------------------

# The most a limit may be: beyond any mailbox provider's cap on connections.
MAX_CONCURRENCY_LIMIT = 10_000
# An action's name as the registry spells it (the path parameter; an unknown one is a 404).
ACTION_NAME = r"\A[a-z][a-z0-9_]{0,99}\Z"


class ConcurrencyLimitSerializer(serializers.Serializer[Any]):
    action = serializers.CharField(help_text="The action the limit applies to.")
    limit = serializers.IntegerField(
        allow_null=True,
        help_text="At most this many of the account's jobs of the action run at once (null: "
        "no limit).",
    )
    default = serializers.IntegerField(
        allow_null=True, help_text="The action's policy (null: no limit)."
    )
    own = serializers.IntegerField(
        allow_null=True, help_text="The account's own limit, overriding the policy (null: none)."
    )


@extend_schema_serializer(many=False)  # one object, even for a list action
class ConcurrencyLimitListSerializer(serializers.Serializer[Any]):
    results = ConcurrencyLimitSerializer(many=True)


class ConcurrencyLimitInput(StrictSerializer):
    limit = StrictIntegerField(
        min_value=1,
        max_value=MAX_CONCURRENCY_LIMIT,
        allow_null=True,
        help_text="The account's own limit; null goes back to the action's policy.",
    )


# --- schedules ---------------------------------------------------------------------------------


class _CadenceFields(StrictSerializer):
    interval_seconds = StrictIntegerField(
        required=False,
        min_value=rules.MIN_INTERVAL_SECONDS,
        max_value=rules.MAX_INTERVAL_SECONDS,
        help_text="Every this many seconds (60 to 31 days); the slots keep their phase.",
    )
    cron = StrictCharField(
        required=False,
        max_length=200,
        pattern=whole(rules.CRON),
        help_text=f"A cron expression: {rules.CRON_RULE}; names of months and days in any case, "
        "`L` (last day of the month), `5L` (last Friday), `1#2` (second Monday). A day of month "
        "of 30 or 31 only, with a day of week of `*`, needs a month of 31 days among its months.",
    )
    timezone = StrictChoiceField(
        choices=sorted(rules.TIME_ZONES),
        required=False,
        help_text="The IANA time zone the cron expression is read in (UTC by default).",
    )
    next_run_at = DateTimeText(
        required=False,
        help_text="When it runs next; by default one interval from now, or the cron "
        "expression's next time. A time past runs it at the scheduler's next round.",
    )


class ScheduleInput(_CadenceFields):
    """Validated here for its shape; the service checks the kind's params and the cadence."""

    kind = StrictCharField(max_length=100, help_text="The task kind: mailbox_sync, ...")
    params = JsonObjectField(required=False, default=dict)


class ScheduleInputSchema(OpenApiSerializerExtension):
    """The fields of a schedule, with the params of the kind it names, and one cadence."""

    target_class = ScheduleInput
    priority = 1  # before StrictSerializerSchema

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        kinds = []
        for kind in task_kind_names():
            kinds.append(
                {
                    "properties": {
                        "kind": {"type": "string", "const": kind},
                        "params": _registered_schema(task_params_schema(kind)),
                    },
                }
            )
        return {
            **schema,
            "additionalProperties": False,
            "allOf": [
                {"oneOf": kinds},
                # An interval or a cron expression: exactly one of them.
                {"oneOf": [{"required": ["interval_seconds"]}, {"required": ["cron"]}]},
            ],
        }


class ScheduleUpdateInput(_CadenceFields):
    """Documents PATCH; jobs.rules.clean_schedule_changes checks the values and names an
    immutable field (kind and params are what a schedule is: another is another schedule)."""

    schema_extra = {
        "minProperties": 1,
        "not": {"required": ["interval_seconds", "cron"]},
        "description": "The cadence (an interval or a cron expression, not both: the one given "
        "replaces the other), its time zone, or the next run.",
    }


class RunNowInput(StrictSerializer):
    """An empty object."""


class ScheduleSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField()
    params = serializers.DictField()
    interval_seconds = serializers.IntegerField(allow_null=True)
    cron = BlankAsNullCharField(allow_null=True)
    timezone = serializers.CharField(source="time_zone")
    paused = serializers.BooleanField(source="is_paused")
    paused_reason = BlankAsNullCharField(allow_null=True)
    last_outcome = serializers.ChoiceField(
        choices=ScheduleOutcome.choices,
        allow_null=True,
        help_text="created: a task; coalesced: a job of the same sync was still pending "
        "(last_job_id); failed: the task could not be made (last_detail).",
    )
    last_task_id = serializers.CharField(allow_null=True, help_text="The task the last run made.")
    last_task_status = serializers.SerializerMethodField()
    last_job_id = BlankAsNullCharField(
        allow_null=True, help_text="The pending job the last run coalesced with."
    )
    last_detail = BlankAsNullCharField(allow_null=True)

    class Meta:
        model = Schedule
        fields = [
            "id",
            "account_id",
            "kind",
            "params",
            "interval_seconds",
            "cron",
            "timezone",
            "paused",
            "paused_at",
            "paused_reason",
            "next_run_at",
            "last_run_at",
            "last_outcome",
            "last_task_id",
            "last_task_status",
            "last_job_id",
            "last_detail",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Schedule) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["last_outcome"] = data["last_outcome"] or None
        return data

    @extend_schema_field(
        {
            "type": ["string", "null"],
            "enum": [*TaskStatus.values, None],
            "description": "The status of the last run's task, derived from its jobs.",
        }
    )
    def get_last_task_status(self, schedule: Schedule) -> str | None:
        return schedule.last_task.status if schedule.last_task_id and schedule.last_task else None


class SchedulePageSerializer(PageSerializer):
    results = ScheduleSerializer(many=True)
