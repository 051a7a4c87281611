"""The one FilterSet for jobs: the API list query string, the search body, search-delete and the
admin all filter through it, so "delete what I searched" deletes exactly what the search showed."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import django_filters
from django import forms
from django.core.validators import RegexValidator
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import Exact
from django.http import HttpRequest, QueryDict
from django_filters.filterset import FilterSetOptions

from core import input as client_input
from core.api.serializers import json_integer
from core.errors import ValidationFailed
from core.ids import id_pattern, is_valid_id
from core.jsonb import JsonContains
from jobs import rules
from jobs.models import Job
from jobs.states import JobStatus


def id_validator(prefix: str) -> RegexValidator:
    """A filter's id value: a well-formed id of its type (an empty value filters nothing)."""
    return RegexValidator(id_pattern(prefix), f"Not a valid id (expected {prefix}_<ULID>).")


class MultiValueField(forms.Field):
    """A list of non-empty strings (from repeated or comma-separated values)."""

    widget = forms.MultipleHiddenInput
    max_item_length = 200

    def to_python(self, value: Any) -> list[str]:
        if value in (None, "", []):
            return []
        values = [value] if isinstance(value, str) else list(value)
        cleaned = []
        for item in values:
            item = str(item).strip()
            if not item:
                raise forms.ValidationError("Empty value in the list.")
            if len(item) > self.max_item_length:
                raise forms.ValidationError(
                    f"Value too long ({self.max_item_length} characters at most)."
                )
            client_input.validate_text(item)
            cleaned.append(item)
        return cleaned


class LabelPairsField(MultiValueField):
    max_item_length = 50 + 1 + rules.MAX_LABEL_VALUE  # key:value


class UtcDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 date-time, in UTC; its UTC instant within the years 1 to 9999 (core.input),
    so that no query compares with a value the database cannot hold."""

    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        problem = client_input.utc_problem(parsed)
        if problem:
            raise forms.ValidationError(f"This date-time {problem}", code="out_of_range")
        return client_input.to_utc("", parsed)


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcDateTimeField


class MultiValueFilter(django_filters.Filter):
    field_class = MultiValueField

    def filter(self, qs: QuerySet[Any], value: list[str]) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__in": value})


class StatusFilter(django_filters.MultipleChoiceFilter):
    """Statuses checked against the choices and matched with one `IN (...)`: the same rows as
    django-filter's OR of one condition per value, with less query building per request."""

    # Django's own field, with the same checks and messages: django-filter's (which can add a
    # "null" choice, unused here) normalizes the choices again for each value it checks.
    field_class = forms.MultipleChoiceField

    def filter(self, qs: QuerySet[Any], value: list[str]) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.filter(**{f"{self.field_name}__in": value})


class LabelFilter(django_filters.Filter):
    """`key:value` pairs; a job matches when it carries every pair. The key is the one label
    rule's (jobs.rules) and is compared as a plain key: it is never parsed as a lookup
    (`team__regex`) or an array index."""

    field_class = LabelPairsField

    def filter(self, qs: QuerySet[Any], value: list[str] | None) -> QuerySet[Any]:
        for pair in value or []:
            key, _, label_value = pair.partition(":")
            qs = qs.filter(Exact(KeyTextTransform(key, "labels"), label_value))
        return qs


# The payload filter's JSON, compact, in characters: what a query string value may hold
# (core.input.MAX_QUERY_VALUE), so that the body and the query string take the same filters.
MAX_PAYLOAD_FILTER = client_input.MAX_QUERY_VALUE
PAYLOAD_EXAMPLE = '{"folder": "INBOX"}'


def payload_filter_text(value: Any) -> str:
    """The payload filter as JSON text, from a search body (an object) or a query string (its
    text); ValidationFailed for anything else."""
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str):
        return value
    raise ValidationFailed.for_field(
        "payload", f"must be a JSON object, such as {PAYLOAD_EXAMPLE}."
    )


class PayloadField(forms.Field):
    """A JSON object, as text: the rules of every JSON a client sends (core.input: depth, text,
    finite numbers) and MAX_PAYLOAD_FILTER characters."""

    def to_python(self, value: Any) -> dict[str, Any] | None:
        if value in (None, ""):
            return None
        text = payload_filter_text(value)
        if len(text) > MAX_PAYLOAD_FILTER:
            raise forms.ValidationError(
                f"is too long ({MAX_PAYLOAD_FILTER:,} characters of JSON at most)."
            )
        try:
            template = client_input.loads(text, "payload")
        except ValidationFailed as exc:
            raise forms.ValidationError(exc.message) from None
        except ValueError:
            raise forms.ValidationError(
                f"is not JSON: give a JSON object, such as {PAYLOAD_EXAMPLE}."
            ) from None
        if not isinstance(template, dict):
            raise forms.ValidationError(f"must be a JSON object, such as {PAYLOAD_EXAMPLE}.")
        return template


