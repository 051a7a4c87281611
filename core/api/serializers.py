"""Serializers every API shares: strict input (unknown fields refused, values of the JSON type
the schema says, strings as sent), pages of results, and the one error shape with its OpenAPI
responses.

Input fields carry their rules as validators (lengths, ranges, patterns), so the OpenAPI schema
drf-spectacular builds from them says exactly what the server enforces: a request the schema
calls valid is accepted, and one it calls invalid is refused.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from core.ids import id_pattern

# The white space str.strip() removes (every character str.isspace() is true for), spelled out
# so that Python's `re` and the ECMA 262 patterns of the OpenAPI schema read the same class.
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Text a client may send: no NUL character (no database column can hold one).
TEXT = r"\A[^\x00]*\Z"
# A label's value: text with no comma, and no white space at either end (jobs.rules).
LABEL_VALUE = rf"(?:[^,\x00{WHITESPACE}](?:[^,\x00]*[^,\x00{WHITESPACE}])?)?"
# Text with at least one character other than white space (for values the services strip).
NON_BLANK_TEXT = rf"\A[^\x00]*[^\x00{WHITESPACE}][^\x00]*\Z"


def ecma(pattern: str) -> str:
    """A Python pattern as the OpenAPI schema spells it (anchors, escapes), as drf-spectacular
    does for a field's RegexValidator."""
    pattern = pattern.encode("ascii", "backslashreplace").decode().replace(r"\x", r"\u00")
    return pattern.replace(r"\A", "^").replace(r"\Z", "$")


def whole(regex: re.Pattern[str]) -> str:
    """A `^...$` pattern of the project's (core.ids, jobs.rules) as a whole-string match
    (`\\A...\\Z`: in Python `$` also matches before a final newline)."""
    pattern = regex.pattern
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return r"\A" + pattern[1:-1] + r"\Z"


# A date-time as RFC 3339 writes it (a real date, "T", the time, "Z" or an offset), on a date
# from 0001-01-02 to 9999-12-30: with any offset its instant in UTC stays within the years 1 to
# 9999 that Python (and so every reader of a job) can hold.
_D28, _D30, _D31 = (
    r"(?:0[1-9]|1[0-9]|2[0-8])",
    r"(?:0[1-9]|[12][0-9]|30)",
    r"(?:0[1-9]|[12][0-9]|3[01])",
)
_M31, _M30 = r"(?:0[13578]|1[02])", r"(?:0[469]|11)"
_MONTH_DAY = rf"(?:{_M31}-{_D31}|{_M30}-{_D30}|02-{_D28})"
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    r"(?:(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]"
    rf"|999[0-8])-{_MONTH_DAY}|{_LEAP_YEAR}-02-29"
    rf"|0001-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[3578]|1[02])-{_D31}|{_M30}-{_D30}|02-{_D28})"
    rf"|9999-(?:(?:0[13578]|10)-{_D31}|12-{_D30}|{_M30}-{_D30}|02-{_D28}))"
)
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
DATE_TIME = rf"\A{_DATE}T{_TIME}{_OFFSET}\Z"
DATE_TIME_SCHEMA = {"type": "string", "format": "date-time", "pattern": ecma(DATE_TIME)}


