"""API shapes: input serializers check the form of a request body (types, unknown fields); the
services check the rules. Output serializers render what PRODUCT.md shows."""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api.serializers import (
    BlankAsNullCharField,
    PageSerializer,
    StrictCharField,
    StrictSerializer,
)
from core.models import AuditEvent
from jobs.models import Job, ProviderEvent, Task
from jobs.states import Command, JobStatus, TaskStatus, allowed_commands

# --- input -------------------------------------------------------------------------------------


class RetryInput(StrictSerializer):
    note = StrictCharField(required=False, allow_blank=True, max_length=2000)


class TriggerInput(StrictSerializer):
    force = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Run even while another job of the same account and action is running.",
    )
    note = StrictCharField(required=False, allow_blank=True, max_length=2000)


class ResolveInput(StrictSerializer):
    code = StrictCharField(
        max_length=50, help_text="A short code: ignored, fixed, cancelled, ... (a-z 0-9 _ . -)."
    )
    note = StrictCharField(max_length=2000, help_text="Why (required).")


class JobUpdateInput(StrictSerializer):
    """Documents PATCH; job_update checks the values and names any immutable field."""

    priority = serializers.IntegerField(required=False, min_value=-1000, max_value=1000)
    run_at = serializers.DateTimeField(required=False)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)
    payload = serializers.DictField(required=False)
    labels = serializers.DictField(
        child=StrictCharField(max_length=200, allow_blank=True), required=False
    )


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
        ],
        "description": "One value, a comma-separated string or a list.",
    }
)
class StringOrList(serializers.JSONField):
    pass


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "enum": list(JobStatus.values)},
            {"type": "array", "items": {"type": "string", "enum": list(JobStatus.values)}},
        ],
        "description": "One status or a list.",
    }
)
class StatusOrList(serializers.JSONField):
    pass


class JobFilterInput(serializers.Serializer):
    """The filters of PRODUCT.md. Documents the body; jobs.filters validates it (the one
    FilterSet shared by the list, search and search-delete)."""

    status = StatusOrList(required=False)
    action = StringOrList(required=False)
    last_error_code = StringOrList(required=False)
    # The metaclass takes declared fields off the class: this does not hide Field.label.
    label = StringOrList(  # type: ignore[assignment]
        required=False, help_text="key:value pairs; every pair must match."
    )
    task_id = StrictCharField(required=False)
    provider_event_id = StrictCharField(required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    updated_after = serializers.DateTimeField(required=False)
    updated_before = serializers.DateTimeField(required=False)
    run_at_after = serializers.DateTimeField(required=False)
    run_at_before = serializers.DateTimeField(required=False)
    attempt_count_min = serializers.IntegerField(required=False, min_value=0)
    attempt_count_max = serializers.IntegerField(required=False, min_value=0)
    q = StrictCharField(required=False, help_text="Text in the last error detail, or a job id.")


class JobSearchInput(JobFilterInput):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
    cursor = StrictCharField(required=False, help_text="`next_cursor` of the previous page.")


class JobSearchDeleteInput(JobFilterInput):
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Count only; delete nothing."
    )
    expected_count = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Required unless `dry_run`: the `matched` of a dry run of the same filter. "
        "When the filter matches another number of jobs, nothing is deleted (409).",
    )


class TaskInput(StrictSerializer):
    kind = StrictCharField(max_length=100, help_text="mailbox_sync, mailbox_resync, ...")
    params = serializers.DictField(required=False, default=dict)


class ProviderEventInput(StrictSerializer):
    provider = StrictCharField(max_length=50)
    type = StrictCharField(max_length=100)
    external_id = StrictCharField(max_length=255, help_text="The provider's event id.")
    payload = serializers.DictField(required=False, default=dict)


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
_DATETIMES = ("run_at", "last_error_at", "created_at", "updated_at", "started_at", "finished_at")
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
        return self.context.get("job_counts", {}).get(task.pk, {})


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