class PayloadFilter(django_filters.Filter):
    """Jobs whose payload contains the given JSON object, as PostgreSQL's `@>` means it (nested
    objects match by their keys, arrays by their elements in any order): a GIN index answers
    it on PostgreSQL (job_payload_gin, migration 0010); SQLite checks it row by row with the
    same semantics (core.jsonb). `{}` narrows nothing."""

    field_class = PayloadField

    def filter(self, qs: QuerySet[Any], value: dict[str, Any] | None) -> QuerySet[Any]:
        if not value:
            return qs
        return qs.filter(JsonContains("payload", value))


def _validate_labels(values: list[str]) -> None:
    for pair in values:
        key, sep, label_value = pair.partition(":")
        if not sep:
            raise forms.ValidationError(
                f"{client_input.shown(repr(pair), 60)} is not key:value "
                f"(key: {rules.LABEL_KEY_RULE})."
            )
        problem = rules.label_problem(key, label_value)
        if problem:
            raise forms.ValidationError(problem)


class JobFilterForm(forms.Form):
    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        assert data is not None  # Form.clean returns cleaned_data
        _check_ranges(self, data)
        return data


def text_condition(value: str) -> Q | None:
    """What `q` matches: text in the error detail, or an exact id (operators paste ids into
    search boxes); None for blank text (no condition)."""
    text = value.strip()
    if not text:
        return None
    # `detail <> ''` changes no result (the text is not empty) and lets PostgreSQL use the
    # partial trigram index job_error_detail_trgm (jobs.sql.SEARCH_INDEXES).
    condition = Q(last_error_detail__icontains=text) & ~Q(last_error_detail="")
    if is_valid_id(text, "job"):
        condition |= Q(id=text)
    return condition