def text_rule(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the rules of everything a client sends in JSON: its strings (and keys) hold
    no NUL, and an object or array that says nothing of its members holds JSON values."""
    schema = dict(schema)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if "string" in types and not {"pattern", "enum", "const", "format"} & set(schema):
        schema["pattern"] = ecma(TEXT)
    if "object" in types:
        schema.setdefault("propertyNames", {"pattern": ecma(TEXT)})
        schema.setdefault("additionalProperties", JSON_VALUE_REF)
        if "properties" in schema:
            schema["properties"] = {k: text_rule(v) for k, v in schema["properties"].items()}
    if "array" in types:
        schema["items"] = text_rule(schema["items"]) if "items" in schema else JSON_VALUE_REF
    return schema


JSON_VALUE_COMPONENT = "JsonValue"
JSON_VALUE_REF = {"$ref": f"#/components/schemas/{JSON_VALUE_COMPONENT}"}
# Any JSON value whose strings (keys included) are TEXT, at any depth: the schema of payloads and
# params. The keywords of each JSON type apply to values of that type only.
JSON_VALUE_SCHEMA = {
    "description": "Any JSON value; strings (and keys) hold no NUL character.",
    "pattern": ecma(TEXT),
    "items": JSON_VALUE_REF,
    "propertyNames": {"pattern": ecma(TEXT)},
    "additionalProperties": JSON_VALUE_REF,
}


class StrictSerializer(serializers.Serializer[Any]):
    """Unknown fields are refused."""

    # Rejects fields it does not know instead of silently dropping them (`additionalProperties:
    # false` in the schema). `schema_extra` adds keywords to its schema (e.g. `minProperties`).
    schema_extra: dict[str, Any] = {}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictSerializerSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]  # drf-spectacular's registration hook
    target_class = StrictSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> Any:
        schema = auto_schema._map_basic_serializer(self.target, direction)
        return {**schema, "additionalProperties": False, **self.target.schema_extra}


class StrictCharField(serializers.CharField):
    """A string, not a number DRF would turn into one, taken as sent: not trimmed, so the length
    checked is the length sent, and without NUL characters. `non_blank`: at least one character
    other than white space (a value the service strips must not strip to nothing). `pattern`: a
    regular expression the whole value must match (`\\A...\\Z`; it must exclude NUL)."""

    def __init__(
        self, *, non_blank: bool = False, pattern: str | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        # drf-spectacular shows the first pattern: the most precise one comes first.
        if pattern is not None:
            self.validators.append(RegexValidator(pattern, message="Invalid format."))
        if non_blank:
            self.validators.append(RegexValidator(NON_BLANK_TEXT, message="May not be blank."))
        self.validators.append(RegexValidator(TEXT, message="Null characters are not allowed."))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class IdField(StrictCharField):
    """A public id of one type (`job_<ULID>`)."""

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", f"A {prefix}_... id.")
        super().__init__(pattern=id_pattern(prefix), **kwargs)


def json_integer(value: Any) -> int | None:
    """`value` as an int if JSON Schema calls it an integer (a number without a fractional part:
    3 or 3.0, not "3" and not true), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer (3 or 3.0): not a string or a boolean DRF would turn into one."""

    def to_internal_value(self, data: Any) -> Any:
        value = json_integer(data)
        if value is None:
            self.fail("invalid")
        return super().to_internal_value(value)


class StrictBooleanField(serializers.BooleanField):
    """`true` or `false`: not "yes", 1 or "true", which DRF would take."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictChoiceField(serializers.ChoiceField):
    """One of the choices, as a string (DRF would match `str(value)`)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "object",
        "propertyNames": {"pattern": ecma(TEXT)},
        "additionalProperties": JSON_VALUE_REF,
    }
)
class JsonObjectField(serializers.DictField):
    """A JSON object (payloads, params): any values; their rules are the services'."""


class BlankAsNullCharField(serializers.CharField):
    def to_representation(self, value: Any) -> Any:
        return value or None


@extend_schema_serializer(many=False)  # a page is one object even for list actions
class PageSerializer(serializers.Serializer[Any]):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page.")
    previous = serializers.URLField(allow_null=True, help_text="The previous (newer) page.")
    next_cursor = serializers.CharField(allow_null=True)
    previous_cursor = serializers.CharField(allow_null=True)


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="Stable, machine-readable.")
    message = serializers.CharField()
    # The metaclass takes declared fields off the class, so this does not hide Serializer.fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Messages per field (bad input).",
    )
    current_status = serializers.CharField(required=False, help_text="On a 409: the job's status.")
    running_job_id = serializers.CharField(
        required=False, help_text="On a trigger refused: the job running now."
    )
    matched = serializers.IntegerField(
        required=False, help_text="On a search-delete refused (409): what the filter matches now."
    )


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "Bad input (malformed JSON or JSON nested over 32 levels, text with a NUL character "
    "or a lone surrogate, wrong types, unknown fields, bad cursors, limits or date-times); "
    "`fields` names each problem.",
    401: "No API key, or an invalid or revoked one.",
    403: "A read-only key asked for a write, or the caller may not do this.",
    404: "No such object (an unknown or malformed id), or it belongs to another account.",
    405: "Method not allowed on this path.",
    406: "The Accept header asks for a format other than JSON.",
    409: "The job's status does not allow the command (see `current_status`), or a "
    "search-delete's `expected_count` is not what its filter matches (see `matched`).",
    413: "The body is over the size limit.",
    415: "The body is not `application/json`.",
    422: "The Idempotency-Key was already used with a different request.",
    429: "Too many requests.",
}


def error_responses(*statuses: int, body: bool = False) -> dict[int, Any]:
    """OpenAPI responses for the errors an operation can answer, all in the one error shape.
    Every operation can answer 400, 401, 403, 404, 405, 406 and 429; one with a body, 413
    and 415."""
    from drf_spectacular.utils import OpenApiResponse

    codes = {400, 401, 403, 404, 405, 406, 429, *statuses}
    if body:
        codes.update({413, 415})
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
        for code in sorted(codes)
    }