def _filter_text(qs: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
    condition = text_condition(value)
    return qs if condition is None else qs.filter(condition)


class JobFilter(django_filters.FilterSet):
    # No DISTINCT: every filter is on the job row itself, and DISTINCT forbids FOR UPDATE.
    status = StatusFilter(choices=JobStatus.choices, distinct=False)
    action = MultiValueFilter()
    last_error_code = MultiValueFilter()
    task_id = django_filters.CharFilter(field_name="task_id", validators=[id_validator("tsk")])
    provider_event_id = django_filters.CharFilter(
        field_name="provider_event_id", validators=[id_validator("evt")]
    )
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = UtcDateTimeFilter(field_name="updated_at", lookup_expr="lt")
    run_at_after = UtcDateTimeFilter(field_name="run_at", lookup_expr="gte")
    run_at_before = UtcDateTimeFilter(field_name="run_at", lookup_expr="lt")
    attempt_count_min = django_filters.NumberFilter(field_name="attempt_count", lookup_expr="gte")
    attempt_count_max = django_filters.NumberFilter(field_name="attempt_count", lookup_expr="lte")
    q = django_filters.CharFilter(method=_filter_text, validators=[client_input.validate_text])
    label = LabelFilter()
    payload = PayloadFilter()

    class Meta:
        model = Job
        fields: list[str] = []
        form = JobFilterForm

    # Set by django-filter's metaclass; its stubs do not declare it.
    _meta: ClassVar[FilterSetOptions]
    # Never None here (see __init__).
    data: QueryDict | dict[str, Any]

    def __init__(
        self,
        data: QueryDict | dict[str, Any] | None = None,
        queryset: QuerySet[Job] | None = None,
        *,
        request: HttpRequest | None = None,
        prefix: str | None = None,
    ) -> None:
        # django-filter deep-copies every filter for each FilterSet, and so builds new form
        # fields and a new form class each time, because a filter may keep per-request state (a
        # queryset built from the request, a method looked up on its FilterSet). These filters
        # keep none (`q` calls a function, not a method), so they and their forms are built once
        # and shared: on the API's hot path that was most of the time spent filtering.
        self.filters = self._shared_filters()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = Job.objects.all() if queryset is None else queryset
        self.request = request
        self.form_prefix = prefix

    @classmethod
    @functools.cache
    def _shared_filters(cls) -> OrderedDict[str, django_filters.Filter]:
        filters = copy.deepcopy(cls.base_filters)
        for filter_ in filters.values():
            # Not in the stubs: django-filter binds each filter to the model the same way.
            filter_.model = cls._meta.model  # type: ignore[attr-defined]  # labels come from it
        return filters

    @classmethod
    @functools.lru_cache(maxsize=256)
    def _form_class_for(cls, names: frozenset[str]) -> type[forms.Form]:
        fields = {name: f.field for name, f in cls._shared_filters().items() if name in names}
        return type(f"{cls.__name__}Form", (cls._meta.form,), fields)

    def get_form_class(self) -> type[forms.Form]:
        # A form of the filters given only: an absent one cleans to an empty value and filters
        # nothing, and a form copies and cleans each of its fields on every request.
        return self._form_class_for(frozenset(self.data).intersection(self.filters))


# Names that are filters. Everything a caller passes that is neither one of these nor a name the
# caller reserves (limit, cursor, dry_run) is an unknown field and a 400.
FILTER_FIELDS = frozenset(JobFilter.base_filters)
MULTI_VALUED = frozenset({"status", "action", "last_error_code", "label"})
_INTEGER_FIELDS = frozenset({"attempt_count_min", "attempt_count_max"})


def _check_ranges(form: forms.Form, data: dict[str, Any]) -> None:
    # An empty range (after >= before, min > max) is not an error: it matches nothing. A rule
    # between two values could not be stated in the OpenAPI schema.
    for name in _INTEGER_FIELDS:
        value = data.get(name)
        if value is not None:
            if value != int(value):
                form.add_error(name, "must be a whole number.")
            elif value < 0:
                form.add_error(name, "must be 0 or more.")
    if data.get("label"):
        try:
            _validate_labels(data["label"])
        except forms.ValidationError as exc:
            form.add_error("label", exc)


def normalize_filter_params(
    data: Mapping[str, Any], *, reserved: frozenset[str] = frozenset()
) -> QueryDict:
    """Turn a query string or a JSON body into one QueryDict for JobFilter.

    Multi-valued filters take a list, one value, repeated keys or comma-separated values. Unknown
    names and values of the wrong shape raise ValidationFailed naming the field.
    """
    unknown = sorted(set(data) - FILTER_FIELDS - reserved)
    if unknown:
        raise ValidationFailed(
            f"Unknown filter field(s): {', '.join(unknown)}.",
            fields={name: ["Unknown filter field."] for name in unknown},
        )
    result = QueryDict(mutable=True)
    for name in data:
        if name in reserved:
            continue
        values = data.getlist(name) if isinstance(data, QueryDict) else data[name]
        if not isinstance(values, list):
            values = [values]
        if name not in MULTI_VALUED and len(values) > 1:
            raise ValidationFailed.for_field(name, "takes one value, not a list.")
        for value in values:
            if value is None:
                continue
            if name == "payload":
                result.appendlist(name, payload_filter_text(value))
                continue
            if isinstance(value, (bool, dict, list)):
                raise ValidationFailed.for_field(
                    name, f"has the wrong type ({type(value).__name__})."
                )
            if name in _INTEGER_FIELDS and not isinstance(value, str):
                value = json_integer(value)  # 3 or 3.0 (JSON's integers), not 3.5
                if value is None:
                    raise ValidationFailed.for_field(name, "must be a whole number.")
            text = str(value)
            parts = [part.strip() for part in text.split(",")] if name in MULTI_VALUED else [text]
            for part in parts:
                result.appendlist(name, part)
    return result


def has_filters(params: QueryDict) -> bool:
    """Whether any filter narrows the set (search-delete refuses to run without one)."""
    return any(
        value.strip() and not (name == "payload" and _is_empty_object(value))
        for name in params
        for value in params.getlist(name)
    )


def _is_empty_object(text: str) -> bool:
    # Told from the text (parsing hostile JSON is the filter's job, with its depth rule).
    return re.fullmatch(r"\{\s*\}", text.strip()) is not None


def filter_jobs(queryset: QuerySet[Job], params: QueryDict) -> QuerySet[Job]:
    """Apply the normalized filters to `queryset`, or raise ValidationFailed naming fields."""
    if not params:
        return queryset  # nothing to check or apply (an unfiltered list)
    filterset = JobFilter(params, queryset=queryset)
    if not filterset.is_valid():
        fields = {
            name: [str(message) for message in messages]
            for name, messages in filterset.errors.items()
        }
        summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
        raise ValidationFailed(f"Invalid filter: {summary}", fields=fields)
    return filterset.qs
